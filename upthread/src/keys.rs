//! Thread-specific data: `upthread_key_create` / `delete`, `getspecific` /
//! `setspecific`, destructors at thread exit.
//!
//! # Keys and stale values
//!
//! A global table of [`PTHREAD_KEYS_MAX`] slots, each with a sequence number: even when
//! free, odd when in use. Creating a key takes a free slot and bumps its number to odd;
//! deleting bumps it to even. Each thread stores, per key, its value *and the sequence
//! number it was set under*; a value whose number is not the slot's current one belongs
//! to a deleted key and reads as null. So `key_delete` need not visit every thread, and a
//! recycled key never shows a value set for its predecessor (as in glibc).
//!
//! Per-thread values live in 32 blocks of 32, allocated on a thread's first
//! `setspecific` into the block: a thread that uses no keys costs 256 bytes.
//!
//! # Destructors
//!
//! At exit (after the cleanup handlers), for every key with a destructor and a non-null
//! value, the value is cleared and the destructor called with it. A destructor may set
//! values again; the pass repeats while any destructor ran, at most
//! [`PTHREAD_DESTRUCTOR_ITERATIONS`] times, as in glibc. Values left after that are
//! dropped.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use libc::{c_int, c_uint, c_void};

use crate::record::Thread;

/// `pthread_key_t`.
#[allow(non_camel_case_types)]
pub type upthread_key_t = c_uint;
/// glibc's `PTHREAD_KEYS_MAX`.
pub const PTHREAD_KEYS_MAX: usize = 1024;
/// glibc's `PTHREAD_DESTRUCTOR_ITERATIONS`.
pub const PTHREAD_DESTRUCTOR_ITERATIONS: usize = 4;

const BLOCK: usize = 32;
const BLOCKS: usize = PTHREAD_KEYS_MAX / BLOCK;

struct KeySlot {
    /// Even: free; odd: in use (module docs).
    seq: AtomicU64,
    /// The destructor (`extern "C" fn(*mut c_void)`) or 0.
    dtor: AtomicUsize,
}

static KEYS: [KeySlot; PTHREAD_KEYS_MAX] =
    [const { KeySlot { seq: AtomicU64::new(0), dtor: AtomicUsize::new(0) } }; PTHREAD_KEYS_MAX];

#[derive(Clone, Copy)]
struct Value {
    seq: u64,
    ptr: *mut c_void,
}

const EMPTY: Value = Value { seq: 0, ptr: core::ptr::null_mut() };

/// One thread's key values (module docs). Touched only by the thread itself.
pub(crate) struct KeyValues {
    blocks: [Option<Box<[Value; BLOCK]>>; BLOCKS],
}

impl KeyValues {
    pub(crate) const fn new() -> KeyValues {
        KeyValues { blocks: [const { None }; BLOCKS] }
    }

    fn get(&self, key: usize, seq: u64) -> *mut c_void {
        match &self.blocks[key / BLOCK] {
            Some(b) if b[key % BLOCK].seq == seq => b[key % BLOCK].ptr,
            _ => core::ptr::null_mut(),
        }
    }

    fn set(&mut self, key: usize, seq: u64, ptr: *mut c_void) {
        let b = self.blocks[key / BLOCK].get_or_insert_with(|| Box::new([EMPTY; BLOCK]));
        b[key % BLOCK] = Value { seq, ptr };
    }
}

/// The sequence number of `key` if it is a key in use.
fn live_seq(key: upthread_key_t) -> Option<u64> {
    let slot = KEYS.get(key as usize)?;
    let seq = slot.seq.load(Ordering::Acquire);
    (seq % 2 == 1).then_some(seq)
}

/// The calling thread's values.
///
/// # Safety
/// `t` must be the calling thread (only it touches its values).
#[allow(clippy::mut_from_ref)]
unsafe fn values(t: &Thread) -> &mut KeyValues {
    // SAFETY: the caller's contract: the thread itself, so no other reference exists.
    unsafe { &mut *t.keys.get() }
}

/// Step 2 of exit (module docs), on the exiting thread.
pub(crate) fn run_destructors(t: &Thread) {
    for _ in 0..PTHREAD_DESTRUCTOR_ITERATIONS {
        let mut ran = false;
        for (key, slot) in KEYS.iter().enumerate() {
            // SAFETY: `t` is the calling thread; the reference ends before any call out.
            if unsafe { values(t) }.blocks[key / BLOCK].is_none() {
                continue;
            }
            let Some(seq) = live_seq(key as upthread_key_t) else { continue };
            let dtor = slot.dtor.load(Ordering::Acquire);
            // SAFETY: as above.
            let v = unsafe { values(t) }.get(key, seq);
            if v.is_null() || dtor == 0 {
                continue;
            }
            // SAFETY: as above.
            unsafe { values(t) }.set(key, seq, core::ptr::null_mut());
            // SAFETY: `dtor` was stored from an `extern "C" fn(*mut c_void)` by key_create.
            let f = unsafe { core::mem::transmute::<usize, extern "C" fn(*mut c_void)>(dtor) };
            f(v);
            ran = true;
        }
        if !ran {
            return;
        }
    }
}

/// `pthread_key_create`: a new key with an optional destructor. Returns 0, `EINVAL` for
/// a null `key`, or `EAGAIN` when all [`PTHREAD_KEYS_MAX`] keys are in use.
///
/// # Safety
/// `key` must be null or writable.
#[no_mangle]
pub unsafe extern "C" fn upthread_key_create(
    key: *mut upthread_key_t,
    dtor: Option<extern "C" fn(*mut c_void)>,
) -> c_int {
    if key.is_null() {
        return libc::EINVAL;
    }
    for (i, slot) in KEYS.iter().enumerate() {
        let seq = slot.seq.load(Ordering::Acquire);
        if seq % 2 == 1 {
            continue;
        }
        if slot.seq.compare_exchange(seq, seq + 1, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            slot.dtor.store(dtor.map_or(0, |f| f as usize), Ordering::Release);
            // SAFETY: non-null, and writable by the caller's contract.
            unsafe { *key = i as upthread_key_t };
            return 0;
        }
    }
    libc::EAGAIN
}

/// `pthread_key_delete`: the key becomes free; values other threads hold for it are
/// forgotten and their destructors never run. Returns 0 or `EINVAL` (not a key in use).
#[no_mangle]
pub extern "C" fn upthread_key_delete(key: upthread_key_t) -> c_int {
    let Some(seq) = live_seq(key) else { return libc::EINVAL };
    match KEYS[key as usize].seq.compare_exchange(seq, seq + 1, Ordering::AcqRel, Ordering::Relaxed) {
        Ok(_) => 0,
        Err(_) => libc::EINVAL, // deleted concurrently
    }
}

/// `pthread_getspecific`: the calling thread's value for `key`, or null (never set, an
/// invalid or deleted key, or not called from an upthread thread).
#[no_mangle]
pub extern "C" fn upthread_getspecific(key: upthread_key_t) -> *mut c_void {
    let (Some(t), Some(seq)) = (Thread::current(), live_seq(key)) else { return core::ptr::null_mut() };
    // SAFETY: `t` is the calling thread.
    unsafe { values(t) }.get(key as usize, seq)
}

/// `pthread_setspecific`: sets the calling thread's value for `key`. Returns 0, `EINVAL`
/// (not a key in use) or `EPERM` (not called from an upthread thread).
#[no_mangle]
pub extern "C" fn upthread_setspecific(key: upthread_key_t, value: *const c_void) -> c_int {
    let Some(seq) = live_seq(key) else { return libc::EINVAL };
    let Some(t) = Thread::current() else { return libc::EPERM };
    // SAFETY: `t` is the calling thread.
    unsafe { values(t) }.set(key as usize, seq, value as *mut c_void);
    0
}
