//! The `wasi_snapshot_preview1` ABI as data: errno values, rights, flags and struct layouts.

/// Errno values, in the ABI's order.
#[allow(dead_code)]
pub mod errno {
    pub const SUCCESS: u16 = 0;
    pub const TOOBIG: u16 = 1;
    pub const ACCES: u16 = 2;
    pub const ADDRINUSE: u16 = 3;
    pub const AGAIN: u16 = 6;
    pub const BADF: u16 = 8;
    pub const BUSY: u16 = 10;
    pub const EXIST: u16 = 20;
    pub const FAULT: u16 = 21;
    pub const FBIG: u16 = 22;
    pub const ILSEQ: u16 = 25;
    pub const INTR: u16 = 27;
    pub const INVAL: u16 = 28;
    pub const IO: u16 = 29;
    pub const ISDIR: u16 = 31;
    pub const LOOP: u16 = 32;
    pub const MFILE: u16 = 33;
    pub const MLINK: u16 = 34;
    pub const NAMETOOLONG: u16 = 37;
    pub const NFILE: u16 = 41;
    pub const NOENT: u16 = 44;
    pub const NOMEM: u16 = 48;
    pub const NOSPC: u16 = 51;
    pub const NOSYS: u16 = 52;
    pub const NOTCONN: u16 = 53;
    pub const NOTDIR: u16 = 54;
    pub const NOTEMPTY: u16 = 55;
    pub const NOTSOCK: u16 = 57;
    pub const NOTSUP: u16 = 58;
    pub const NOTTY: u16 = 59;
    pub const OVERFLOW: u16 = 61;
    pub const PERM: u16 = 63;
    pub const PIPE: u16 = 64;
    pub const RANGE: u16 = 68;
    pub const ROFS: u16 = 69;
    pub const SPIPE: u16 = 70;
    pub const XDEV: u16 = 75;
    pub const NOTCAPABLE: u16 = 76;

    /// Linux errno → WASI errno (the table is the ABI's own numbering of POSIX names).
    pub fn from_os(e: i32) -> u16 {
        use libc::*;
        let table: &[(i32, u16)] = &[
            (E2BIG, 1), (EACCES, 2), (EADDRINUSE, 3), (EADDRNOTAVAIL, 4), (EAFNOSUPPORT, 5),
            (EAGAIN, 6), (EALREADY, 7), (EBADF, 8), (EBADMSG, 9), (EBUSY, 10), (ECANCELED, 11),
            (ECHILD, 12), (ECONNABORTED, 13), (ECONNREFUSED, 14), (ECONNRESET, 15), (EDEADLK, 16),
            (EDESTADDRREQ, 17), (EDOM, 18), (EDQUOT, 19), (EEXIST, 20), (EFAULT, 21), (EFBIG, 22),
            (EHOSTUNREACH, 23), (EIDRM, 24), (EILSEQ, 25), (EINPROGRESS, 26), (EINTR, 27),
            (EINVAL, 28), (EIO, 29), (EISCONN, 30), (EISDIR, 31), (ELOOP, 32), (EMFILE, 33),
            (EMLINK, 34), (EMSGSIZE, 35), (EMULTIHOP, 36), (ENAMETOOLONG, 37), (ENETDOWN, 38),
            (ENETRESET, 39), (ENETUNREACH, 40), (ENFILE, 41), (ENOBUFS, 42), (ENODEV, 43),
            (ENOENT, 44), (ENOEXEC, 45), (ENOLCK, 46), (ENOLINK, 47), (ENOMEM, 48), (ENOMSG, 49),
            (ENOPROTOOPT, 50), (ENOSPC, 51), (ENOSYS, 52), (ENOTCONN, 53), (ENOTDIR, 54),
            (ENOTEMPTY, 55), (ENOTRECOVERABLE, 56), (ENOTSOCK, 57), (EOPNOTSUPP, 58), (ENOTTY, 59),
            (ENXIO, 60), (EOVERFLOW, 61), (EOWNERDEAD, 62), (EPERM, 63), (EPIPE, 64), (EPROTO, 65),
            (EPROTONOSUPPORT, 66), (EPROTOTYPE, 67), (ERANGE, 68), (EROFS, 69), (ESPIPE, 70),
            (ESRCH, 71), (ESTALE, 72), (ETIMEDOUT, 73), (ETXTBSY, 74), (EXDEV, 75),
        ];
        table.iter().find(|(os, _)| *os == e).map_or(IO, |(_, w)| *w)
    }
}

#[allow(dead_code)]
pub mod filetype {
    pub const UNKNOWN: u8 = 0;
    pub const BLOCK_DEVICE: u8 = 1;
    pub const CHARACTER_DEVICE: u8 = 2;
    pub const DIRECTORY: u8 = 3;
    pub const REGULAR_FILE: u8 = 4;
    pub const SOCKET_DGRAM: u8 = 5;
    pub const SOCKET_STREAM: u8 = 6;
    pub const SYMBOLIC_LINK: u8 = 7;
}

pub mod rights {
    pub const FD_DATASYNC: u64 = 1 << 0;
    pub const FD_READ: u64 = 1 << 1;
    pub const FD_SEEK: u64 = 1 << 2;
    pub const FD_FDSTAT_SET_FLAGS: u64 = 1 << 3;
    pub const FD_SYNC: u64 = 1 << 4;
    pub const FD_TELL: u64 = 1 << 5;
    pub const FD_WRITE: u64 = 1 << 6;
    pub const FD_ADVISE: u64 = 1 << 7;
    pub const FD_ALLOCATE: u64 = 1 << 8;
    pub const PATH_CREATE_DIRECTORY: u64 = 1 << 9;
    pub const PATH_CREATE_FILE: u64 = 1 << 10;
    pub const PATH_LINK_SOURCE: u64 = 1 << 11;
    pub const PATH_LINK_TARGET: u64 = 1 << 12;
    pub const PATH_OPEN: u64 = 1 << 13;
    pub const FD_READDIR: u64 = 1 << 14;
    pub const PATH_READLINK: u64 = 1 << 15;
    pub const PATH_RENAME_SOURCE: u64 = 1 << 16;
    pub const PATH_RENAME_TARGET: u64 = 1 << 17;
    pub const PATH_FILESTAT_GET: u64 = 1 << 18;
    pub const PATH_FILESTAT_SET_SIZE: u64 = 1 << 19;
    pub const PATH_FILESTAT_SET_TIMES: u64 = 1 << 20;
    pub const FD_FILESTAT_GET: u64 = 1 << 21;
    pub const FD_FILESTAT_SET_SIZE: u64 = 1 << 22;
    pub const FD_FILESTAT_SET_TIMES: u64 = 1 << 23;
    pub const PATH_SYMLINK: u64 = 1 << 24;
    pub const PATH_REMOVE_DIRECTORY: u64 = 1 << 25;
    pub const PATH_UNLINK_FILE: u64 = 1 << 26;
    pub const POLL_FD_READWRITE: u64 = 1 << 27;
    pub const SOCK_SHUTDOWN: u64 = 1 << 28;
    pub const SOCK_ACCEPT: u64 = 1 << 29;
    pub const ALL: u64 = (1 << 30) - 1;

    /// What a regular file may do.
    pub const FILE: u64 = FD_DATASYNC | FD_READ | FD_SEEK | FD_FDSTAT_SET_FLAGS | FD_SYNC | FD_TELL
        | FD_WRITE | FD_ADVISE | FD_ALLOCATE | FD_FILESTAT_GET | FD_FILESTAT_SET_SIZE
        | FD_FILESTAT_SET_TIMES | POLL_FD_READWRITE;
    /// What a directory may do.
    pub const DIR: u64 = FD_FDSTAT_SET_FLAGS | FD_SYNC | FD_ADVISE | PATH_CREATE_DIRECTORY
        | PATH_CREATE_FILE | PATH_LINK_SOURCE | PATH_LINK_TARGET | PATH_OPEN | FD_READDIR
        | PATH_READLINK | PATH_RENAME_SOURCE | PATH_RENAME_TARGET | PATH_FILESTAT_GET
        | PATH_FILESTAT_SET_SIZE | PATH_FILESTAT_SET_TIMES | FD_FILESTAT_GET
        | FD_FILESTAT_SET_TIMES | PATH_SYMLINK | PATH_REMOVE_DIRECTORY | PATH_UNLINK_FILE;
    /// What a standard stream may do.
    pub const STDIO: u64 = FD_READ | FD_WRITE | FD_FDSTAT_SET_FLAGS | FD_FILESTAT_GET | POLL_FD_READWRITE;
    /// What a socket may do.
    pub const SOCKET: u64 = FD_READ | FD_WRITE | FD_FDSTAT_SET_FLAGS | FD_FILESTAT_GET | POLL_FD_READWRITE | SOCK_SHUTDOWN | SOCK_ACCEPT;
}

pub mod fdflags {
    pub const APPEND: u16 = 1;
    pub const DSYNC: u16 = 2;
    pub const NONBLOCK: u16 = 4;
    pub const RSYNC: u16 = 8;
    pub const SYNC: u16 = 16;
}

pub mod oflags {
    pub const CREAT: u16 = 1;
    pub const DIRECTORY: u16 = 2;
    pub const EXCL: u16 = 4;
    pub const TRUNC: u16 = 8;
}

pub mod fstflags {
    pub const ATIM: u16 = 1;
    pub const ATIM_NOW: u16 = 2;
    pub const MTIM: u16 = 4;
    pub const MTIM_NOW: u16 = 8;
}

pub const LOOKUP_SYMLINK_FOLLOW: u32 = 1;

pub mod clock {
    pub const REALTIME: u32 = 0;
    pub const MONOTONIC: u32 = 1;
    pub const PROCESS_CPUTIME: u32 = 2;
    pub const THREAD_CPUTIME: u32 = 3;
}

/// Largest iovec array accepted (POSIX IOV_MAX).
pub const IOV_MAX: u32 = 1024;
