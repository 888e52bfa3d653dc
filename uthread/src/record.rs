//! Records: one allocation per uthread, holding the uthread layer's [`Uthread`] and the
//! scheduler's own per-thread data, at a random cache colour, recycled through a pool.
//!
//! A scheduler names its per-thread data as [`Scheduler::Thread`](crate::Scheduler::Thread)
//! and never handles the allocation: [`create`](crate::create) makes a record, the handles
//! (`handle`) give access to it, and dropping its [`Exited`](crate::Exited) handle frees it.
//! Since the uthread layer allocates every record, it knows the layout of each one, so
//! the handles convert between the base and the whole record with no cast of the
//! scheduler's.
//!
//! Why a colour: records (and the hot fields a scheduler touches on every switch) of
//! identical threads would otherwise sit at the same offset of same-sized allocations,
//! which the allocator tends to align alike, so they would map to the same cache sets and
//! evict one another. A random line offset spreads them over the sets.

use core::alloc::Layout;
use core::ops::Deref;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use parlib_vcore::spin::PdrSpinLock;

use crate::uthread::Uthread;

/// A uthread's record: the uthread layer's part ([`uthread`](Record::uthread)) and the
/// scheduler's (`T`, reached through `Deref`). Reached only through handles.
#[repr(C)]
pub struct Record<T> {
    /// First, so a pointer to it is a pointer to the record.
    uth: Uthread,
    /// Start of the allocation the record sits in (it is offset by its colour). Stays
    /// readable after the record is dropped in place, for the pool.
    block: usize,
    data: T,
}

impl<T> Record<T> {
    /// The uthread layer's part of the record.
    #[inline]
    pub fn uthread(&self) -> &Uthread {
        &self.uth
    }

    /// The uthread's process-unique number (`main` is 0).
    #[inline]
    pub fn id(&self) -> u64 {
        self.uth.id()
    }

    /// The record whose base is `uth`.
    ///
    /// # Safety
    /// `uth` is the base of a live `Record<T>` (every uthread of the process is a
    /// `Record` of the scheduler's `Thread` type: `create` checks it).
    #[inline]
    pub(crate) unsafe fn from_uthread(uth: NonNull<Uthread>) -> NonNull<Record<T>> {
        // `uth` is the first field of a `#[repr(C)]` record: the addresses are equal.
        uth.cast()
    }

    #[inline]
    pub(crate) fn base(p: NonNull<Record<T>>) -> NonNull<Uthread> {
        p.cast()
    }
}

impl<T> Deref for Record<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.data
    }
}

/// Cache line size on x86-64.
const LINE: usize = 64;
/// Colours: records start at one of this many line offsets in their allocation. 64 lines
/// span 4 KiB, the set-index range of a 32 KiB 8-way L1 with 64-byte lines (64 sets), so
/// the colours cover every L1 set.
const COLOURS: usize = 64;
/// Freed records kept for reuse: enough for bursts of short-lived threads on every
/// vcore; beyond it they go back to the allocator.
const POOL_MAX: usize = 1024;

/// Records ready for reuse: addresses of dropped-in-place records, each still at its
/// colour inside its block. Every record of a process has the one layout of the
/// scheduler's `Thread` type (`create` checks the type), so the pool needs no key. PDR:
/// used on uthreads and in vcore context.
static POOL: PdrSpinLock<Vec<usize>> = PdrSpinLock::new(Vec::new());

fn layout<T>() -> Layout {
    let align = core::mem::align_of::<Record<T>>().max(LINE);
    Layout::from_size_align(core::mem::size_of::<Record<T>>() + COLOURS * LINE, align)
        .expect("a uthread record's layout is valid")
}

/// A random number of cache lines in `0..COLOURS`: splitmix64 over a counter.
fn colour() -> usize {
    static SEED: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let mut z = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) % COLOURS as u64) as usize
}

/// A random cache colour in bytes, `0..4096` in steps of 64: for stacks, whose tops are
/// otherwise all page-aligned (`parlib_vcore::Stack::set_start_offset`).
pub fn cache_colour() -> usize {
    colour() * LINE
}

/// A new, `Idle` record holding `data`, from the pool or freshly allocated.
pub(crate) fn alloc<T>(data: T) -> NonNull<Record<T>> {
    let reused = POOL.lock().pop();
    let (p, block) = match reused {
        // SAFETY: pooled records were dropped in place by `free`, which left `block`
        // readable; every record has this layout.
        Some(p) => {
            (p as *mut Record<T>, unsafe { core::ptr::addr_of!((*(p as *mut Record<T>)).block).read() })
        }
        None => {
            // SAFETY: the layout has a non-zero size.
            let block = unsafe { std::alloc::alloc(layout::<T>()) };
            if block.is_null() {
                std::alloc::handle_alloc_error(layout::<T>());
            }
            // SAFETY: the offset stays within the block, which has COLOURS lines spare.
            (unsafe { block.add(colour() * LINE) }.cast::<Record<T>>(), block as usize)
        }
    };
    // SAFETY: `p` lies inside a block of ours, aligned and with room for a record, and
    // holds no live record (fresh, or dropped in place by `free`).
    unsafe {
        p.write(Record { uth: Uthread::new(), block, data });
        NonNull::new_unchecked(p)
    }
}

/// Drops a record in place and keeps its memory for reuse (or frees it).
///
/// # Safety
/// The record came from [`alloc`], its uthread's backing thread is released (the drop
/// here releases its stack and entry), and nobody refers to it.
pub(crate) unsafe fn free<T>(r: NonNull<Record<T>>) {
    let p = r.as_ptr();
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
    unsafe { std::alloc::dealloc(block as *mut u8, layout::<T>()) };
}
