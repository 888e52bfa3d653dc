//! What a launch can refuse, as errno-style values for the C API.

use core::fmt;
use core::time::Duration;

/// Why a timed call was not started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The budget is zero, or longer than [`MAX_BUDGET`](crate::MAX_BUDGET).
    InvalidBudget(Duration),
    /// `launch` was called where no call can run: in vcore context, or in a signal
    /// handler (one that runs on the thread's alternate signal stack, or parlib's own).
    BadContext(&'static str),
    /// On a uthread without TLS of its own ([`TlsMode::None`]): a timed call keeps its
    /// per-thread state in TLS, which such uthreads share with their vcore.
    ///
    /// [`TlsMode::None`]: parlib_uthread::TlsMode::None
    NoTls,
    /// A stack, the preemption timer or an alarm could not be had.
    Resource {
        /// What failed.
        what: &'static str,
        /// Its errno.
        errno: i32,
    },
}

impl Error {
    /// The errno the C API returns for it.
    pub fn errno(&self) -> i32 {
        match self {
            Error::InvalidBudget(_) => libc::EINVAL,
            Error::BadContext(_) | Error::NoTls => libc::EPERM,
            Error::Resource { errno, .. } => *errno,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidBudget(d) => write!(
                f,
                "timed call: a budget of {d:?} is invalid (it must be more than zero and at most {:?})",
                crate::MAX_BUDGET
            ),
            Error::BadContext(why) => write!(f, "timed call: cannot launch {why}"),
            Error::NoTls => {
                f.write_str("timed call: a uthread without TLS of its own cannot launch timed calls")
            }
            Error::Resource { what, errno } => write!(f, "timed call: {what} failed (errno {errno})"),
        }
    }
}

impl std::error::Error for Error {}
