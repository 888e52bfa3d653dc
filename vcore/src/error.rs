//! Errors of the vcore layer, each with the errno a C caller would see.

use core::fmt;

/// What went wrong in a vcore call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// `lib_init` has not run yet.
    NotInitialized,
    /// `lib_init` was called a second time.
    AlreadyInitialized,
    /// More vcores were requested than the process has.
    TooManyVcores {
        /// How many were asked for.
        requested: usize,
        /// How many exist (`max_vcores()`).
        max: usize,
    },
    /// A vcore id out of range.
    NoSuchVcore {
        /// The id given.
        id: usize,
        /// How many vcores exist.
        max: usize,
    },
    /// `VCORE_LIMIT` is set to something that is not a positive integer.
    BadVcoreLimit(String),
    /// A stack size whose sum with the guard page does not fit in a `usize`.
    StackTooLarge {
        /// The usable size asked for.
        size: usize,
    },
    /// A system call failed.
    Os {
        /// Which call.
        what: &'static str,
        /// Its errno.
        errno: i32,
    },
}

impl Error {
    /// The errno a C caller would get for this error.
    pub fn errno(&self) -> i32 {
        match self {
            Error::NotInitialized | Error::AlreadyInitialized => libc::EBUSY,
            Error::TooManyVcores { .. }
            | Error::NoSuchVcore { .. }
            | Error::BadVcoreLimit(_)
            | Error::StackTooLarge { .. } => libc::EINVAL,
            Error::Os { errno, .. } => *errno,
        }
    }

    /// A failed system call, as nix reports it.
    pub(crate) fn os(what: &'static str, errno: nix::errno::Errno) -> Error {
        Error::Os { what, errno: errno as i32 }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotInitialized => write!(f, "vcore::lib_init has not been called"),
            Error::AlreadyInitialized => write!(f, "vcore::lib_init called twice"),
            Error::TooManyVcores { requested, max } => {
                write!(f, "requested {requested} vcores but the process has only {max}")
            }
            Error::NoSuchVcore { id, max } => write!(f, "vcore {id} does not exist (vcores are 0..{max})"),
            Error::BadVcoreLimit(v) => write!(f, "VCORE_LIMIT={v:?} is not a positive integer"),
            Error::StackTooLarge { size } => {
                write!(f, "a stack of {size} bytes and its guard page do not fit in the address space")
            }
            Error::Os { what, errno } => {
                write!(f, "{what} failed: {}", std::io::Error::from_raw_os_error(*errno))
            }
        }
    }
}

impl std::error::Error for Error {}
