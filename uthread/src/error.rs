//! Errors of the uthread layer, each with the errno a C caller would see.

use core::fmt;

/// What went wrong in a uthread library call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// `lib_init` was called a second time.
    AlreadyInitialized,
    /// `lib_init` has not run yet.
    NotInitialized,
    /// `lib_init` was called on a vcore; call it from a plain thread (normally `main`).
    OnVcore,
    /// The vcore layer failed.
    Vcore(parlib_vcore::Error),
    /// A backing thread (for the uthread's TLS) could not be created.
    Tls {
        /// Its errno.
        errno: i32,
    },
}

impl Error {
    /// The errno a C caller would get for this error.
    pub fn errno(&self) -> i32 {
        match self {
            Error::AlreadyInitialized | Error::NotInitialized | Error::OnVcore => libc::EBUSY,
            Error::Vcore(e) => e.errno(),
            Error::Tls { errno } => *errno,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AlreadyInitialized => write!(f, "uthread::lib_init called twice"),
            Error::NotInitialized => write!(f, "uthread::lib_init has not been called"),
            Error::OnVcore => {
                write!(f, "uthread::lib_init must be called from a plain thread, not on a vcore")
            }
            Error::Vcore(e) => write!(f, "{e}"),
            Error::Tls { errno } => write!(
                f,
                "cannot create a backing thread for uthread TLS: {}",
                std::io::Error::from_raw_os_error(*errno)
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<parlib_vcore::Error> for Error {
    fn from(e: parlib_vcore::Error) -> Error {
        Error::Vcore(e)
    }
}
