//! Futexes for uthreads: wait on a 32-bit word while it holds an expected value; wake
//! `n` waiters. Waiters hash by address into a fixed table of wait queues, so any word
//! can be waited on without preparing it.

use core::sync::atomic::{AtomicU32, Ordering};

use crossbeam_utils::CachePadded;
use parlib_uthread::BlockReason;

use crate::errno::Errno;
use crate::timeout::Deadline;
use crate::waitq::{block_until, Ended, QLock, WaitQueue, Waiter};

/// Buckets in the address hash. 256 keeps collisions rare for the few hundred
/// concurrently contended words a program typically has, at 32 KiB of table.
const BUCKETS: usize = 256;

/// One bucket: a queue lock and the waiters of every word that hashes here.
struct Bucket {
    qlock: QLock,
    waiters: WaitQueue,
}

/// Each bucket on its own pair of cache lines, so buckets do not false-share
/// (`CachePadded` is 128 bytes on x86-64, for the adjacent-line prefetcher).
static TABLE: [CachePadded<Bucket>; BUCKETS] =
    [const { CachePadded::new(Bucket { qlock: QLock(AtomicU32::new(0)), waiters: WaitQueue::new() }) };
        BUCKETS];

fn bucket(addr: usize) -> &'static Bucket {
    // Fibonacci hashing of the word address (4-byte aligned, so drop the low bits).
    let h = ((addr >> 2) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56;
    &TABLE[h as usize % BUCKETS]
}

/// Blocks the calling uthread (or thread) while `*word == expected`, until a
/// [`futex_wake`] on `word` wakes it. Spurious wake-ups are possible: re-check.
///
/// # Errors
/// `EAGAIN` if `*word != expected` already.
pub fn futex_wait(word: &AtomicU32, expected: u32) -> Result<(), Errno> {
    futex_wait_until(word, expected, None)
}

/// [`futex_wait`] that also ends at `deadline` (if any).
///
/// # Errors
/// `EAGAIN` if `*word != expected` already; `ETIMEDOUT` if the deadline passed first;
/// `EINVAL` for a uthread with a deadline when no timeout service is installed
/// (`parlib_alarms::init`).
pub fn futex_wait_until(word: &AtomicU32, expected: u32, deadline: Option<Deadline>) -> Result<(), Errno> {
    let addr = word as *const AtomicU32 as usize;
    let b = bucket(addr);
    let g = b.qlock.lock();
    // A waker changes the word before it takes the bucket lock, so checking under the
    // lock closes the race: either we see the new value, or the waker sees our node.
    if word.load(Ordering::SeqCst) != expected {
        return Err(Errno::AGAIN);
    }
    if deadline.is_some_and(Deadline::has_passed) {
        return Err(Errno::TIMEDOUT);
    }
    let mut node = Waiter::for_caller("futex_wait");
    node.tag = addr;
    // SAFETY: under the bucket lock; `node` stays alive until it is unlinked (by a waker,
    // or by `block_until` itself on a timeout).
    unsafe { b.waiters.push_back(&mut node) };
    match block_until(g, &node, &b.waiters, BlockReason::Futex, deadline, false)? {
        Ended::TimedOut => Err(Errno::TIMEDOUT),
        _ => Ok(()),
    }
}

/// Wakes up to `n` callers waiting on `word`; returns how many it woke.
pub fn futex_wake(word: &AtomicU32, n: u32) -> u32 {
    let addr = word as *const AtomicU32 as usize;
    let b = bucket(addr);
    let _g = b.qlock.lock();
    let mut woken = 0;
    // SAFETY: under the bucket lock. Each matching node is unlinked before it is woken
    // (after the wake its owner may return and its stack frame vanish).
    unsafe {
        let mut next = b.waiters.front();
        while let Some(w) = next {
            if woken == n {
                break;
            }
            next = (*w).next_in_queue();
            if (*w).tag == addr {
                b.waiters.unlink(w);
                Waiter::wake(w);
                woken += 1;
            }
        }
    }
    woken
}
