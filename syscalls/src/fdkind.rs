//! What each descriptor is, and so how a call on it is kept from blocking the vcore.
//!
//! | kind | how calls avoid blocking | how a would-block is detected |
//! |---|---|---|
//! | socket | `MSG_DONTWAIT` per call; the descriptor's flags stay the user's | `EAGAIN`, unless the user set `O_NONBLOCK` (then `EAGAIN` is theirs) |
//! | pipe, FIFO, tty, eventfd, ... | `O_NONBLOCK` set once by us (remembered, so plain threads still block) | `EAGAIN` |
//! | the user set `O_NONBLOCK` | nothing to do | `EAGAIN` goes back to the user |
//! | regular file, block device, directory | never blocks on readiness: run on the uthread's backing thread | - |
//!
//! Kinds are cached per descriptor number (below [`MAX_CACHED_FD`]) and forgotten by the
//! close wrapper; a socket call that finds `ENOTSOCK` reclassifies (a descriptor closed
//! and reused behind our back).

use core::sync::atomic::{AtomicU8, Ordering};

use parlib_vcore::arch::syscall6;

/// Descriptors below this have their kind cached.
pub const MAX_CACHED_FD: usize = 65536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Socket,
    /// A non-socket we made non-blocking ourselves.
    OursNonblock,
    /// The user made it non-blocking: never wait.
    UserNonblock,
    Regular,
}

const UNKNOWN: u8 = 0;
const SOCKET: u8 = 1;
const OURS: u8 = 2;
const USER: u8 = 3;
const REGULAR: u8 = 4;
/// Flag: we set `O_NONBLOCK` on this socket (for `accept` and `connect`).
const SOCKET_NB_OURS: u8 = 0x80;

static KINDS: [AtomicU8; MAX_CACHED_FD] = [const { AtomicU8::new(UNKNOWN) }; MAX_CACHED_FD];

fn slot(fd: i32) -> Option<&'static AtomicU8> {
    usize::try_from(fd).ok().and_then(|i| KINDS.get(i))
}

/// Forgets what `fd` was (it is being closed, or turned out to be something else).
pub(crate) fn forget(fd: i32) {
    if let Some(s) = slot(fd) {
        s.store(UNKNOWN, Ordering::Relaxed);
    }
}

/// Records that `fd` is a socket (we just created or accepted it).
pub(crate) fn note_socket(fd: i32) {
    if let Some(s) = slot(fd) {
        s.store(SOCKET, Ordering::Relaxed);
    }
}

/// The kind of `fd` if it is already known, without classifying it (plain threads must
/// not change a descriptor's flags by asking).
pub(crate) fn cached(fd: i32) -> Option<Kind> {
    match slot(fd).map_or(UNKNOWN, |s| s.load(Ordering::Relaxed)) & !SOCKET_NB_OURS {
        SOCKET => Some(Kind::Socket),
        OURS => Some(Kind::OursNonblock),
        USER => Some(Kind::UserNonblock),
        REGULAR => Some(Kind::Regular),
        _ => None,
    }
}

/// The kind of `fd`, classifying it on first use. `Err(errno)` for a bad descriptor.
pub(crate) fn kind(fd: i32) -> Result<Kind, i32> {
    let cached = slot(fd).map_or(UNKNOWN, |s| s.load(Ordering::Relaxed));
    match cached & !SOCKET_NB_OURS {
        SOCKET => return Ok(Kind::Socket),
        OURS => return Ok(Kind::OursNonblock),
        USER => return Ok(Kind::UserNonblock),
        REGULAR => return Ok(Kind::Regular),
        _ => {}
    }
    let k = classify(fd)?;
    if let Some(s) = slot(fd) {
        s.store(
            match k {
                Kind::Socket => SOCKET,
                Kind::OursNonblock => OURS,
                Kind::UserNonblock => USER,
                Kind::Regular => REGULAR,
            },
            Ordering::Relaxed,
        );
    }
    Ok(k)
}

fn classify(fd: i32) -> Result<Kind, i32> {
    // SAFETY: an all-zero stat is valid; raw fstat writes it.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: raw fstat into a local.
    let r = unsafe {
        syscall6(libc::SYS_fstat as usize, fd as usize, &mut st as *mut libc::stat as usize, 0, 0, 0, 0)
    };
    if r < 0 {
        return Err(-r as i32);
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFSOCK => Ok(Kind::Socket),
        libc::S_IFREG | libc::S_IFBLK | libc::S_IFDIR => Ok(Kind::Regular),
        _ => {
            let fl = fcntl(fd, libc::F_GETFL, 0)?;
            if fl & libc::O_NONBLOCK != 0 {
                return Ok(Kind::UserNonblock);
            }
            fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK)?;
            Ok(Kind::OursNonblock)
        }
    }
}

pub(crate) fn fcntl(fd: i32, cmd: i32, arg: i32) -> Result<i32, i32> {
    // SAFETY: raw fcntl with integer arguments.
    let r = unsafe { syscall6(libc::SYS_fcntl as usize, fd as usize, cmd as usize, arg as usize, 0, 0, 0) };
    if r < 0 {
        Err(-r as i32)
    } else {
        Ok(r as i32)
    }
}

/// Whether an `EAGAIN` on `fd` belongs to the user (they asked for non-blocking I/O).
pub(crate) fn user_wants_eagain(fd: i32, k: Kind) -> bool {
    match k {
        Kind::UserNonblock => true,
        Kind::OursNonblock | Kind::Regular => false,
        Kind::Socket => {
            if slot(fd).is_some_and(|s| s.load(Ordering::Relaxed) & SOCKET_NB_OURS != 0) {
                return false;
            }
            fcntl(fd, libc::F_GETFL, 0).is_ok_and(|fl| fl & libc::O_NONBLOCK != 0)
        }
    }
}

/// Makes a blocking socket non-blocking for calls that have no per-call flag (`accept`,
/// `connect`), remembering that the flag is ours. Returns false if the user had already
/// set it (their `EAGAIN`s are theirs).
pub(crate) fn make_socket_nonblocking(fd: i32) -> Result<bool, i32> {
    if slot(fd).is_some_and(|s| s.load(Ordering::Relaxed) & SOCKET_NB_OURS != 0) {
        return Ok(true);
    }
    let fl = fcntl(fd, libc::F_GETFL, 0)?;
    if fl & libc::O_NONBLOCK != 0 {
        return Ok(false);
    }
    fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK)?;
    if let Some(s) = slot(fd) {
        s.store(SOCKET | SOCKET_NB_OURS, Ordering::Relaxed);
    }
    Ok(true)
}
