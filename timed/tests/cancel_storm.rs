//! Cancellation at random points of calls that allocate, print through C stdio and lock
//! `parlib-sync` mutexes: the allocator and stdio stay consistent, no lock stays held,
//! and the heap grows by no more than the crate docs say a cancel can leak.

use std::time::Duration;

use parlib_sync::Mutex;
use parlib_timed::{self as timed, Cancelled, Outcome};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Largest block a call holds at a time: the bound on what one abandoned call leaks.
const MAX_BLOCK: usize = 64 * 1024;

static COUNTER: Mutex<u64> = Mutex::new(0);

fn in_use_bytes() -> usize {
    // SAFETY: mallinfo2 has no preconditions.
    unsafe { libc::mallinfo2() }.uordblks
}

/// One call's work: allocate, fill, check, print, lock; `checkpoints` says whether it
/// offers cancellation points.
fn work(seed: u64, checkpoints: bool) -> u64 {
    let mut rng = parlib_testkit::Rng::new(seed);
    let mut sum = 0u64;
    for round in 0.. {
        let size = rng.range(1, MAX_BLOCK);
        let fill = (rng.next() & 0xFF) as u8;
        let v = vec![fill; size];
        assert!(v.iter().all(|&b| b == fill), "heap block corrupted");
        {
            let mut g = COUNTER.lock();
            *g += 1;
            sum = sum.wrapping_add(*g);
        }
        if round % 64 == 0 {
            // SAFETY: a constant format with matching arguments; libc's stdout.
            unsafe {
                libc::printf(
                    c"call %llu round %d\n".as_ptr(),
                    seed as libc::c_ulonglong,
                    round as libc::c_int,
                )
            };
        }
        if checkpoints {
            timed::checkpoint();
        }
        if round > 1_000_000 {
            break;
        }
    }
    sum
}

#[test]
fn a_thousand_cancels_at_random_points_leave_heap_stdio_and_locks_consistent() {
    parlib_testkit::isolated!(TIMEOUT, {
        let mut rng = parlib_testkit::Rng::new(42);
        // Warm the allocator and stdio so their one-time growth is not counted.
        let _ = work_slice(0, &mut rng);
        let before = in_use_bytes();
        let mut counts = [0usize; 4];
        for i in 1..=1000u64 {
            match work_slice(i, &mut rng) {
                Some(Cancelled::Unwound) => counts[0] += 1,
                Some(Cancelled::Returned) => counts[1] += 1,
                Some(Cancelled::Panicked) => counts[2] += 1,
                Some(Cancelled::Abandoned) => counts[3] += 1,
                None => {}
            }
        }
        let after = in_use_bytes();
        // No lock stayed held: this thread's count is back to 0 and the mutex is free.
        assert_eq!(parlib_sync::held_locks(), 0, "outcomes {counts:?}");
        assert!(COUNTER.try_lock().is_some(), "a cancelled call left the mutex held");
        assert_eq!(counts[2], 0, "no call panicked");
        assert!(counts[0] > 0 && counts[3] > 0, "both kinds of cancel happened: {counts:?}");
        // The allocator still works under a storm of its own.
        let blocks: Vec<Vec<u8>> = (0..10_000).map(|i| vec![i as u8; 1 + i % 4096]).collect();
        assert!(blocks.iter().enumerate().all(|(i, b)| b.iter().all(|&x| x == i as u8)));
        drop(blocks);
        // An abandoned call leaks at most the one block it held (and its Vec header).
        let bound = counts[3] * (MAX_BLOCK + 64) + (1 << 20);
        let growth = after.saturating_sub(before);
        println!("outcomes (unwound, returned, panicked, abandoned) {counts:?}; heap growth {growth} B, bound {bound} B");
        assert!(
            growth <= bound,
            "heap grew {growth} bytes, more than {bound} for {} abandoned calls",
            counts[3]
        );
        // SAFETY: flushing C stdio.
        assert_eq!(unsafe { libc::fflush(core::ptr::null_mut()) }, 0);
    });
}

/// Launches call `i` with a random small budget and cancels it if it times out, with a
/// grace of 0 or the default (abandoning or unwinding).
fn work_slice(i: u64, rng: &mut parlib_testkit::Rng) -> Option<Cancelled> {
    let checkpoints = rng.below(2) == 0;
    let budget = Duration::from_micros(20 + rng.below(300));
    match timed::launch(budget, move || work(i, checkpoints)).unwrap() {
        Outcome::Completed(_) => None,
        Outcome::Timeout(c) | Outcome::Paused(c) => Some(if checkpoints {
            c.cancel_within(Duration::from_secs(10))
        } else {
            c.cancel_within(Duration::ZERO)
        }),
    }
}
