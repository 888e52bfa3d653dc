//! Thread attributes in the storage of glibc's `pthread_attr_t` (56 bytes, 8-aligned),
//! with upthread's own layout inside:
//!
//! | offset | field | meaning |
//! |---|---|---|
//! | 0 | `magic: u64` | [`ATTR_MAGIC`] once initialised, 0 after destroy |
//! | 8 | `detached: u32` | `PTHREAD_CREATE_JOINABLE` (0) or `PTHREAD_CREATE_DETACHED` (1) |
//! | 12 | `user_stack: u32` | 1 if `setstack` gave a stack |
//! | 16 | `stack_size: usize` | usable bytes |
//! | 24 | `stack_addr: usize` | lowest address of a user stack |
//! | 32 | `guard_size: usize` | as set; see [`upthread_attr_setguardsize`] |
//! | 40 | 16 bytes | unused |
//!
//! Every function returns `EINVAL` for a null or uninitialised attribute object.

use libc::{c_int, c_void, size_t};

use crate::thread::{SpawnOpts, StackSpec};

/// glibc's `PTHREAD_STACK_MIN`: the smallest stack accepted.
pub const PTHREAD_STACK_MIN: usize = 16384;
/// Default usable stack size of a thread: 2 MiB, Rust's default for spawned threads.
/// glibc uses `RLIMIT_STACK` (usually 8 MiB); stacks are committed page by page when
/// touched, so the reservation costs address space, not memory, but a smaller one keeps
/// transparent huge pages from backing whole stacks.
pub const DEFAULT_STACK_SIZE: usize = 2 * 1024 * 1024;
/// `PTHREAD_CREATE_JOINABLE`.
pub const PTHREAD_CREATE_JOINABLE: c_int = 0;
/// `PTHREAD_CREATE_DETACHED`.
pub const PTHREAD_CREATE_DETACHED: c_int = 1;
/// Marks an initialised attribute object ("upthattr" in ASCII).
pub const ATTR_MAGIC: u64 = 0x7570_7468_6174_7472;

/// `upthread_attr_t`: the storage of glibc's `pthread_attr_t`. Opaque: use the
/// `upthread_attr_*` functions.
#[repr(C, align(8))]
pub struct UpthreadAttr {
    bytes: [u8; 56],
}

#[repr(C)]
struct AttrData {
    magic: u64,
    detached: u32,
    user_stack: u32,
    stack_size: usize,
    stack_addr: usize,
    guard_size: usize,
}

const _: () = assert!(core::mem::size_of::<UpthreadAttr>() == core::mem::size_of::<libc::pthread_attr_t>());
const _: () = assert!(core::mem::size_of::<AttrData>() <= core::mem::size_of::<UpthreadAttr>());

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// The initialised attribute data behind `attr`, or `EINVAL`.
///
/// # Safety
/// `attr` must be null or point to an `UpthreadAttr` the caller may access.
unsafe fn data<'a>(attr: *const UpthreadAttr) -> Result<&'a mut AttrData, c_int> {
    if attr.is_null() {
        return Err(libc::EINVAL);
    }
    // SAFETY: the caller's contract; AttrData fits in and is aligned like UpthreadAttr.
    let d = unsafe { &mut *(attr as *mut AttrData) };
    if d.magic != ATTR_MAGIC {
        return Err(libc::EINVAL);
    }
    Ok(d)
}

fn code(r: Result<(), c_int>) -> c_int {
    r.err().unwrap_or(0)
}

/// The creation options `attr` describes (defaults for null).
///
/// # Safety
/// As for [`data`].
pub(crate) unsafe fn spawn_opts(attr: *const UpthreadAttr) -> Result<SpawnOpts, c_int> {
    if attr.is_null() {
        return Ok(SpawnOpts::default());
    }
    // SAFETY: the caller's contract.
    let d = unsafe { data(attr) }?;
    // A size that cannot be mapped is refused when the thread is created (`prepare`),
    // with glibc's error. Our guard is always one page.
    let stack = if d.user_stack != 0 {
        StackSpec::User { lo: d.stack_addr, size: d.stack_size }
    } else {
        StackSpec::Size(d.stack_size)
    };
    Ok(SpawnOpts { detached: d.detached != 0, stack, name: None })
}

/// `pthread_attr_init`: joinable, a [`DEFAULT_STACK_SIZE`] stack, a one-page guard.
///
/// # Safety
/// `attr` must be null (`EINVAL`) or writable storage of an attribute object.
#[no_mangle]
pub unsafe extern "C" fn upthread_attr_init(attr: *mut UpthreadAttr) -> c_int {
    if attr.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: writable storage of the right size and alignment (the caller's contract).
    unsafe {
        attr.write(UpthreadAttr { bytes: [0; 56] });
        (attr as *mut AttrData).write(AttrData {
            magic: ATTR_MAGIC,
            detached: 0,
            user_stack: 0,
            stack_size: DEFAULT_STACK_SIZE,
            stack_addr: 0,
            guard_size: page_size(),
        });
    }
    0
}

/// `pthread_attr_destroy`.
///
/// # Safety
/// As for [`upthread_attr_init`].
#[no_mangle]
pub unsafe extern "C" fn upthread_attr_destroy(attr: *mut UpthreadAttr) -> c_int {
    // SAFETY: the caller's contract.
    code(unsafe { data(attr) }.map(|d| d.magic = 0))
}

/// `pthread_attr_setdetachstate`: `PTHREAD_CREATE_JOINABLE` or `PTHREAD_CREATE_DETACHED`,
/// else `EINVAL`.
///
/// # Safety
/// As for [`upthread_attr_init`].
#[no_mangle]
pub unsafe extern "C" fn upthread_attr_setdetachstate(attr: *mut UpthreadAttr, state: c_int) -> c_int {
    if state != PTHREAD_CREATE_JOINABLE && state != PTHREAD_CREATE_DETACHED {
        return libc::EINVAL;
    }
    // SAFETY: the caller's contract.
    code(unsafe { data(attr) }.map(|d| d.detached = state as u32))
}

/// `pthread_attr_getdetachstate`.
///
/// # Safety
/// As for [`upthread_attr_init`]; `state` must be null (`EINVAL`) or writable.
#[no_mangle]
pub unsafe extern "C" fn upthread_attr_getdetachstate(attr: *const UpthreadAttr, state: *mut c_int) -> c_int {
    if state.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: the caller's contract.
    let d = match unsafe { data(attr) } {
        Ok(d) => d,
        Err(e) => return e,
    };
    // SAFETY: non-null, and writable by the caller's contract.
    unsafe { *state = d.detached as c_int };
    0
}

/// `pthread_attr_setstacksize`: `EINVAL` below [`PTHREAD_STACK_MIN`]. Any larger size is
/// accepted, as glibc does; [`upthread_create`](crate::thread::upthread_create) then fails
/// with `EINVAL` if the size and the guard page overflow a `size_t`, and with `EAGAIN` if
/// the stack cannot be mapped.
///
/// # Safety
/// As for [`upthread_attr_init`].
#[no_mangle]
pub unsafe extern "C" fn upthread_attr_setstacksize(attr: *mut UpthreadAttr, size: size_t) -> c_int {
    if size < PTHREAD_STACK_MIN {
        return libc::EINVAL;
    }
    // SAFETY: the caller's contract.
    code(unsafe { data(attr) }.map(|d| d.stack_size = size))
}

/// `pthread_attr_getstacksize`.
///
/// # Safety
/// As for [`upthread_attr_getdetachstate`].
#[no_mangle]
pub unsafe extern "C" fn upthread_attr_getstacksize(attr: *const UpthreadAttr, size: *mut size_t) -> c_int {
    if size.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: the caller's contract.
    let d = match unsafe { data(attr) } {
        Ok(d) => d,
        Err(e) => return e,
    };
    // SAFETY: non-null, and writable by the caller's contract.
    unsafe { *size = d.stack_size };
    0
}

/// `pthread_attr_setstack`: the thread runs on `[addr, addr + size)`, which the caller
/// owns and must keep until the thread has been joined (or, detached, has exited).
/// `EINVAL` for a null `addr` or a size below [`PTHREAD_STACK_MIN`]. Such a stack has no
/// guard page.
///
/// # Safety
/// As for [`upthread_attr_init`].
#[no_mangle]
pub unsafe extern "C" fn upthread_attr_setstack(
    attr: *mut UpthreadAttr,
    addr: *mut c_void,
    size: size_t,
) -> c_int {
    if addr.is_null() || size < PTHREAD_STACK_MIN {
        return libc::EINVAL;
    }
    // SAFETY: the caller's contract.
    code(unsafe { data(attr) }.map(|d| {
        d.user_stack = 1;
        d.stack_addr = addr as usize;
        d.stack_size = size;
    }))
}

/// `pthread_attr_getstack`: the user stack's lowest address (null if none was set) and
/// the stack size.
///
/// # Safety
/// As for [`upthread_attr_init`]; `addr` and `size` must be null (`EINVAL`) or writable.
#[no_mangle]
pub unsafe extern "C" fn upthread_attr_getstack(
    attr: *const UpthreadAttr,
    addr: *mut *mut c_void,
    size: *mut size_t,
) -> c_int {
    if addr.is_null() || size.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: the caller's contract.
    let d = match unsafe { data(attr) } {
        Ok(d) => d,
        Err(e) => return e,
    };
    // SAFETY: both non-null, and writable by the caller's contract.
    unsafe {
        *addr = if d.user_stack != 0 { d.stack_addr as *mut c_void } else { core::ptr::null_mut() };
        *size = d.stack_size;
    }
    0
}

/// `pthread_attr_setguardsize`: stored and reported back by `getguardsize`, but every
/// upthread-allocated stack has a one-page guard whatever the value (a user stack has
/// none, as with glibc).
///
/// # Safety
/// As for [`upthread_attr_init`].
#[no_mangle]
pub unsafe extern "C" fn upthread_attr_setguardsize(attr: *mut UpthreadAttr, size: size_t) -> c_int {
    // SAFETY: the caller's contract.
    code(unsafe { data(attr) }.map(|d| d.guard_size = size))
}

/// `pthread_attr_getguardsize`.
///
/// # Safety
/// As for [`upthread_attr_getdetachstate`].
#[no_mangle]
pub unsafe extern "C" fn upthread_attr_getguardsize(attr: *const UpthreadAttr, size: *mut size_t) -> c_int {
    if size.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: the caller's contract.
    let d = match unsafe { data(attr) } {
        Ok(d) => d,
        Err(e) => return e,
    };
    // SAFETY: non-null, and writable by the caller's contract.
    unsafe { *size = d.guard_size };
    0
}
