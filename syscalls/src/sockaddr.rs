//! [`SockAddr`]: an owned socket address of any family, for the socket calls of the safe
//! face ([`io`](crate::io)).
//!
//! The bytes live in a `sockaddr_storage`, the size the kernel gives its own address
//! buffers (`_K_SS_MAXSIZE`, 128 bytes, `include/uapi/linux/socket.h`), so an address the
//! kernel returns always fits, and a longer one it would refuse (`EINVAL`,
//! `move_addr_to_kernel` in `net/socket.c`). The length says how many of those bytes are
//! the address and never exceeds the storage; every read of the bytes stops there.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::mem::{offset_of, size_of};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Bytes in a `sockaddr_storage` (128 on Linux).
const STORAGE_LEN: usize = size_of::<libc::sockaddr_storage>();

/// Where `sun_path` starts in a `sockaddr_un`, after the family.
const SUN_PATH_OFFSET: usize = offset_of!(libc::sockaddr_un, sun_path);

/// Bytes in `sun_path` (108 on Linux, `unix(7)`).
const SUN_PATH_LEN: usize = size_of::<libc::sockaddr_un>() - SUN_PATH_OFFSET;

/// An owned socket address of any family: a `sockaddr_storage` and the length of the
/// address in it.
///
/// Made from a [`std::net::SocketAddr`] (`From`), a Unix-domain path ([`SockAddr::unix`])
/// or abstract name ([`SockAddr::unix_abstract`]), raw bytes ([`SockAddr::from_raw`]),
/// or returned by [`io::accept`](crate::io::accept) and
/// [`io::recvfrom`](crate::io::recvfrom). Two addresses are equal when their lengths and
/// their bytes up to that length are.
#[derive(Clone, Copy)]
pub struct SockAddr {
    /// All bytes initialised (zeroed first), so any prefix may be read as bytes.
    storage: libc::sockaddr_storage,
    /// At most `STORAGE_LEN`.
    len: libc::socklen_t,
}

fn os_error(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

/// Whether a `T` fits in a `sockaddr_storage`, at its alignment.
const fn fits<T>() -> bool {
    size_of::<T>() <= STORAGE_LEN && align_of::<T>() <= align_of::<libc::sockaddr_storage>()
}

impl SockAddr {
    /// No address: zeroed storage (family `AF_UNSPEC`), length 0.
    fn empty() -> SockAddr {
        // SAFETY: an all-zero sockaddr_storage is valid (plain bytes, no padding).
        SockAddr { storage: unsafe { core::mem::zeroed() }, len: 0 }
    }

    /// Views the storage as a `T` to fill in place (fields only, so the zeroed bytes
    /// around them stay initialised).
    fn storage_as<T>(&mut self) -> &mut T {
        const { assert!(fits::<T>()) };
        // SAFETY: `T` is a sockaddr type (plain integers, any bytes valid) that fits the
        // storage at its alignment (checked above); every byte of the storage is
        // initialised, and the borrow of `self` covers the view's.
        unsafe { &mut *(&mut self.storage as *mut libc::sockaddr_storage).cast::<T>() }
    }

    /// Reads the storage as a `T`, if the address is at least that long.
    fn read_as<T: Copy>(&self) -> Option<T> {
        const { assert!(fits::<T>()) };
        if (self.len as usize) < size_of::<T>() {
            return None;
        }
        // SAFETY: `T` is a sockaddr type (plain integers, any bytes valid) that fits the
        // storage at its alignment (checked above), and the address covers all of it.
        Some(unsafe { (&self.storage as *const libc::sockaddr_storage).cast::<T>().read() })
    }

    /// A Unix-domain address for the file system path `path` (`unix(7)`: `sun_path`
    /// NUL-terminated, the length counting the NUL). An empty path gives the unnamed
    /// address (the family alone), as `std::os::unix::net` does.
    ///
    /// # Errors
    /// `ENAMETOOLONG` if `path` with its NUL does not fit `sun_path` (more than 107
    /// bytes); `EINVAL` if it holds a NUL byte.
    pub fn unix(path: &Path) -> io::Result<SockAddr> {
        let bytes = path.as_os_str().as_bytes();
        if bytes.contains(&0) {
            return Err(os_error(libc::EINVAL));
        }
        if bytes.len() >= SUN_PATH_LEN {
            return Err(os_error(libc::ENAMETOOLONG));
        }
        let terminator = usize::from(!bytes.is_empty());
        Ok(SockAddr::unix_with(bytes, SUN_PATH_OFFSET + bytes.len() + terminator))
    }

    /// A Unix-domain address in Linux's abstract namespace (`unix(7)`): `sun_path` is a
    /// NUL followed by `name` (any bytes, no terminator), and no file is made.
    ///
    /// # Errors
    /// `ENAMETOOLONG` if `name` does not fit after the leading NUL (more than 107 bytes).
    pub fn unix_abstract(name: &[u8]) -> io::Result<SockAddr> {
        if name.len() >= SUN_PATH_LEN {
            return Err(os_error(libc::ENAMETOOLONG));
        }
        let mut path = [0u8; SUN_PATH_LEN];
        path[1..=name.len()].copy_from_slice(name);
        Ok(SockAddr::unix_with(&path[..=name.len()], SUN_PATH_OFFSET + 1 + name.len()))
    }

    /// An `AF_UNIX` address whose `sun_path` starts with `path` (which fits), `len` long.
    fn unix_with(path: &[u8], len: usize) -> SockAddr {
        let mut a = SockAddr::empty();
        let un: &mut libc::sockaddr_un = a.storage_as();
        un.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, &s) in un.sun_path.iter_mut().zip(path) {
            *d = s as libc::c_char;
        }
        a.len = len as libc::socklen_t;
        a
    }

    /// Copies the address of `len` bytes at `addr` (of any family).
    ///
    /// # Errors
    /// `EINVAL` if `len` exceeds a `sockaddr_storage` (as the kernel refuses such an
    /// address).
    ///
    /// # Safety
    /// `addr` is valid for reads of `len` bytes.
    pub unsafe fn from_raw(addr: *const libc::sockaddr, len: libc::socklen_t) -> io::Result<SockAddr> {
        if len as usize > STORAGE_LEN {
            return Err(os_error(libc::EINVAL));
        }
        let mut a = SockAddr::empty();
        // SAFETY: `addr` is readable for `len` bytes (our caller's contract), the storage
        // is writable for `len <= STORAGE_LEN` bytes, and the two cannot overlap (the
        // storage is a fresh local).
        unsafe {
            core::ptr::copy_nonoverlapping(
                addr.cast::<u8>(),
                (&mut a.storage as *mut libc::sockaddr_storage).cast::<u8>(),
                len as usize,
            )
        };
        a.len = len;
        Ok(a)
    }

    /// Makes a call that fills in an address (`accept`, `recvfrom`): `call` gets the
    /// storage and its length, set to the storage's size, which the kernel replaces with
    /// the address's.
    pub(crate) fn from_kernel<T>(
        call: impl FnOnce(*mut libc::sockaddr, *mut libc::socklen_t) -> Result<T, i32>,
    ) -> Result<(T, SockAddr), i32> {
        let mut a = SockAddr::empty();
        let mut len = STORAGE_LEN as libc::socklen_t;
        let r = call((&mut a.storage as *mut libc::sockaddr_storage).cast(), &mut len)?;
        // The kernel reports the full length even if it had to truncate; never let the
        // length claim bytes past the storage.
        a.len = len.min(STORAGE_LEN as libc::socklen_t);
        Ok((r, a))
    }

    /// The address family (`AF_INET`, `AF_UNIX`, ...); `AF_UNSPEC` if the address is too
    /// short to have one.
    pub fn family(&self) -> libc::sa_family_t {
        if (self.len as usize) < size_of::<libc::sa_family_t>() {
            libc::AF_UNSPEC as libc::sa_family_t
        } else {
            self.storage.ss_family
        }
    }

    /// The length of the address in bytes, as the socket calls take it.
    pub fn len(&self) -> libc::socklen_t {
        self.len
    }

    /// Whether the address is empty (length 0: the kernel reported none).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address for C calls that take a `*const sockaddr` with [`len`](Self::len):
    /// valid while `self` is.
    pub fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_storage).cast()
    }

    /// The address's bytes.
    fn bytes(&self) -> &[u8] {
        // SAFETY: every byte of the storage is initialised, and `len <= STORAGE_LEN`.
        unsafe { core::slice::from_raw_parts(self.as_ptr().cast::<u8>(), self.len as usize) }
    }

    /// The address as a [`std::net::SocketAddr`], if it is a whole `AF_INET` or
    /// `AF_INET6` address.
    pub fn as_std(&self) -> Option<SocketAddr> {
        match i32::from(self.family()) {
            libc::AF_INET => self.read_as::<libc::sockaddr_in>().map(|a| {
                let ip = Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes());
                SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port)))
            }),
            libc::AF_INET6 => self.read_as::<libc::sockaddr_in6>().map(|a| {
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                ))
            }),
            _ => None,
        }
    }

    /// The file system path of an `AF_UNIX` address; `None` for other families, the
    /// unnamed address and abstract names.
    pub fn as_unix_path(&self) -> Option<&Path> {
        if i32::from(self.family()) != libc::AF_UNIX {
            return None;
        }
        let path = self.bytes().get(SUN_PATH_OFFSET..).filter(|p| p.first().is_some_and(|&b| b != 0))?;
        let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
        Some(Path::new(OsStr::from_bytes(&path[..end])))
    }
}

impl From<SocketAddrV4> for SockAddr {
    fn from(s: SocketAddrV4) -> SockAddr {
        let mut a = SockAddr::empty();
        let sin: &mut libc::sockaddr_in = a.storage_as();
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = s.port().to_be();
        // `s_addr` is in network order: the octets as they stand in memory.
        sin.sin_addr.s_addr = u32::from_ne_bytes(s.ip().octets());
        a.len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        a
    }
}

impl From<SocketAddrV6> for SockAddr {
    fn from(s: SocketAddrV6) -> SockAddr {
        let mut a = SockAddr::empty();
        let sin6: &mut libc::sockaddr_in6 = a.storage_as();
        sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sin6.sin6_port = s.port().to_be();
        sin6.sin6_flowinfo = s.flowinfo();
        sin6.sin6_addr.s6_addr = s.ip().octets();
        sin6.sin6_scope_id = s.scope_id();
        a.len = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        a
    }
}

impl From<SocketAddr> for SockAddr {
    fn from(s: SocketAddr) -> SockAddr {
        match s {
            SocketAddr::V4(v4) => v4.into(),
            SocketAddr::V6(v6) => v6.into(),
        }
    }
}

impl PartialEq for SockAddr {
    fn eq(&self, other: &SockAddr) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for SockAddr {}

impl fmt::Debug for SockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = self.as_std() {
            write!(f, "SockAddr({s})")
        } else if let Some(p) = self.as_unix_path() {
            write!(f, "SockAddr(unix {p:?})")
        } else {
            f.debug_struct("SockAddr").field("family", &self.family()).field("bytes", &self.bytes()).finish()
        }
    }
}
