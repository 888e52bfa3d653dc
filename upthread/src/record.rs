//! The thread record: what upthread keeps per thread, how records are allocated (at a
//! random cache colour) and recycled, and the registry of live thread handles.
//!
//! A record embeds the [`Uthread`] as its first field (`#[repr(C)]`), so the
//! `NonNull<Uthread>` the uthread layer hands the scheduler is also a pointer to the
//! [`Thread`] around it. An `upthread_t` is the record's address.
//!
//! # Lifecycle word (`life`)
//!
//! | value | meaning | left by |
//! |---|---|---|
//! | `JOINABLE` | running, joinable, nobody joining | detach (→ `DETACHED`), a joiner (→ `CLAIMED`), exit (→ `EXITED`) |
//! | `DETACHED` | running, detached | exit: the exit callback frees the record |
//! | `CLAIMED` | running; a joiner claimed it and is about to block | the joiner's yield callback (→ its pointer), exit (→ `EXITED`) |
//! | pointer (≥ 8) | running; this joiner is blocked on it | exit (→ `EXITED`, and it wakes the joiner) |
//! | `EXITED` | exited, joinable: waiting for a join or detach | join or detach (→ `REAPED`), which frees the record |
//! | `REAPED` | taken by the one join or detach that frees it | — |
//!
//! Exactly one party frees a record: the exit callback of a detached thread, or the join
//! or detach that took it from `EXITED` to `REAPED`.

use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::collections::BTreeSet;

use libc::{c_int, c_void};
use parlib_uthread::Uthread;
use parlib_vcore::spin::PdrSpinLock;

use crate::cancel::CancelState;
use crate::keys::KeyValues;
use crate::signal::SignalState;

pub(crate) const JOINABLE: usize = 0;
pub(crate) const DETACHED: usize = 1;
pub(crate) const CLAIMED: usize = 2;
pub(crate) const EXITED: usize = 3;
pub(crate) const REAPED: usize = 4;

/// `last_vcore` of a thread that has never run.
pub(crate) const NO_VCORE: usize = usize::MAX;

/// What a new thread runs.
pub(crate) enum Start {
    /// Nothing (main, or a thread that has started).
    None,
    /// A C start routine and its argument.
    C(extern "C" fn(*mut c_void) -> *mut c_void, *mut c_void),
    /// A Rust closure; its result is the thread's exit value.
    Rust(Box<dyn FnOnce() -> *mut c_void + Send>),
}

/// One upthread thread.
#[repr(C)]
pub(crate) struct Thread {
    /// The uthread layer's record: first, so the two pointers are one.
    pub(crate) uth: Uthread,
    /// The vcore that last ran it ([`NO_VCORE`] before its first run): it goes back to
    /// that vcore's queue.
    pub(crate) last_vcore: AtomicUsize,
    /// Set when it blocked in a system call: its wake-up goes to the head of the queue.
    pub(crate) to_head: AtomicBool,
    /// The lifecycle word (module docs).
    pub(crate) life: AtomicUsize,
    /// The exit value, set before the thread exits.
    pub(crate) retval: AtomicPtr<c_void>,
    /// Whether this is `main`'s record (never freed, never exits through the scheduler).
    pub(crate) is_main: bool,
    /// Set once the thread has started exiting (cleanup handlers, key destructors).
    pub(crate) exiting: AtomicBool,
    /// What it runs; taken by the thread itself when it starts.
    pub(crate) start: UnsafeCell<Start>,
    pub(crate) cancel: CancelState,
    pub(crate) keys: UnsafeCell<KeyValues>,
    pub(crate) signals: SignalState,
    /// Its name (Rust `Builder::name`); read and written by the thread itself and its
    /// creator before it starts.
    pub(crate) name: UnsafeCell<Option<String>>,
    /// Start of the allocation the record sits in (it is offset by its colour).
    block: usize,
}

// SAFETY: the non-atomic fields are touched by the thread itself only (`start`, `keys`,
// `name` after start, the cancel cleanup chain), or by its creator before the thread is
// published; the uthread layer's own record is Sync.
unsafe impl Sync for Thread {}
// SAFETY: as above.
unsafe impl Send for Thread {}

impl Thread {
    fn new(start: Start, detached: bool, is_main: bool, block: usize) -> Thread {
        Thread {
            uth: Uthread::new(),
            last_vcore: AtomicUsize::new(NO_VCORE),
            to_head: AtomicBool::new(false),
            life: AtomicUsize::new(if detached { DETACHED } else { JOINABLE }),
            retval: AtomicPtr::new(core::ptr::null_mut()),
            is_main,
            exiting: AtomicBool::new(false),
            start: UnsafeCell::new(start),
            cancel: CancelState::new(),
            keys: UnsafeCell::new(KeyValues::new()),
            signals: SignalState::new(),
            name: UnsafeCell::new(None),
            block,
        }
    }

    /// The record around a uthread of this scheduler.
    ///
    /// # Safety
    /// `uth` must be a uthread created by upthread (every uthread of this process is,
    /// once `init` has installed the scheduler), and alive.
    #[inline]
    pub(crate) unsafe fn from_uth<'a>(uth: NonNull<Uthread>) -> &'a Thread {
        // SAFETY: `uth` is the first field of a `#[repr(C)]` Thread (the caller's
        // contract), so the two addresses are equal.
        unsafe { &*uth.as_ptr().cast::<Thread>() }
    }

    /// The record of the calling thread, or `None` outside upthread threads (vcore
    /// context, plain Linux threads, before `init`).
    #[inline]
    pub(crate) fn current<'a>() -> Option<&'a Thread> {
        // SAFETY: every uthread of this process is an upthread Thread once our scheduler
        // is installed, and the running one is alive.
        parlib_uthread::current().filter(|_| crate::is_initialized()).map(|u| unsafe { Thread::from_uth(u) })
    }

    /// This record as the uthread layer sees it.
    #[inline]
    pub(crate) fn uth_ptr(&self) -> NonNull<Uthread> {
        NonNull::from(&self.uth)
    }

    /// The handle (`upthread_t`) of this thread.
    #[inline]
    pub(crate) fn handle(&self) -> usize {
        self as *const Thread as usize
    }
}

// ---------------------------------------------------------------------------------------
// Allocation with a random cache colour, and the free pool.

/// Cache line size on x86-64.
const LINE: usize = 64;
/// Colours: records start at one of this many line offsets in their allocation. 64 lines
/// span 4 KiB, the set-index range of a 32 KiB 8-way L1 with 64-byte lines (64 sets), so
/// the colours cover every L1 set.
const COLOURS: usize = 64;
/// Freed records kept for reuse: enough for bursts of short-lived threads on every
/// vcore; beyond it they go back to the allocator.
const POOL_MAX: usize = 1024;

fn layout() -> Layout {
    let align = core::mem::align_of::<Thread>().max(LINE);
    Layout::from_size_align(core::mem::size_of::<Thread>() + COLOURS * LINE, align)
        .expect("the thread record layout is valid")
}

/// A random number of cache lines in `0..COLOURS`: splitmix64 over a counter.
fn colour() -> usize {
    static SEED: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let mut z = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) % COLOURS as u64) as usize
}

/// A random colour in bytes, `0..COLOURS * LINE`: for stacks, whose tops are otherwise
/// all page-aligned.
pub(crate) fn colour_offset() -> usize {
    colour() * LINE
}

/// Records ready for reuse (addresses of dropped-in-place `Thread`s, each still at its
/// colour inside its block). PDR: taken on uthreads, returned in vcore context.
static POOL: PdrSpinLock<Vec<usize>> = PdrSpinLock::new(Vec::new());

/// A new record for a thread, from the pool or freshly allocated.
///
/// Why a colour: records (and the hot fields a scheduler touches on every switch) of
/// identical threads would otherwise sit at the same offset of same-sized allocations,
/// which the allocator tends to align alike, so they would map to the same cache sets
/// and evict one another. A random line offset spreads them over the sets.
pub(crate) fn alloc(start: Start, detached: bool) -> NonNull<Thread> {
    let reused = POOL.lock().pop();
    let (p, block) = match reused {
        // SAFETY: pooled records were dropped in place by `free`, which left `block`
        // readable.
        Some(p) => (p as *mut Thread, unsafe { (*(p as *mut Thread)).block }),
        None => {
            // SAFETY: the layout has a non-zero size.
            let block = unsafe { std::alloc::alloc(layout()) };
            if block.is_null() {
                std::alloc::handle_alloc_error(layout());
            }
            // SAFETY: the offset stays within the block, which has COLOURS lines spare.
            (unsafe { block.add(colour() * LINE) }.cast::<Thread>(), block as usize)
        }
    };
    // SAFETY: `p` lies inside a block of ours, aligned and with room for a record, and
    // holds no live record (fresh, or dropped in place by `free`).
    unsafe {
        p.write(Thread::new(start, detached, false, block));
        NonNull::new_unchecked(p)
    }
}

/// The record of `main`: never freed.
pub(crate) fn alloc_main() -> NonNull<Thread> {
    let t = Box::leak(Box::new(Thread::new(Start::None, false, true, 0)));
    NonNull::from(t)
}

/// Drops a record in place and keeps its memory for reuse (or frees it).
///
/// # Safety
/// The thread must be cleaned up (`uthread::cleanup`) and referred to by nobody.
pub(crate) unsafe fn free(t: NonNull<Thread>) {
    let p = t.as_ptr();
    // SAFETY: the caller's contract: nobody uses the record any more.
    let block = unsafe { (*p).block };
    // SAFETY: as above; the record was written by `alloc`.
    unsafe { core::ptr::drop_in_place(p) };
    // Keep `block` readable for the next `alloc` that reuses this record.
    // SAFETY: the memory is ours and the field is plain data.
    unsafe { core::ptr::addr_of_mut!((*p).block).write(block) };
    let mut pool = POOL.lock();
    if pool.len() < POOL_MAX {
        pool.push(p as usize);
        return;
    }
    drop(pool);
    // SAFETY: `block` is the allocation `alloc` made with this layout.
    unsafe { std::alloc::dealloc(block as *mut u8, layout()) };
}

// ---------------------------------------------------------------------------------------
// The registry of live handles.

/// Handles of threads whose records are allocated (created, not yet reaped), and main.
/// Lets join, detach, kill and cancel answer ESRCH for handles that are not threads,
/// instead of reading freed memory. PDR: used on uthreads and in vcore context.
static LIVE: PdrSpinLock<BTreeSet<usize>> = PdrSpinLock::new(BTreeSet::new());

/// Records a new handle.
pub(crate) fn register(t: &Thread) {
    LIVE.lock().insert(t.handle());
}

/// Forgets a handle (the record is being freed).
pub(crate) fn unregister(t: &Thread) {
    LIVE.lock().remove(&t.handle());
}

/// Runs `f` on the live thread behind `handle` while the registry lock is held, so the
/// record cannot be freed meanwhile. `f` must be short and must not block.
pub(crate) fn with_live<R>(handle: usize, f: impl FnOnce(&Thread) -> R) -> Option<R> {
    let live = LIVE.lock();
    // SAFETY: a registered handle is the address of an allocated record, and records are
    // unregistered (under this lock) before they are freed.
    live.contains(&handle).then(|| f(unsafe { &*(handle as *const Thread) }))
}

/// Posts a request (a cancel, a signal) to the thread behind `handle`, the shape both
/// `upthread_cancel` and `upthread_kill` have:
/// 1. under the registry lock, `post` records the request on the target and says
///    whether it wants the target now; if so, and the target is another thread, its
///    interruptible wait (if any) ends, so that it acts on the request when it runs;
/// 2. a thread that posted to itself is not waiting: `act_on_self` acts at once.
///
/// Returns 0, or `ESRCH` for a handle that is not a live thread.
pub(crate) fn post(
    handle: usize,
    post: impl FnOnce(&Thread) -> bool,
    act_on_self: impl FnOnce(&Thread),
) -> c_int {
    let me = Thread::current();
    let to_self = |t: &Thread| me.is_some_and(|m| core::ptr::eq(m, t));
    let found = with_live(handle, |t| {
        if post(t) && !to_self(t) {
            // SAFETY: the registry lock keeps the record alive during the call.
            unsafe { parlib_uthread::interrupt_wait(t.uth_ptr()) };
        }
    });
    if found.is_none() {
        return libc::ESRCH;
    }
    if let Some(m) = me.filter(|m| m.handle() == handle) {
        act_on_self(m);
    }
    0
}
