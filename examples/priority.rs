//! A strict-priority scheduler written against the `Scheduler` trait: the trait serves
//! more than FIFO.
//!
//! Every uthread carries a priority level in its record (the scheduler's `Thread` type);
//! a vcore always runs the oldest runnable uthread of the highest level, so a yield gives
//! way only to equal or higher levels. The demonstration starts eight low-priority
//! workers, lets them run, then starts four high-priority ones: those finish long before
//! the low ones, which get the vcores back afterwards.
//!
//! `cargo run --release --example priority`

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parlib::events;
use parlib::uthread::{self, idle, Runnable, Scheduler, TlsMode};
use parlib::vcore::spin::SpinLock;

/// Priority levels, 0 (lowest) to `LEVELS - 1`.
const LEVELS: usize = 4;

/// What the scheduler keeps per uthread: its level.
struct Level(usize);

/// One FIFO per level; one lock for all, so picking "the highest non-empty" is atomic.
struct Priority {
    queues: SpinLock<[VecDeque<Runnable<Level>>; LEVELS]>,
}

impl Priority {
    fn push(&self, t: Runnable<Level>) {
        let level = t.0;
        self.queues.lock()[level].push_back(t);
    }

    fn pop_highest(&self) -> Option<Runnable<Level>> {
        self.queues.lock().iter_mut().rev().find_map(VecDeque::pop_front)
    }

    fn has_work(&self) -> bool {
        self.queues.lock().iter().any(|q| !q.is_empty())
    }
}

impl Scheduler for Priority {
    type Thread = Level;

    fn sched_entry(&self) -> ! {
        loop {
            if let Some(t) = self.pop_highest() {
                uthread::run_uthread(t);
            }
            if events::events_pending() {
                events::handle_events();
                continue;
            }
            idle::park(|| self.has_work(), || {});
        }
    }

    fn thread_runnable(&self, t: Runnable<Level>) {
        self.push(t);
        idle::wake_any();
    }

    // A yield: this vcore schedules next, so no other vcore need wake.
    fn thread_paused(&self, t: Runnable<Level>) {
        self.push(t);
    }
}

static SCHED: Priority = Priority { queues: SpinLock::new([const { VecDeque::new() }; LEVELS]) };

const LOW: usize = 0;
const HIGH: usize = 3;
const LOW_WORKERS: usize = 8;
const HIGH_WORKERS: usize = 4;
/// Chunks of work per worker; each worker yields between chunks.
const LOW_CHUNKS: u64 = 400;
const HIGH_CHUNKS: u64 = 40;

static LOW_DONE_CHUNKS: AtomicU64 = AtomicU64::new(0);
static LOW_STARTED: AtomicUsize = AtomicUsize::new(0);
static FINISHED: AtomicUsize = AtomicUsize::new(0);
/// How many low-priority chunks had run when the last high-priority worker finished.
static LOW_CHUNKS_AT_HIGH_DONE: AtomicU64 = AtomicU64::new(0);
static HIGH_DONE: AtomicUsize = AtomicUsize::new(0);

/// About 20 µs of arithmetic: long against a switch (tens of ns), so the order the
/// scheduler picks decides who finishes first.
fn chunk(seed: u64) -> u64 {
    let mut x = seed;
    for _ in 0..20_000 {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407));
    }
    x
}

fn worker(level: usize, chunks: u64) {
    let body = move || {
        if level == LOW {
            LOW_STARTED.fetch_add(1, Ordering::Relaxed);
        }
        let mut x = level as u64;
        for _ in 0..chunks {
            x = chunk(x);
            if level == LOW {
                LOW_DONE_CHUNKS.fetch_add(1, Ordering::Relaxed);
            }
            uthread::yield_with(uthread::paused); // only equal or higher levels run next
        }
        std::hint::black_box(x);
        if level == HIGH && HIGH_DONE.fetch_add(1, Ordering::AcqRel) + 1 == HIGH_WORKERS {
            LOW_CHUNKS_AT_HIGH_DONE.store(LOW_DONE_CHUNKS.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        FINISHED.fetch_add(1, Ordering::Release);
    };
    uthread::spawn(Level(level), TlsMode::Backed, body).expect("spawn a worker");
}

fn main() {
    // `main` runs at the lowest level: it waits by yielding, and must not keep a vcore
    // from anyone while it does.
    uthread::lib_init(&SCHED, Level(LOW)).expect("uthread::lib_init");
    for _ in 0..LOW_WORKERS {
        worker(LOW, LOW_CHUNKS);
    }
    // Let the low-priority workers get going, then start the high-priority ones.
    while LOW_STARTED.load(Ordering::Relaxed) < LOW_WORKERS {
        uthread::yield_with(uthread::paused);
    }
    for _ in 0..HIGH_WORKERS {
        worker(HIGH, HIGH_CHUNKS);
    }
    while FINISHED.load(Ordering::Acquire) < LOW_WORKERS + HIGH_WORKERS {
        uthread::yield_with(uthread::paused);
    }
    let total_low = LOW_WORKERS as u64 * LOW_CHUNKS;
    let at_high_done = LOW_CHUNKS_AT_HIGH_DONE.load(Ordering::Relaxed);
    println!(
        "{HIGH_WORKERS} high-priority workers ({HIGH_CHUNKS} chunks each) finished while the \
         {LOW_WORKERS} low-priority ones had done {at_high_done} of their {total_low} chunks"
    );
    assert!(
        at_high_done * 2 < total_low,
        "high-priority work was not run ahead of low-priority work ({at_high_done} of {total_low} low chunks ran first)"
    );
}
