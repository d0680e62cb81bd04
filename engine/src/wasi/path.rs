//! Resolving guest paths beneath a directory handle, and what a guest may find there.
//!
//! * **Resolution.** Every lookup goes through
//!   `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`, which the kernel
//!   enforces on every component, `..` and symlink: absolute paths, `..` above the directory,
//!   symlinks leading outside and `/proc` magic links all fail, and so does crossing any mount
//!   point below the preopen (procfs, sysfs, devtmpfs, another disk, a bind mount): a guest given
//!   `/` stays on `/`'s own filesystem, and a user who wants `/tmp` too preopens it. Both kinds of
//!   refusal are "not capable". Operations on a final component (mkdir, unlink, rename, ...)
//!   first resolve its parent this way, then act on one name relative to it, so no guest string
//!   reaches a path syscall any other way.
//! * **Preopens** (`open_preopen`) must be directories and never a pseudo filesystem
//!   (`PSEUDO_FILESYSTEMS`: procfs, sysfs, debugfs, cgroup, ...).
//! * **File types** (`open_guarded`). A descriptor the guest can get is a regular file, a
//!   directory or one of the character devices in `CHAR_DEVICES` (`/dev/null`, `/dev/zero`,
//!   `/dev/random`, `/dev/urandom`); block devices, every other character device (`/dev/kvm`,
//!   `/dev/mem`, ttys), FIFOs and sockets are refused with EACCES. Opening a file can act (a FIFO
//!   blocks until a writer comes, a tty becomes the controlling terminal, a tape rewinds), so
//!   the path is first resolved with `O_PATH`, which opens nothing, and checked; then it is
//!   opened for real with `O_NONBLOCK | O_NOCTTY` (a FIFO swapped in meanwhile cannot block, nor
//!   a file lease), checked again (same device and inode, an allowed type), and `O_NONBLOCK` is
//!   cleared unless the guest asked for it.
//! * **Protected host files** (`Protected`): files the host keeps for itself (such as the
//!   artifact key) that no preopen may hand out even when it contains them: no open yields their
//!   identity (hard links included), nothing is created, removed, renamed or linked in their
//!   directory, and no entry on the way to them (ancestor directories, symlinks) is renamed,
//!   removed or replaced.

use super::abi::errno;
use super::mem::Errno;
use std::ffi::{CStr, CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

const RESOLVE_NO_XDEV: u64 = 0x01;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_BENEATH: u64 = 0x08;

/// The character devices a guest may open, by (major, minor): the only ones whose every
/// read, write and open is harmless (WASI has no ioctl and no mmap). Everything else a device
/// node can name (`/dev/kvm`, `/dev/mem`, `/dev/kmsg` (1:11), `/dev/port`, ttys, block devices)
/// is refused.
pub const CHAR_DEVICES: &[(u32, u32, &str)] = &[
    (1, 3, "/dev/null: reads see end-of-file, writes are discarded"),
    (1, 5, "/dev/zero: reads give zeros, writes are discarded"),
    (1, 8, "/dev/random: the kernel's random bytes; writes only stir the pool"),
    (1, 9, "/dev/urandom: as /dev/random"),
];

/// Filesystems a preopen may never be (`statfs.f_type`, from linux/magic.h): each exposes
/// kernel, process or hardware state rather than files, and most are writable by root.
pub const PSEUDO_FILESYSTEMS: &[(u32, &str)] = &[
    (0x0000_9fa0, "procfs"),
    (0x6265_6572, "sysfs"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0x0027_e0eb, "cgroup"),
    (0x6367_7270, "cgroup2"),
    (0xcafe_4a11, "bpf"),
    (0x6265_6570, "configfs"),
    (0x0000_1cd1, "devpts"),
    (0xde5e_81e4, "efivarfs"),
    (0x6165_676c, "pstore"),
    (0x4249_4e4d, "binfmt_misc"),
    (0x6e73_6673, "nsfs"),
    (0x6573_5543, "fusectl"),
    (0xf97c_ff8c, "selinuxfs"),
    (0x4341_5d53, "smackfs"),
    (0x1980_0202, "mqueue"),
    (0x0765_5821, "resctrl"),
    (0xabba_1974, "xenfs"),
    (0x0000_9fa2, "usbdevfs"),
    (0xa501_fcf5, "functionfs"),
];

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

pub fn last_os_errno() -> Errno {
    errno::from_os(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
}

/// Map the errors of a beneath-resolution: leaving the directory, or crossing into another
/// mount below it (both EXDEV), is "not capable".
fn resolve_errno() -> Errno {
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EXDEV) => errno::NOTCAPABLE,
        Some(e) => errno::from_os(e),
        None => errno::IO,
    }
}

fn fstat(fd: RawFd) -> Result<libc::stat, Errno> {
    // SAFETY: fstat fills a zeroed stat buffer for an fd the caller holds.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) < 0 {
            return Err(last_os_errno());
        }
        Ok(st)
    }
}

/// The one `openat2` call: `path` beneath `dir`, never crossing a mount, following no magic
/// link. No type policy; callers go through `open_guarded`.
fn resolve(dir: RawFd, path: &CStr, flags: i32, mode: u32) -> Result<OwnedFd, Errno> {
    // openat2 rejects a mode unless the call may create a file.
    // (O_TMPFILE includes the O_DIRECTORY bit, so it is tested as a whole.)
    let creates = flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE;
    let mode = if creates { mode } else { 0 };
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: mode as u64,
        resolve: RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
    };
    // With RESOLVE_BENEATH the kernel answers EAGAIN when a `..` component raced with a rename
    // or mount anywhere on the system (it cannot prove the walk stayed beneath); openat2(2) says
    // to retry. Bounded, so a host under constant rename load yields EAGAIN rather than a hang.
    let mut attempts = 0;
    let fd = loop {
        // SAFETY: openat2 with a valid NUL-terminated path and an open_how of the size passed.
        let fd = unsafe { libc::syscall(libc::SYS_openat2, dir, path.as_ptr(), &how as *const OpenHow, std::mem::size_of::<OpenHow>()) };
        if fd >= 0 {
            break fd;
        }
        attempts += 1;
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) || attempts == 128 {
            return Err(resolve_errno());
        }
    };
    // SAFETY: the kernel returned a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// May a guest hold an open descriptor of this file? Regular files, directories and the
/// character devices of `CHAR_DEVICES`; EACCES for everything else (the host's policy refuses
/// it, as an LSM would; "not capable" is kept for paths that leave the preopen).
fn allowed_type(st: &libc::stat) -> Result<(), Errno> {
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG | libc::S_IFDIR => Ok(()),
        libc::S_IFCHR => {
            let dev = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
            if CHAR_DEVICES.iter().any(|&(major, minor, _)| (major, minor) == dev) { Ok(()) } else { Err(errno::ACCES) }
        }
        _ => Err(errno::ACCES),
    }
}

fn same_file(a: &libc::stat, b: &libc::stat) -> bool {
    (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
}

/// `openat2(dir, path, flags, mode)` confined beneath `dir`, with the file-type policy, and no
/// protected files (`open_guarded` with an empty `Protected`).
pub fn open_beneath(dir: RawFd, path: &str, flags: i32, mode: u32) -> Result<OwnedFd, Errno> {
    open_guarded(dir, path, flags, mode, &Protected::default())
}

/// Open `path` beneath `dir` for the guest (see the module's documentation):
///
/// * `O_PATH`: a location, not an open file (nothing is read, written or waited for, and it
///   never reaches the guest: path_open never asks for one); any type, never a protected file.
/// * `O_DIRECTORY`: only a directory can result, and opening one acts on nothing: opened directly.
/// * otherwise the path is probed with `O_PATH` (keeping `O_NOFOLLOW` and `O_DIRECTORY`) and
///   checked, then opened with `O_NONBLOCK | O_NOCTTY` and checked again. With `O_CREAT` and
///   nothing there yet, the file is created and checked afterwards; when files are protected it
///   is created relative to its resolved parent, which must not be a protected directory (and
///   then not through a dangling symlink: ELOOP).
pub fn open_guarded(dir: RawFd, path: &str, flags: i32, mode: u32, guard: &Protected) -> Result<OwnedFd, Errno> {
    if path.is_empty() {
        return Err(errno::NOENT);
    }
    let cpath = CString::new(path).map_err(|_| errno::INVAL)?;
    let tmpfile = flags & libc::O_TMPFILE == libc::O_TMPFILE;
    if flags & libc::O_PATH != 0 {
        let fd = resolve(dir, &cpath, flags, 0)?;
        if !guard.is_empty() {
            guard.check_file(&fstat(fd.as_raw_fd())?)?;
        }
        return Ok(fd);
    }
    if flags & libc::O_DIRECTORY != 0 && flags & libc::O_CREAT == 0 && !tmpfile {
        let fd = resolve(dir, &cpath, flags | libc::O_NOCTTY, 0)?;
        if !guard.is_empty() {
            guard.check_file(&fstat(fd.as_raw_fd())?)?;
        }
        return Ok(fd);
    }
    if tmpfile {
        // An unnamed regular file in the directory `path` (never linked in by WASI).
        let fd = resolve(dir, &cpath, flags | libc::O_NOCTTY, mode)?;
        return checked(fd, None, flags, guard);
    }
    let create = flags & libc::O_CREAT != 0;
    let exclusive = create && flags & libc::O_EXCL != 0;
    // O_CREAT | O_EXCL never follows a final symlink: whatever is there, the open fails.
    let nofollow = if exclusive { libc::O_NOFOLLOW } else { flags & libc::O_NOFOLLOW };
    match resolve(dir, &cpath, libc::O_PATH | nofollow | (flags & libc::O_DIRECTORY), 0) {
        Ok(probe) => {
            let st = fstat(probe.as_raw_fd())?;
            // What open(2) itself answers for these, without opening anything.
            if exclusive {
                return Err(errno::EXIST);
            }
            match st.st_mode & libc::S_IFMT {
                libc::S_IFLNK => return Err(errno::LOOP),
                libc::S_IFDIR if create || flags & libc::O_ACCMODE != libc::O_RDONLY => return Err(errno::ISDIR),
                _ => {}
            }
            allowed_type(&st)?;
            guard.check_file(&st)?;
            // The file is there: opening it needs no O_CREAT, so an entry removed meanwhile is
            // not created anew.
            let real = flags & !(libc::O_CREAT | libc::O_EXCL);
            let fd = resolve(dir, &cpath, real | libc::O_NONBLOCK | libc::O_NOCTTY, 0)?;
            checked(fd, Some(&st), flags, guard)
        }
        Err(e) if e == errno::NOENT && create => {
            let fd = if guard.is_empty() {
                resolve(dir, &cpath, flags | libc::O_NONBLOCK | libc::O_NOCTTY, mode)?
            } else {
                let p = parent_beneath(dir, path)?;
                guard.check_dir(p.dir.as_raw_fd())?;
                resolve(p.dir.as_raw_fd(), &p.name, flags | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY, mode)?
            };
            checked(fd, None, flags, guard)
        }
        Err(e) => Err(e),
    }
}

/// The checks after the real open: the file the probe saw (when there was one), of an allowed
/// type, not protected; then the guest's own file status flags.
fn checked(fd: OwnedFd, probe: Option<&libc::stat>, flags: i32, guard: &Protected) -> Result<OwnedFd, Errno> {
    let st = fstat(fd.as_raw_fd())?;
    if probe.is_some_and(|p| !same_file(p, &st)) {
        // The entry was replaced between the probe and the open: the guest may retry.
        return Err(errno::AGAIN);
    }
    allowed_type(&st)?;
    guard.check_file(&st)?;
    if flags & libc::O_NONBLOCK == 0 && st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        // F_SETFL takes only the status flags (O_APPEND, O_NONBLOCK, ...) of `flags`, ignoring
        // the access mode and the creation flags: the guest's, without the probe's O_NONBLOCK.
        // SAFETY: fcntl on an fd we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) } < 0 {
            return Err(last_os_errno());
        }
    }
    Ok(fd)
}

/// A path split into the directory that holds its last component, and that component.
pub struct Parent {
    pub dir: OwnedFd,
    /// The last component, with any trailing slashes kept (the kernel then requires a
    /// directory, as POSIX says).
    pub name: CString,
}

/// Resolve everything but the last component of `path` beneath `dir`.
pub fn parent_beneath(dir: RawFd, path: &str) -> Result<Parent, Errno> {
    if path.is_empty() {
        return Err(errno::NOENT);
    }
    if path.starts_with('/') {
        return Err(errno::NOTCAPABLE);
    }
    let trimmed = path.trim_end_matches('/');
    let (head, name) = match trimmed.rfind('/') {
        Some(i) => (&trimmed[..i], &path[i + 1..]),
        None => (".", path),
    };
    let head = if head.is_empty() { "." } else { head };
    let parent = open_beneath(dir, head, libc::O_PATH | libc::O_DIRECTORY, 0)?;
    let bare = name.trim_end_matches('/');
    if bare == ".." {
        // Operating on the parent's parent: allowed only while it stays beneath `dir`.
        open_beneath(dir, trimmed, libc::O_PATH, 0)?;
    }
    Ok(Parent { dir: parent, name: CString::new(name).map_err(|_| errno::INVAL)? })
}

/// Open a host directory to preopen: it must be a directory (opened with `O_DIRECTORY`, so a
/// FIFO or a device named by mistake is not opened at all) and not a pseudo filesystem.
pub fn open_preopen(host: &Path) -> Result<OwnedFd, String> {
    let what = host.display();
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOCTTY)
        .open(host)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTDIR) => format!("cannot preopen {what}: not a directory"),
            _ => format!("cannot preopen {what}: {e}"),
        })?;
    let fd = OwnedFd::from(dir);
    // SAFETY: fstatfs fills a zeroed statfs buffer for the fd just opened.
    let fs = unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        if libc::fstatfs(fd.as_raw_fd(), &mut fs) < 0 {
            return Err(format!("cannot preopen {what}: {}", std::io::Error::last_os_error()));
        }
        fs
    };
    let magic = (fs.f_type as u64 & 0xffff_ffff) as u32;
    if let Some((_, name)) = PSEUDO_FILESYSTEMS.iter().find(|(m, _)| *m == magic) {
        return Err(format!(
            "cannot preopen {what}: it is on {name}, a pseudo filesystem of kernel and process state that a guest is never given"
        ));
    }
    Ok(fd)
}

/// (st_dev, st_ino): a file's identity, whatever its names.
type FileId = (u64, u64);

/// Host files no guest may reach through any preopen (see the module's documentation).
/// Identities, not paths, so that hard links, renames of what lies above the preopen and
/// symlinks inside it change nothing. The checks cost nothing when it is empty, and a stat
/// per check otherwise.
#[derive(Clone, Debug, Default)]
pub struct Protected {
    /// No open may yield these.
    files: Vec<FileId>,
    /// No entry may be created, removed, renamed or linked in these directories.
    dirs: Vec<FileId>,
    /// None of these may be renamed, removed or replaced: every entry on the way to a protected
    /// file (ancestor directories, symlinks followed) and the file itself.
    entries: Vec<FileId>,
}

fn id_of(m: &std::fs::Metadata) -> FileId {
    (m.dev(), m.ino())
}

fn id_of_stat(st: &libc::stat) -> FileId {
    (st.st_dev, st.st_ino)
}

impl Protected {
    /// Protect each of `paths` (made absolute against the current directory). Each is walked
    /// as the kernel would, following symlinks, and every entry on the way is recorded. A path
    /// that does not exist (yet) protects the deepest directory on its way that does: nothing
    /// can be created there.
    pub fn new(paths: &[PathBuf]) -> std::io::Result<Protected> {
        let mut p = Protected::default();
        for path in paths {
            p.add(path)?;
        }
        Ok(p)
    }

    fn add(&mut self, path: &Path) -> std::io::Result<()> {
        let path = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir()?.join(path) };
        // Components still to walk, the next one last.
        let mut pending: Vec<OsString> = Vec::new();
        push_components(&mut pending, &path);
        let mut cur = PathBuf::from("/");
        self.entries.push(id_of(&std::fs::symlink_metadata(&cur)?));
        let mut links = 0;
        while let Some(c) = pending.pop() {
            if c == ".." {
                cur.pop();
                continue;
            }
            let next = cur.join(&c);
            let m = match std::fs::symlink_metadata(&next) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.dirs.push(id_of(&std::fs::metadata(&cur)?));
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            self.entries.push(id_of(&m));
            if m.file_type().is_symlink() {
                links += 1;
                if links > 40 {
                    return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = std::fs::read_link(&next)?;
                if target.is_absolute() {
                    cur = PathBuf::from("/");
                }
                push_components(&mut pending, &target);
            } else if pending.is_empty() {
                self.files.push(id_of(&m));
                self.dirs.push(id_of(&std::fs::metadata(&cur)?));
            } else {
                cur = next;
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty() && self.entries.is_empty()
    }

    /// EACCES when `st` is a protected file.
    pub fn check_file(&self, st: &libc::stat) -> Result<(), Errno> {
        if self.files.contains(&id_of_stat(st)) { Err(errno::ACCES) } else { Ok(()) }
    }

    /// EACCES when `dir` is a directory whose entries are protected (before creating,
    /// removing, renaming or linking anything in it).
    pub fn check_dir(&self, dir: RawFd) -> Result<(), Errno> {
        if self.dirs.is_empty() {
            return Ok(());
        }
        if self.dirs.contains(&id_of_stat(&fstat(dir)?)) { Err(errno::ACCES) } else { Ok(()) }
    }

    /// EACCES when the entry `name` of `dir` (not followed) is protected: before removing it,
    /// renaming it, renaming over it or linking it. A missing entry is not protected (the
    /// operation itself then fails as it would).
    pub fn check_entry(&self, dir: RawFd, name: &CStr) -> Result<(), Errno> {
        if self.entries.is_empty() {
            return Ok(());
        }
        // The entry itself: a trailing slash would make fstatat follow a symlink.
        let bytes = name.to_bytes();
        let end = bytes.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
        let bare = CString::new(&bytes[..end]).map_err(|_| errno::INVAL)?;
        if bare.is_empty() {
            return Ok(());
        }
        // SAFETY: fstatat on one component of a resolved directory, not following it, into a
        // zeroed stat buffer.
        let st = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstatat(dir, bare.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) < 0 {
                return Ok(());
            }
            st
        };
        if self.entries.contains(&id_of_stat(&st)) { Err(errno::ACCES) } else { Ok(()) }
    }
}

/// Push the components of `path` onto `stack` so that the first is popped first (`.` and the
/// root dropped, `..` kept).
fn push_components(stack: &mut Vec<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    stack.extend(parts.into_iter().rev());
}
