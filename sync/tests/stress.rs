//! Every blocking primitive at once, under preemption, with exact accounting: 64
//! uthreads per vcore on every vcore, for 10 seconds, while a plain thread sends
//! `EV_USER_IPI` to every running vcore every 200 µs and the handler pauses the
//! interrupted uthread (`common::preempt_on_tick`), so uthreads are preempted inside
//! user code, between and inside their lock operations, and migrate between vcores.
//!
//! | workload (per 64 uthreads) | primitives | exact checks |
//! |---|---|---|
//! | 12 producers, 12 consumers, a bounded queue | `Mutex` + two `Condvar`s | every item consumed once: counts, sums and a hash sum match; each consumer sees each producer's items in order; one holder at a time |
//! | 8 writers, 16 readers | `RwLock` | writers bump two fields together, readers always see them equal; no reader beside a writer; totals exact |
//! | 16 participants, phases | `Barrier` | after each phase's barrier every participant sees the phase's full count; one serial arrival per phase; all run the same number of phases |
//!
//! A lost wake-up or a deadlock hangs, and the watchdog fails the test. A cooperative
//! run of the same workload (no ticks) separates the sync layer's own correctness from
//! that of preemption.

use parlib_testsched as common;
mod support;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parlib_sync::{Barrier, Condvar, Mutex, RwLock};
use parlib_testkit::isolated;
use parlib_uthread::TlsMode;
use parlib_vcore as vcore;
use support::Failures;

const UTHREADS_PER_VCORE: usize = 64;
const PRODUCERS: usize = 12;
const CONSUMERS: usize = 12;
const WRITERS: usize = 8;
const READERS: usize = 16;
const PARTICIPANTS: usize = 16;
const _: () = assert!(PRODUCERS + CONSUMERS + WRITERS + READERS + PARTICIPANTS == UTHREADS_PER_VCORE);

/// The preemption period: as in the uthread preemption tests, long next to the 10-20 µs
/// a notification costs here, short next to a test's run.
const TICK: Duration = Duration::from_micros(200);

static STOP: AtomicBool = AtomicBool::new(false);
static FAILURES: Failures = Failures::new();
/// Whether ticks preempt the uthreads; without them, the loops yield each round.
static PREEMPT: AtomicBool = AtomicBool::new(false);

/// Gives up the vcore now and then: every round when nothing preempts, so every
/// uthread (and `main`, which ends the run) gets its turn; every 16th round under
/// preemption, so yields and preemptions interleave.
fn maybe_yield(round: u64) {
    if !PREEMPT.load(Ordering::Relaxed) || round.is_multiple_of(16) {
        common::yield_now();
    }
}

/// A little computation, so that critical sections and the gaps between them last long
/// enough for ticks to land in them.
#[inline(never)]
fn work(seed: u64, steps: u64) -> u64 {
    let mut x = seed;
    for _ in 0..steps {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407));
    }
    x
}

/// A cheap mixing hash for the exactly-once check (sums alone miss some swaps).
fn mix(x: u64) -> u64 {
    (x ^ (x >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9).rotate_left(17)
}

/// Marks entry into a critical section that must have one holder at a time.
fn enter(flag: &AtomicBool, what: &'static str) {
    if flag.swap(true, Ordering::AcqRel) {
        FAILURES.record(|| format!("{what}: two holders at once"));
    }
}

fn leave(flag: &AtomicBool) {
    flag.store(false, Ordering::Release);
}

// ---------------------------------------------------------------------------------------
// Producers and consumers: a bounded FIFO under a Mutex, with two Condvars.

const CAPACITY: usize = 32;

struct Queue {
    items: [u64; CAPACITY],
    head: usize,
    len: usize,
    producers_left: usize,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue { items: [0; CAPACITY], head: 0, len: 0, producers_left: 0 });
static NOT_EMPTY: Condvar = Condvar::new();
static NOT_FULL: Condvar = Condvar::new();
static QUEUE_HELD: AtomicBool = AtomicBool::new(false);

/// Totals: [count, sum, hash sum], produced and consumed.
static PRODUCED: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static CONSUMED: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

fn add_totals(totals: &[AtomicU64; 3], local: [u64; 3]) {
    for (t, l) in totals.iter().zip(local) {
        t.fetch_add(l, Ordering::Relaxed);
    }
}

fn account(local: &mut [u64; 3], item: u64) {
    local[0] += 1;
    local[1] = local[1].wrapping_add(item);
    local[2] = local[2].wrapping_add(mix(item));
}

/// Items are `producer << 32 | sequence`, so every item is unique.
fn producer(id: usize) {
    let mut local = [0u64; 3];
    let mut seq = 0u64;
    while !STOP.load(Ordering::Relaxed) {
        let item = (id as u64) << 32 | seq;
        seq += 1;
        let mut q = QUEUE.lock();
        enter(&QUEUE_HELD, "queue mutex");
        while q.len == CAPACITY {
            leave(&QUEUE_HELD);
            q = NOT_FULL.wait(q);
            enter(&QUEUE_HELD, "queue mutex");
        }
        let tail = (q.head + q.len) % CAPACITY;
        q.items[tail] = item;
        q.len += 1;
        black_box(work(item, 20));
        leave(&QUEUE_HELD);
        drop(q);
        NOT_EMPTY.notify_one();
        account(&mut local, item);
        black_box(work(item, 50));
        maybe_yield(seq);
    }
    add_totals(&PRODUCED, local);
    let last = {
        let mut q = QUEUE.lock();
        q.producers_left -= 1;
        q.producers_left == 0
    };
    if last {
        NOT_EMPTY.notify_all(); // consumers waiting on an empty queue can finish
    }
}

fn consumer(producers: usize) {
    let mut local = [0u64; 3];
    // The FIFO keeps each producer's items in order, so each consumer sees them in
    // increasing sequence.
    let mut last_seq = vec![None::<u64>; producers];
    loop {
        let mut q = QUEUE.lock();
        enter(&QUEUE_HELD, "queue mutex");
        while q.len == 0 && q.producers_left > 0 {
            leave(&QUEUE_HELD);
            q = NOT_EMPTY.wait(q);
            enter(&QUEUE_HELD, "queue mutex");
        }
        if q.len == 0 {
            leave(&QUEUE_HELD);
            break; // every producer is done and the queue is drained
        }
        let item = q.items[q.head];
        q.head = (q.head + 1) % CAPACITY;
        q.len -= 1;
        leave(&QUEUE_HELD);
        drop(q);
        NOT_FULL.notify_one();
        account(&mut local, item);
        let (p, s) = ((item >> 32) as usize, item & 0xffff_ffff);
        match last_seq.get_mut(p) {
            Some(last) => {
                if last.is_some_and(|l| l >= s) {
                    FAILURES.record(|| format!("producer {p}'s item {s} consumed after item {last:?}"));
                }
                *last = Some(s);
            }
            None => FAILURES.record(|| format!("item {item:#x} from no producer")),
        }
        black_box(work(item, 50));
        maybe_yield(local[0]);
    }
    add_totals(&CONSUMED, local);
}

// ---------------------------------------------------------------------------------------
// Readers and writers.

static DATA: RwLock<(u64, u64)> = RwLock::new((0, 0));
static WRITER_INSIDE: AtomicBool = AtomicBool::new(false);
static READERS_INSIDE: AtomicUsize = AtomicUsize::new(0);
static WRITES: AtomicU64 = AtomicU64::new(0);
static READS: AtomicU64 = AtomicU64::new(0);
static READS_INSIDE: AtomicU64 = AtomicU64::new(0);

fn writer(id: usize) {
    let mut writes = 0u64;
    while !STOP.load(Ordering::Relaxed) {
        let mut d = DATA.write();
        enter(&WRITER_INSIDE, "rwlock writer");
        if READERS_INSIDE.load(Ordering::Acquire) != 0 {
            FAILURES.record(|| "a writer got the rwlock while readers held it".into());
        }
        d.0 += 1;
        black_box(work(d.0 ^ id as u64, 40)); // the two fields differ for a while
        d.1 += 1;
        leave(&WRITER_INSIDE);
        drop(d);
        writes += 1;
        black_box(work(writes, 200));
        maybe_yield(writes);
    }
    WRITES.fetch_add(writes, Ordering::Relaxed);
}

fn reader(id: usize) {
    let mut reads = 0u64;
    while !STOP.load(Ordering::Relaxed) {
        let d = DATA.read();
        READERS_INSIDE.fetch_add(1, Ordering::AcqRel);
        if WRITER_INSIDE.load(Ordering::Acquire) {
            FAILURES.record(|| "a reader got the rwlock while a writer held it".into());
        }
        let (a, b) = *d;
        if a != b {
            FAILURES.record(|| format!("a reader saw a half-done write: ({a}, {b})"));
        }
        black_box(work(a ^ id as u64, 30));
        READS_INSIDE.fetch_add(1, Ordering::Relaxed);
        READERS_INSIDE.fetch_sub(1, Ordering::AcqRel);
        drop(d);
        reads += 1;
        black_box(work(reads, 30));
        maybe_yield(reads);
    }
    READS.fetch_add(reads, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------
// Barrier phases. Phase p counts arrivals in ARRIVED[p % 3]: the serial arrival of the
// first barrier resets the next phase's counter and decides whether to go on; a second
// barrier publishes that decision. Nobody touches ARRIVED[(p + 1) % 3] between the two
// barriers of phase p, and everyone has read ARRIVED[p % 3] before anyone resets it.

static BARRIER: OnceLock<Barrier> = OnceLock::new();
static ARRIVED: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];
static GO_ON: [AtomicBool; 2] = [const { AtomicBool::new(false) }; 2];
static SERIALS: AtomicUsize = AtomicUsize::new(0);
static PHASES_RUN: AtomicUsize = AtomicUsize::new(0);
static PHASES_MIN: AtomicUsize = AtomicUsize::new(usize::MAX);
static PHASES_MAX: AtomicUsize = AtomicUsize::new(0);

fn participant(n: usize) {
    let b = BARRIER.get().expect("the barrier is made before the participants");
    let mut phase = 0usize;
    loop {
        ARRIVED[phase % 3].fetch_add(1, Ordering::AcqRel);
        black_box(work(phase as u64, 100));
        let serial = b.wait();
        let seen = ARRIVED[phase % 3].load(Ordering::Acquire);
        if seen != n {
            FAILURES.record(|| format!("phase {phase}: {seen} of {n} arrivals seen after the barrier"));
        }
        if serial {
            SERIALS.fetch_add(1, Ordering::Relaxed);
            ARRIVED[(phase + 1) % 3].store(0, Ordering::Release);
            GO_ON[phase % 2].store(!STOP.load(Ordering::Relaxed), Ordering::Release);
        }
        b.wait();
        phase += 1;
        if !GO_ON[(phase - 1) % 2].load(Ordering::Acquire) {
            break;
        }
    }
    PHASES_RUN.fetch_add(phase, Ordering::Relaxed);
    PHASES_MIN.fetch_min(phase, Ordering::Relaxed);
    PHASES_MAX.fetch_max(phase, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------

fn stress(run_for: Duration, preempt: bool) {
    common::init();
    PREEMPT.store(preempt, Ordering::Relaxed);
    let vcores = vcore::max_vcores();
    let (producers, consumers) = (PRODUCERS * vcores, CONSUMERS * vcores);
    let (writers, readers) = (WRITERS * vcores, READERS * vcores);
    let participants = PARTICIPANTS * vcores;
    QUEUE.lock().producers_left = producers;
    BARRIER.set(Barrier::new(participants as u32)).ok().expect("one barrier");
    let ticker = preempt.then(|| common::start_preempting(TICK, &common::all_vcores()));

    for id in 0..producers {
        common::spawn(TlsMode::Backed, move || producer(id));
    }
    for _ in 0..consumers {
        common::spawn(TlsMode::Backed, move || consumer(producers));
    }
    for id in 0..writers {
        common::spawn(TlsMode::Backed, move || writer(id));
    }
    for id in 0..readers {
        common::spawn(TlsMode::Backed, move || reader(id));
    }
    for _ in 0..participants {
        common::spawn(TlsMode::Backed, move || participant(participants));
    }
    let start = Instant::now();
    common::wait_until(|| start.elapsed() >= run_for);
    STOP.store(true, Ordering::Relaxed);
    common::wait_all();
    let ticks = ticker.map_or(0, common::Ticker::stop);

    FAILURES.assert_none("stress");
    let produced = PRODUCED.each_ref().map(|a| a.load(Ordering::Relaxed));
    let consumed = CONSUMED.each_ref().map(|a| a.load(Ordering::Relaxed));
    assert!(produced[0] > 0, "nothing was produced");
    assert_eq!(consumed, produced, "consumed [count, sum, hash] differs from produced");
    let q = QUEUE.lock();
    assert_eq!((q.len, q.producers_left), (0, 0));
    drop(q);

    let writes = WRITES.load(Ordering::Relaxed);
    let reads = READS.load(Ordering::Relaxed);
    assert!(writes > 0 && reads > 0, "writes {writes}, reads {reads}");
    assert_eq!(*DATA.read(), (writes, writes), "the rwlock's fields against the writes made");
    assert_eq!(READS_INSIDE.load(Ordering::Relaxed), reads);

    let phases = PHASES_MAX.load(Ordering::Relaxed);
    assert!(phases > 0);
    assert_eq!(PHASES_MIN.load(Ordering::Relaxed), phases, "participants ran different numbers of phases");
    assert_eq!(PHASES_RUN.load(Ordering::Relaxed), phases * participants);
    assert_eq!(SERIALS.load(Ordering::Relaxed), phases, "one serial arrival per phase");

    let preemptions = common::PREEMPTIONS.load(Ordering::Relaxed);
    if preempt {
        assert!(preemptions > 0, "{ticks} ticks sent, yet no uthread was preempted");
    }
    println!(
        "{} uthreads on {vcores} vcores for {run_for:?}: {} items, {writes} writes, {reads} reads, \
         {phases} barrier phases, {ticks} ticks, {preemptions} preemptions",
        UTHREADS_PER_VCORE * vcores,
        produced[0]
    );
}

#[test]
fn every_count_stays_exact_under_preemption_on_every_vcore() {
    isolated!(Duration::from_secs(60), {
        stress(Duration::from_secs(10), true);
    });
}

#[test]
fn every_count_stays_exact_without_preemption() {
    // The same workload, cooperative: a failure only above is preemption's.
    isolated!(Duration::from_secs(30), {
        stress(Duration::from_secs(2), false);
    });
}
