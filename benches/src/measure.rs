//! Measuring child processes (wall time and peak RSS from `wait4`) and reading /proc.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One finished child process.
pub struct Run {
    pub wall: Duration,
    /// User + system CPU of the child, every thread included (`wait4`).
    pub cpu: Duration,
    /// Peak resident set size (`ru_maxrss`), KiB.
    pub max_rss_kib: u64,
    pub stdout: String,
    pub stderr: String,
}

/// Run `cmd` in `cwd` with stdin empty, capturing stdout and stderr (through files, so that a
/// chatty child never blocks on a pipe). Panics with the child's stderr if it does not exit 0:
/// a benchmark that fails has no number.
///
/// The child is started by a small launcher process (this executable with `--internal-spawn`),
/// which times it and reads its peak RSS from `wait4`. Not directly from here: Linux carries the
/// spawning process's RSS high-water mark into the child's `ru_maxrss` across `exec`, so a
/// child of this (larger) process would report at least our RSS. The launcher's own RSS is the
/// floor instead ([`rss_floor_kib`] measures it).
pub fn run(cmd: &[String], cwd: Option<&Path>, scratch: &Path) -> Run {
    launch(cmd, cwd, scratch, false)
}

/// As `run`, with the child's stdout a pipe that the launcher drains (stdout is not kept).
pub fn run_piped(cmd: &[String], scratch: &Path) -> Run {
    launch(cmd, None, scratch, true)
}

fn launch(cmd: &[String], cwd: Option<&Path>, scratch: &Path, piped: bool) -> Run {
    let out_path = scratch.join(format!("stdout-{}", std::process::id()));
    let err_path = scratch.join(format!("stderr-{}", std::process::id()));
    let launcher = std::env::current_exe().expect("own path");
    let out_arg = if piped { PIPE.to_string() } else { out_path.display().to_string() };
    let mut args = vec!["--internal-spawn".to_string(), out_arg, err_path.display().to_string()];
    args.push(cwd.map_or_else(|| "-".to_string(), |d| d.display().to_string()));
    args.extend(cmd.iter().cloned());
    let out = Command::new(launcher).args(&args).stdin(Stdio::null()).output().expect("run the launcher");
    let report = String::from_utf8_lossy(&out.stdout);
    let f: Vec<i64> = report.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    let stdout = if piped { String::new() } else { std::fs::read_to_string(&out_path).unwrap_or_default() };
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    if f.len() != 4 || f[3] != 0 {
        panic!("{cmd:?} failed ({}{}):\n{stderr}", report.trim(), String::from_utf8_lossy(&out.stderr));
    }
    Run { wall: Duration::from_nanos(f[0] as u64), max_rss_kib: f[1] as u64, cpu: Duration::from_nanos(f[2] as u64), stdout, stderr }
}

/// The launcher's STDOUT argument meaning "a pipe, drained".
const PIPE: &str = "|pipe";

/// The launcher (`--internal-spawn STDOUT STDERR CWD|- CMD...`): run CMD with stdin empty and
/// its output in the two files (STDOUT `|pipe`: a pipe this process drains); print
/// `wall_ns max_rss_kib cpu_ns exit_code` (-1: killed by a signal).
pub fn launcher_main(args: &[String]) {
    let (out, err, cwd, cmd) = (&args[0], &args[1], &args[2], &args[3..]);
    let mut command = Command::new(&cmd[0]);
    command.args(&cmd[1..]).stdin(Stdio::null());
    if out == PIPE {
        let (mut reader, writer) = std::io::pipe().expect("pipe");
        command.stdout(writer);
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    } else {
        command.stdout(std::fs::File::create(out).expect("stdout file"));
    }
    command.stderr(std::fs::File::create(err).expect("stderr file"));
    if cwd != "-" {
        command.current_dir(cwd);
    }
    let t = Instant::now();
    let child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot run {cmd:?}: {e}");
            println!("0 0 0 -1");
            return;
        }
    };
    let (status, usage) = wait4(child.id() as i32);
    let wall = t.elapsed();
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    let tv = |t: libc::timeval| t.tv_sec as u128 * 1_000_000_000 + t.tv_usec as u128 * 1000;
    println!("{} {} {} {code}", wall.as_nanos(), usage.ru_maxrss, tv(usage.ru_utime) + tv(usage.ru_stime));
}

/// Wait for our child `pid`; its status and resource usage.
fn wait4(pid: i32) -> (i32, libc::rusage) {
    let mut status = 0;
    // SAFETY: rusage is plain data, filled in by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waiting for a child this process spawned and has not reaped.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return (status, usage);
        }
        assert!(std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted, "wait4 failed");
    }
}

/// While alive, this process's fd 1 is a pipe drained by a thread (for the guest's stdout
/// writes to be pipe writes); restored on drop.
pub struct StdoutToPipe {
    saved: i32,
}

impl StdoutToPipe {
    pub fn new() -> StdoutToPipe {
        use std::os::fd::{AsRawFd, IntoRawFd};
        let (mut reader, writer) = std::io::pipe().expect("pipe");
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        // SAFETY: dup/dup2/close of descriptors this process owns; fd 1 is replaced by the
        // pipe's write end and the original kept in `saved` until drop.
        unsafe {
            let saved = libc::dup(1);
            assert!(saved >= 0 && libc::dup2(writer.as_raw_fd(), 1) == 1, "redirect stdout");
            libc::close(writer.into_raw_fd());
            StdoutToPipe { saved }
        }
    }
}

impl Default for StdoutToPipe {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for StdoutToPipe {
    fn drop(&mut self) {
        // SAFETY: restoring the descriptor saved in `new`.
        unsafe {
            libc::dup2(self.saved, 1);
            libc::close(self.saved);
        }
    }
}

/// The peak RSS `run` reports for `/bin/true`: the launcher's floor, KiB.
pub fn rss_floor_kib(scratch: &Path) -> u64 {
    run(&["/bin/true".to_string()], None, scratch).max_rss_kib
}

/// A field of /proc/meminfo in KiB (0 if absent).
pub fn meminfo_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    proc_field(&text, field)
}

/// Kernel memory that grows with VMs and threads: slab, kernel stacks, page tables and the
/// secondary (EPT/shadow) page tables KVM keeps, KiB.
pub fn kernel_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    ["Slab", "KernelStack", "PageTables", "SecPageTables"].iter().map(|f| proc_field(&text, f)).sum()
}

/// This process's resident set size, KiB.
pub fn self_rss_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    proc_field(&text, "VmRSS")
}

fn proc_field(text: &str, field: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The machine, for the report's header.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo.lines().find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|x| x.1.trim().to_string()));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let kvm = if Path::new("/sys/module/kvm_pvm").exists() {
        "kvm_pvm (nested, PVM)"
    } else if Path::new("/sys/module/kvm_intel").exists() {
        "kvm_intel"
    } else if Path::new("/sys/module/kvm_amd").exists() {
        "kvm_amd"
    } else {
        "unknown"
    };
    format!(
        "{} ({cores} cores), {:.0} GiB RAM, Linux {}, KVM module {kvm}",
        cpu.unwrap_or_else(|| "unknown CPU".into()),
        meminfo_kib("MemTotal") as f64 / (1 << 20) as f64,
        kernel.trim()
    )
}

/// The 1-minute load average.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Spin on one core until killed (`--internal-spin`, the load of `--load`).
pub fn spin_forever() -> ! {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// Start one spinning process per core but one (at least one), for `--load`.
pub fn start_load(self_exe: &std::path::Path) -> Vec<std::process::Child> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (0..cores.saturating_sub(1).max(1))
        .map(|_| {
            std::process::Command::new(self_exe)
                .arg("--internal-spin")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("start a load process")
        })
        .collect()
}

/// Stop the processes of `start_load`.
pub fn stop_load(spinners: Vec<std::process::Child>) {
    for mut c in spinners {
        let _ = c.kill();
        let _ = c.wait();
    }
}
