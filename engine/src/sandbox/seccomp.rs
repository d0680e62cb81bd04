//! The seccomp allow-lists, as reviewed data: groups of system calls, each entry with the reason
//! it is needed and, where it matters, conditions on its arguments; each thread role is a union
//! of groups. Anything else is answered with `SECCOMP_RET_TRAP` (SIGSYS), which the sandbox's
//! handler turns into a message naming the call and the end of the run.
//!
//! How the lists were found: by reading the code each thread runs, then by `strace -f` of the
//! WASI test suite's programs and the examples under `wasce exec` in both isolation modes and
//! both host-call transports, with and without `--timeout`, counting the calls each thread makes
//! after it installed its filter (see docs/SECURITY.md, "Seccomp").

use super::{Role, SandboxError};
use seccompiler::{BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch};
use std::collections::BTreeMap;

/// A value an argument is compared with.
#[derive(Clone, Copy, Debug)]
pub enum Value {
    Const(u64),
    /// This process's id.
    Pid,
    /// The timeout kick signal (SIGRTMIN, whose number glibc decides at run time).
    KickSignal,
}

/// A condition on a system call's argument (compared as the 32-bit value the kernel reads).
#[derive(Clone, Copy, Debug)]
pub enum Cond {
    /// Argument `n` equals the value.
    Eq(u8, Value),
    /// Argument `n` has none of these bits set.
    Clear(u8, u64),
    /// Argument `n` has all of these bits set.
    Set(u8, u64),
}

/// One allowed system call (or one allowed form of it, when `when` is not empty).
#[derive(Debug)]
pub struct Allow {
    pub nr: i64,
    /// All must hold (empty: any arguments).
    pub when: &'static [Cond],
    pub why: &'static str,
}

/// A system call answered with an error instead of SIGSYS: code the confined thread runs (std,
/// glibc) tries it and copes with the error, and allowing it would give more than is needed.
#[derive(Debug)]
pub struct Refuse {
    pub nr: i64,
    /// The error the call returns (an `errno` value).
    pub errno: i32,
    pub why: &'static str,
}

/// A named list of allowed calls.
#[derive(Debug)]
pub struct Group {
    pub name: &'static str,
    pub allow: &'static [Allow],
}

const fn any(nr: i64, why: &'static str) -> Allow {
    Allow { nr, when: &[], why }
}

const fn when(nr: i64, when: &'static [Cond], why: &'static str) -> Allow {
    Allow { nr, when, why }
}

const fn konst(v: i64) -> Value {
    Value::Const(v as u64)
}

/// `_IO(0xAE, nr)` and `_IOW(0xAE, nr, size)` of the KVM ioctl interface.
const fn kvm_io(nr: u64) -> u64 {
    (0xAE << 8) | nr
}
const fn kvm_iow(nr: u64, size: usize) -> u64 {
    (1 << 30) | ((size as u64) << 16) | (0xAE << 8) | nr
}
pub const KVM_RUN: u64 = kvm_io(0x80);
pub const KVM_SET_USER_MEMORY_REGION: u64 = kvm_iow(0x46, std::mem::size_of::<kvm_bindings::kvm_userspace_memory_region>());
pub const KVM_SET_SREGS: u64 = kvm_iow(0x84, std::mem::size_of::<kvm_bindings::kvm_sregs>());
pub const KVM_SET_MSRS: u64 = kvm_iow(0x89, std::mem::size_of::<kvm_bindings::kvm_msrs>());
pub const KVM_SET_XCRS: u64 = kvm_iow(0xa7, std::mem::size_of::<kvm_bindings::kvm_xcrs>());
pub const KVM_SET_DEVICE_ATTR: u64 = kvm_iow(0xe1, std::mem::size_of::<kvm_bindings::kvm_device_attr>());
pub const KVM_SET_XSAVE: u64 = kvm_iow(0xa5, std::mem::size_of::<kvm_bindings::kvm_xsave>());
pub const KVM_SET_FPU: u64 = kvm_iow(0x8d, std::mem::size_of::<kvm_bindings::kvm_fpu>());
pub const KVM_HAS_DEVICE_ATTR: u64 = kvm_iow(0xe3, std::mem::size_of::<kvm_bindings::kvm_device_attr>());

use libc::*;

/// Every confined thread.
pub const BASE: Group = Group {
    name: "base",
    allow: &[
        when(SYS_write, &[Cond::Eq(0, konst(2))], "stderr: the report of a blocked system call, host diagnostics"),
        any(SYS_exit_group, "end the process: the end of the run, or after a blocked system call"),
        any(SYS_exit, "a helper thread ends when its VM is dropped"),
        any(SYS_futex, "locks, condition variables, channels and thread joins (std::sync)"),
        any(SYS_rt_sigprocmask, "glibc blocks signals while a thread exits"),
        any(SYS_sigaltstack, "Rust's runtime removes a thread's alternate signal stack when the thread ends"),
        any(SYS_munmap, "free(): large blocks, a trimmed heap; a thread's signal stack when it ends"),
        when(SYS_madvise, &[Cond::Eq(2, konst(MADV_DONTNEED as i64))], "free() returns pages; glibc releases an exiting thread's stack; table.grow gives back the arena pages of a table it moved"),
        any(SYS_clock_gettime, "Instant::now when the vDSO falls back to the system call; thread CPU time"),
        any(SYS_sched_yield, "back-off while waiting for another thread (ring server busy flag)"),
        any(SYS_gettid, "std's panic report names the thread's OS id (the default panic hook, where an embedder replaced the sandbox's)"),
        any(SYS_getpid, "abort() after a panic that cannot unwind: glibc's raise asks for the process id"),
        when(SYS_tgkill, &[Cond::Eq(0, Value::Pid), Cond::Eq(2, konst(SIGABRT as i64))], "abort() after a panic that cannot unwind: SIGABRT ends this process"),
    ],
};

/// Threads that allocate, and grow guest memory.
pub const MEMORY: Group = Group {
    name: "memory",
    allow: &[
        when(SYS_mmap, &[Cond::Clear(2, PROT_EXEC as u64)], "malloc; growth of linear memory, tables and the store arena; never executable"),
        when(SYS_mprotect, &[Cond::Clear(2, PROT_EXEC as u64)], "commit reserved memory on memory.grow / table.grow; never executable"),
        any(SYS_mremap, "realloc of large buffers"),
        any(SYS_brk, "malloc's main heap"),
        when(SYS_madvise, &[Cond::Eq(2, konst(MADV_HUGEPAGE as i64))], "a linear memory of the VM asks for transparent huge pages (backing its 2 MiB guest pages)"),
        when(SYS_madvise, &[Cond::Eq(2, konst(MADV_POPULATE_WRITE as i64))], "a new linear memory of the VM under 2 MiB is filled in before the guest touches it (LinearMemory::populate_small)"),
    ],
};

/// Serving WASI calls. Every call works on an fd the handle table already holds, or opens a
/// path beneath a preopen (`openat2` with RESOLVE_BENEATH; Landlock checks the same again).
pub const WASI: Group = Group {
    name: "wasi",
    allow: &[
        any(SYS_read, "fd_read"),
        any(SYS_pread64, "fd_pread"),
        any(SYS_write, "fd_write; stdout and stderr"),
        any(SYS_pwrite64, "fd_pwrite"),
        any(SYS_lseek, "fd_seek, fd_tell, fd_readdir positions"),
        any(SYS_close, "fd_close, fd_renumber; closing directory streams"),
        any(SYS_openat2, "path_open and every path lookup: RESOLVE_BENEATH a preopen, no magic links"),
        any(SYS_openat, "fd_readdir opens \".\" relative to the directory fd for a fresh stream"),
        any(SYS_fstat, "fd_filestat_get, fd_fdstat_get; under a timeout, whether an fd can block (once per handle)"),
        any(SYS_newfstatat, "path_filestat_get; glibc's fstat"),
        any(SYS_getdents64, "fd_readdir"),
        when(SYS_fcntl, &[Cond::Eq(1, konst(F_GETFL as i64))], "fd_fdstat_get: the file status flags; glibc's fdopendir checks the access mode"),
        when(SYS_fcntl, &[Cond::Eq(1, konst(F_SETFL as i64))], "fd_fdstat_set_flags: O_APPEND, O_NONBLOCK"),
        when(SYS_fcntl, &[Cond::Eq(1, konst(F_GETFD as i64))], "dropping an OwnedFd checks that the fd is open (std, debug builds)"),
        when(SYS_fcntl, &[Cond::Eq(1, konst(F_SETFD as i64)), Cond::Eq(2, konst(FD_CLOEXEC as i64))], "fd_readdir: glibc's fdopendir sets close-on-exec"),
        any(SYS_fsync, "fd_sync"),
        any(SYS_fdatasync, "fd_datasync"),
        any(SYS_ftruncate, "fd_filestat_set_size; path_open with O_TRUNC"),
        any(SYS_fallocate, "fd_allocate"),
        any(SYS_fadvise64, "fd_advise"),
        any(SYS_utimensat, "fd_filestat_set_times, path_filestat_set_times"),
        any(SYS_mkdirat, "path_create_directory"),
        any(SYS_unlinkat, "path_unlink_file, path_remove_directory"),
        any(SYS_renameat, "path_rename"),
        any(SYS_linkat, "path_link"),
        any(SYS_symlinkat, "path_symlink"),
        any(SYS_readlinkat, "path_readlink; the symlink checks of path resolution"),
        any(SYS_poll, "poll_oneoff with fd subscriptions; under a timeout, waiting (until the deadline) for a pipe, socket or tty before reading, writing or accepting"),
        any(SYS_clock_nanosleep, "poll_oneoff with only clock subscriptions (glibc's nanosleep), cut at the call's deadline"),
        any(SYS_getrandom, "random_get; std's hash seeds"),
        any(SYS_clock_getres, "clock_res_get"),
        any(SYS_accept4, "sock_accept on a --tcplisten socket"),
        any(SYS_recvfrom, "sock_recv"),
        any(SYS_sendto, "sock_send"),
        any(SYS_shutdown, "sock_shutdown"),
    ],
};

/// Threads the timeout kick (SIGRTMIN) or a trap signal can interrupt.
pub const SIGNALED: Group = Group {
    name: "signaled",
    allow: &[any(SYS_rt_sigreturn, "return from the timeout kick's handler (and, in process mode, from the trap handler)")],
};

/// The vCPU thread's KVM calls (on the vCPU and VM fds created during setup).
pub const KVM: Group = Group {
    name: "kvm",
    allow: &[
        when(SYS_ioctl, &[Cond::Eq(1, Value::Const(KVM_RUN))], "KVM_RUN: run the guest"),
        when(
            SYS_ioctl,
            &[Cond::Eq(1, Value::Const(KVM_SET_USER_MEMORY_REGION))],
            "KVM_SET_USER_MEMORY_REGION: memory.grow, table.grow and arena growth add memslots; a failed instantiation deletes those of what it created before freeing it",
        ),
        when(SYS_ioctl, &[Cond::Eq(1, Value::Const(KVM_SET_SREGS))], "KVM_SET_SREGS: re-establish the vCPU after KVM reset it (standard KVM: a triple fault, an unexpected exit)"),
        when(SYS_ioctl, &[Cond::Eq(1, Value::Const(KVM_SET_XCRS))], "KVM_SET_XCRS: re-establish XCR0 after a vCPU reset (standard KVM)"),
        when(SYS_ioctl, &[Cond::Eq(1, Value::Const(KVM_HAS_DEVICE_ATTR))], "KVM_HAS_DEVICE_ATTR: re-align the guest TSC after a vCPU reset (standard KVM)"),
        when(SYS_ioctl, &[Cond::Eq(1, Value::Const(KVM_SET_DEVICE_ATTR))], "KVM_SET_DEVICE_ATTR: re-align the guest TSC after a vCPU reset (standard KVM)"),
        when(SYS_ioctl, &[Cond::Eq(1, Value::Const(KVM_SET_MSRS))], "KVM_SET_MSRS: re-align the guest TSC after a vCPU reset, on kernels without KVM_VCPU_TSC_OFFSET"),
    ],
};

/// A pooled VM reset between runs (`crate::warm`): nothing of one run may be visible to the next.
pub const WARM: Group = Group {
    name: "warm",
    allow: &[
        when(SYS_ioctl, &[Cond::Eq(1, Value::Const(KVM_SET_XSAVE))], "KVM_SET_XSAVE: a pooled VM's FPU/SIMD registers back to their state at creation after each run"),
        when(SYS_ioctl, &[Cond::Eq(1, Value::Const(KVM_SET_FPU))], "KVM_SET_FPU: as KVM_SET_XSAVE, where KVM did not report the XSAVE state"),
        any(SYS_mincore, "which guest stack pages a run touched, to zero them before the next run"),
        when(SYS_fcntl, &[Cond::Eq(1, konst(F_DUPFD_CLOEXEC as i64))], "each run's WASI table gets its own duplicate of the preopened directories"),
    ],
};

/// Process mode: compiled code runs on the store thread, its faults arrive as signals.
pub const PROCESS: Group = Group {
    name: "process",
    allow: &[
        any(SYS_rt_sigaction, "a fault outside compiled code restores the default action and is re-raised (a host crash stays a crash)"),
        when(SYS_tgkill, &[Cond::Eq(0, Value::Pid), Cond::Eq(2, konst(SIGSEGV as i64))], "a SIGSEGV someone sent, not a trap, is raised again with its default action"),
        when(SYS_tgkill, &[Cond::Eq(0, Value::Pid), Cond::Eq(2, konst(SIGBUS as i64))], "a SIGBUS someone sent, not a trap, is raised again with its default action"),
        when(SYS_tgkill, &[Cond::Eq(0, Value::Pid), Cond::Eq(2, konst(SIGILL as i64))], "a SIGILL someone sent, not a trap, is raised again with its default action"),
        when(SYS_tgkill, &[Cond::Eq(0, Value::Pid), Cond::Eq(2, konst(SIGFPE as i64))], "a SIGFPE someone sent, not a trap, is raised again with its default action"),
    ],
};

/// The thread that made the store (where the run is driven from).
pub const STORE: Group = Group {
    name: "store",
    allow: &[any(SYS_getrusage, "--stats: peak RSS after the run")],
};

/// The watchdog thread: it only sleeps and sends the kick.
pub const KICK: Group = Group {
    name: "kick",
    allow: &[
        when(SYS_tgkill, &[Cond::Eq(0, Value::Pid), Cond::Eq(2, Value::KickSignal)], "the kick: SIGRTMIN to a thread of this process (repeated every 20 ms until the call ends)"),
        any(SYS_getpid, "glibc's pthread_kill asks for the process id"),
    ],
};

/// The HTTP thread of `wasce serve`: an event loop (tokio, current-thread) over the listening
/// socket bound during setup and the connections it accepts. No files, no new sockets other
/// than accepted connections, no processes.
pub const SERVER: Group = Group {
    name: "server",
    allow: &[
        any(SYS_epoll_wait, "the event loop waits for sockets and for workers' answers"),
        any(SYS_epoll_pwait, "the event loop waits for sockets and for workers' answers"),
        any(SYS_epoll_ctl, "the event loop registers accepted connections and drops closed ones"),
        any(SYS_accept4, "accept a connection on the listening socket bound during setup"),
        any(SYS_read, "read requests from connections; the event loop's wake-up eventfd"),
        any(SYS_recvfrom, "read requests from connections"),
        any(SYS_write, "write responses; wake the event loop (eventfd); the request log (stderr)"),
        any(SYS_writev, "write responses (head and body at once)"),
        any(SYS_sendto, "write responses"),
        any(SYS_close, "close connections"),
        any(SYS_shutdown, "close connections"),
        when(SYS_setsockopt, &[Cond::Eq(1, konst(IPPROTO_TCP as i64)), Cond::Eq(2, konst(TCP_NODELAY as i64))], "TCP_NODELAY on accepted connections (small responses go out at once)"),
        any(SYS_getsockopt, "the error of a connection that failed (SO_ERROR)"),
        any(SYS_getpeername, "the peer address of an accepted connection, for the request log"),
        when(SYS_fcntl, &[Cond::Eq(1, konst(F_GETFL as i64))], "tokio checks that an accepted connection is non-blocking (debug builds)"),
        when(SYS_fcntl, &[Cond::Eq(1, konst(F_GETFD as i64))], "the standard library checks that an accepted connection's fd is valid when it takes ownership (debug builds)"),
    ],
};

/// The first real-time signal, which glibc keeps for itself (SIGCANCEL; SIGSETXID is the next).
const SIGRTMIN_GLIBC: i64 = 32;

/// The compile worker (`crate::confined`): a child process that reads a module from its stdin,
/// compiles it (on threads of its own: a parallel compile) and writes the artifact to its
/// stdout. No files, no sockets, no processes, no executable memory.
pub const COMPILER: Group = Group {
    name: "compiler",
    allow: &[
        when(SYS_read, &[Cond::Eq(0, konst(0))], "the module and settings, from the parent (stdin)"),
        when(SYS_write, &[Cond::Eq(0, konst(1))], "the artifact or the compile error, to the parent (stdout)"),
        when(
            SYS_clone,
            &[
                Cond::Set(0, (CLONE_VM | CLONE_THREAD | CLONE_SIGHAND) as u64),
                Cond::Clear(
                    0,
                    (CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP | CLONE_PTRACE | CLONE_UNTRACED | CLONE_VFORK | CLONE_PARENT) as u64,
                ),
            ],
            "the threads of a parallel compile (glibc's pthread_create, after clone3 was refused): a thread of this process, which inherits its seccomp filters and Landlock domain; never a new process or namespace",
        ),
        any(SYS_set_robust_list, "glibc starts a new thread"),
        when(SYS_rt_sigaction, &[Cond::Eq(0, konst(SIGRTMIN_GLIBC + 1))], "glibc's first pthread_create installs its SIGSETXID handler (the set*id broadcast)"),
        any(SYS_rseq, "glibc registers a new thread's restartable sequences"),
        any(SYS_sched_getaffinity, "std's available_parallelism: how many compile threads; glibc's pthread_getattr_np when std starts a thread"),
        any(SYS_gettid, "std asks a new thread's id when it starts (its stack guard); glibc's raise"),
        any(SYS_getrandom, "std's hash seeds"),
        any(SYS_getpid, "glibc's raise (abort) asks for the process id"),
        when(
            SYS_tgkill,
            &[Cond::Eq(0, Value::Pid), Cond::Eq(2, konst(SIGABRT as i64))],
            "abort() after an allocation failed (the memory bound): SIGABRT to this process, which the parent reports",
        ),
    ],
};

/// What the compile worker is refused with an error rather than killed for.
pub const COMPILER_REFUSED: &[Refuse] = &[
    Refuse {
        nr: SYS_clone3,
        errno: ENOSYS,
        why: "glibc's pthread_create tries clone3 first; its flags are in memory a filter cannot read, and ENOSYS makes glibc fall back to clone, whose flags are checked",
    },
    Refuse { nr: SYS_openat, errno: EACCES, why: "std's available_parallelism reads the cgroup CPU quota under /proc; without it, it counts the CPUs of the affinity mask" },
    Refuse { nr: SYS_open, errno: EACCES, why: "as openat: no file is opened (Landlock denies every path as well)" },
];

/// The calls `role` is refused with an error (checked by a filter installed before the
/// allow-list; the kernel applies the stricter answer, so these must also be in the allow-list
/// to return their error rather than SIGSYS — `program` adds them).
pub fn refused(role: Role) -> &'static [Refuse] {
    match role {
        Role::Compiler => COMPILER_REFUSED,
        _ => &[],
    }
}

/// The filters answering `role`'s refused calls with their errors (one per error value);
/// everything else passes to the allow-list.
pub fn refusal_programs(role: Role) -> Result<Vec<BpfProgram>, SandboxError> {
    let err = |e: seccompiler::BackendError| SandboxError::Seccomp(format!("{role:?}: {e}"));
    let mut by_errno: BTreeMap<i32, BTreeMap<i64, Vec<SeccompRule>>> = BTreeMap::new();
    for r in refused(role) {
        by_errno.entry(r.errno).or_default().insert(r.nr, Vec::new());
    }
    by_errno
        .into_iter()
        .map(|(errno, rules)| {
            let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(errno as u32), TargetArch::x86_64).map_err(err)?;
            filter.try_into().map_err(err)
        })
        .collect()
}

/// The groups a role's allow-list is made of.
pub fn groups(role: Role) -> &'static [&'static Group] {
    match role {
        Role::Vcpu => &[&BASE, &MEMORY, &WASI, &SIGNALED, &KVM, &STORE, &WARM],
        Role::Store => &[&BASE, &MEMORY, &WASI, &SIGNALED, &PROCESS, &STORE],
        Role::RingServer => &[&BASE, &MEMORY, &WASI, &SIGNALED],
        Role::Timeout => &[&BASE, &KICK],
        Role::Compiler => &[&BASE, &MEMORY, &COMPILER],
        Role::Server => &[&BASE, &MEMORY, &SERVER],
    }
}

/// Every allowed form of a call in `role`'s list.
pub fn allowed(role: Role) -> impl Iterator<Item = &'static Allow> {
    groups(role).iter().flat_map(|g| g.allow.iter())
}

/// The distinct system calls `role` may make.
pub fn syscalls(role: Role) -> Vec<i64> {
    let mut v: Vec<i64> = allowed(role).map(|a| a.nr).collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn resolve(v: Value) -> u64 {
    match v {
        Value::Const(c) => c,
        // SAFETY: getpid has no preconditions.
        Value::Pid => (unsafe { libc::getpid() }) as u64,
        Value::KickSignal => crate::kvm::kick_signal() as u64,
    }
}

/// The BPF program of `role`: the allow-list; everything else traps.
pub fn program(role: Role) -> Result<BpfProgram, SandboxError> {
    let err = |e: seccompiler::BackendError| SandboxError::Seccomp(format!("{role:?}: {e}"));
    // None: the call is allowed with any arguments.
    let mut rules: BTreeMap<i64, Option<Vec<SeccompRule>>> = BTreeMap::new();
    // Refused calls pass this filter; the refusal filter installed before it answers them.
    for r in refused(role) {
        rules.insert(r.nr, None);
    }
    for a in allowed(role) {
        let entry = rules.entry(a.nr).or_insert_with(|| Some(Vec::new()));
        if a.when.is_empty() {
            *entry = None;
            continue;
        }
        let Some(list) = entry else { continue };
        let conds = a
            .when
            .iter()
            .map(|c| match *c {
                Cond::Eq(arg, v) => SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, resolve(v) & 0xffff_ffff),
                Cond::Clear(arg, mask) => SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(mask), 0),
                Cond::Set(arg, mask) => SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(mask), mask),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        list.push(SeccompRule::new(conds).map_err(err)?);
    }
    let rules = rules.into_iter().map(|(nr, r)| (nr, r.unwrap_or_default())).collect();
    let filter = SeccompFilter::new(rules, SeccompAction::Trap, SeccompAction::Allow, TargetArch::x86_64).map_err(err)?;
    filter.try_into().map_err(err)
}
