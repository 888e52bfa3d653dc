//! The error type of the raw, pthread-shaped API: an errno, as glibc returns it.

use core::fmt;

/// An errno value (`EBUSY`, `EDEADLK`, `EPERM`, `EINVAL`, `EAGAIN`, `ETIMEDOUT`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// The lock is held (trylock), or the object is in use (destroy).
    pub const BUSY: Errno = Errno(libc::EBUSY);
    /// The caller already holds the lock.
    pub const DEADLK: Errno = Errno(libc::EDEADLK);
    /// The caller does not hold the lock it unlocks.
    pub const PERM: Errno = Errno(libc::EPERM);
    /// An invalid argument or an uninitialised object.
    pub const INVAL: Errno = Errno(libc::EINVAL);
    /// Try again: a futex value mismatch, a semaphore at 0, a recursion count overflow.
    pub const AGAIN: Errno = Errno(libc::EAGAIN);
    /// A semaphore would exceed its maximum value.
    pub const OVERFLOW: Errno = Errno(libc::EOVERFLOW);
    /// A timed wait reached its deadline.
    pub const TIMEDOUT: Errno = Errno(libc::ETIMEDOUT);
    /// An interruptible wait was interrupted (`parlib_uthread::interrupt_wait`).
    pub const INTR: Errno = Errno(libc::EINTR);
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

impl std::error::Error for Errno {}

/// Who is calling, for ownership checks: the running uthread, or the plain thread (its
/// TLS block, which no two live threads share, tagged with bit 0 so it never equals a
/// uthread record's address). Never 0, which means "nobody".
pub(crate) fn caller_id() -> usize {
    match parlib_uthread::current() {
        Some(u) => u.as_ptr() as usize,
        None => parlib_vcore::arch::fs_base() | 1,
    }
}
