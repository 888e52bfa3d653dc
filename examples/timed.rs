//! Preemptible timed calls (`parlib::timed`): a computation with a deadline that is
//! resumed, one that is cancelled, and calls nested three deep.
//!
//! ```text
//! cargo run --release --example timed
//! ```
//!
//! Runs on a plain thread: timed calls need no vcores. (On a uthread they work the same,
//! preempted through the vcore's alarms, while the vcore runs other uthreads.)

use std::time::{Duration, Instant};

use parlib::timed::{self, Cancelled, Outcome};

/// An exact computation: the same steps give the same value however often it is
/// preempted.
fn hash_chain(steps: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for i in 0..steps {
        h = (h ^ i).wrapping_mul(0x100_0000_01b3);
        if i % 4096 == 0 {
            timed::checkpoint(); // where a cancel may unwind this call
        }
    }
    h
}

/// Resumes `out` with `slice` at a time until it completes; returns the value and how
/// many slices it needed.
fn run_to_completion<T>(mut out: Outcome<T>, slice: Duration) -> (T, u32) {
    let mut slices = 1;
    loop {
        match out {
            Outcome::Completed(v) => return (v, slices),
            Outcome::Timeout(c) | Outcome::Paused(c) => {
                // The launcher is free to do other work here: the call is suspended.
                slices += 1;
                out = c.resume(slice).expect("resume");
            }
        }
    }
}

fn main() {
    const STEPS: u64 = 200_000_000;
    let slice = Duration::from_millis(1);

    // 1. A deadline, then resumes: the same value as a direct call.
    let t = Instant::now();
    let direct = hash_chain(STEPS);
    let direct_time = t.elapsed();
    let t = Instant::now();
    let out = timed::launch(slice, || hash_chain(STEPS)).expect("launch");
    let (value, slices) = run_to_completion(out, slice);
    assert_eq!(value, direct);
    println!(
        "resumed: {STEPS} steps in {slices} slices of {slice:?}: {:?} (direct: {direct_time:?}), value {value:#x}",
        t.elapsed()
    );

    // 2. A call that owns a buffer, cancelled after its first slice: it unwinds at its
    //    next checkpoint and the buffer is freed.
    let out = timed::launch(slice, || {
        let buffer = vec![1u8; 8 << 20];
        hash_chain(u64::MAX) ^ buffer[0] as u64
    })
    .expect("launch");
    let Outcome::Timeout(c) = out else { unreachable!("an endless call times out") };
    let how = c.cancel_within(Duration::from_secs(1));
    println!("cancelled: {how:?} (its 8 MiB buffer dropped by the unwind)");
    assert_eq!(how, Cancelled::Unwound);

    // 3. Nested three deep: the outer budget is the shortest, so the outer call stops
    //    inside the innermost one and takes both inner calls with it.
    let out = timed::launch(Duration::from_millis(2), || {
        let middle = timed::launch(Duration::from_secs(60), || {
            let inner = timed::launch(Duration::from_secs(60), || hash_chain(STEPS / 4)).expect("inner");
            run_to_completion(inner, Duration::from_secs(60)).0
        })
        .expect("middle");
        run_to_completion(middle, Duration::from_secs(60)).0
    })
    .expect("outer");
    let (nested, slices) = run_to_completion(out, Duration::from_millis(2));
    assert_eq!(nested, hash_chain(STEPS / 4));
    println!("nested: three calls deep, the outer one took {slices} slices of 2 ms; value {nested:#x}");
    let s = timed::stats();
    println!(
        "preemptions: {}; expiries retried because they met libc: {}; deferred by a guard: {}",
        s.preemptions, s.deferred_unsafe, s.deferred_depth
    );
}
