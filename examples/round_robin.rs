//! A complete round-robin scheduler written against the `Scheduler` trait.
//!
//! One global FIFO run queue shared by every vcore; idle vcores park and are woken when
//! work arrives. Copy it as the starting point for a scheduler of your own: it has no
//! `unsafe` code.
//!
//! * `cargo run --release --example round_robin`: cooperative; 1000 uthreads yield.
//! * `cargo run --release --example round_robin -- --preempt`: preemptive; uthreads
//!   spin without ever yielding, and a ticking `EV_USER_IPI` source interrupts them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parlib::events::{self, EventMsg, EventType, EV_USER_IPI};
use parlib::uthread::{self, idle, Runnable, Scheduler, TlsMode};
use parlib::vcore::{self, spin::SpinLock};

/// The scheduler: a queue of runnable uthreads. The uthread layer hands them over as
/// owned `Runnable` handles, so a uthread is in the queue, running, or elsewhere (blocked
/// in a lock, sleeping), never two of these at once.
struct RoundRobin {
    queue: SpinLock<VecDeque<Runnable<()>>>,
}

/// How long an idle vcore polls the queue before parking. About 20 µs of `pause`s:
/// longer than a typical yield-to-yield gap, far shorter than the ~50 µs a futex wake-up
/// of a parked vcore costs here.
const IDLE_SPINS: u32 = 2000;

impl Scheduler for RoundRobin {
    /// What we keep per uthread: nothing. A scheduler that needs a priority, a home
    /// vcore or a deadline puts it here (see `examples/priority.rs`).
    type Thread = ();

    // Vcore context: pick the next uthread, or park until there is one.
    fn sched_entry(&self) -> ! {
        loop {
            for _ in 0..IDLE_SPINS {
                let next = self.queue.lock().pop_front();
                if let Some(t) = next {
                    uthread::run_uthread(t); // never returns
                }
                // An idle vcore stays in vcore context, so it must look for events
                // itself (alarms, wake-ups); they may make uthreads runnable.
                if events::events_pending() {
                    events::handle_events();
                }
                std::hint::spin_loop();
            }
            // Park, unless work arrived meanwhile: `idle::park` closes the race with
            // `idle::wake_any` below, so no wake-up is lost. Woken, the vcore starts
            // afresh in `vcore_entry`.
            idle::park(|| !self.queue.lock().is_empty(), || {});
        }
    }

    // A uthread may run: queue it at the tail, and wake a parked vcore if there is one.
    fn thread_runnable(&self, t: Runnable<()>) {
        self.queue.lock().push_back(t);
        idle::wake_any();
    }
    // A yield or a preemption: this vcore schedules next, so no other vcore need wake
    // (the default would call thread_runnable, fencing and scanning every vcore's flag on
    // each yield). Blocking, syscalls and exits keep their defaults (an exited uthread's
    // handle is dropped, which frees it).
    fn thread_paused(&self, t: Runnable<()>) {
        self.queue.lock().push_back(t);
    }
}

static SCHED: RoundRobin = RoundRobin { queue: SpinLock::new(VecDeque::new()) };

/// Starts `body` as a new uthread with its own TLS.
fn spawn(body: impl FnOnce() + Send + 'static) {
    uthread::spawn((), TlsMode::Backed, body).expect("spawn a uthread");
}

/// Gives the vcore to the next uthread in line.
fn yield_now() {
    uthread::yield_with(uthread::paused);
}

const THREADS: usize = 1000;
const YIELDS: usize = 100;

/// Preemption: every `TICK`, a plain thread sends `EV_USER_IPI` to every vcore. The
/// event interrupts the running uthread at its next safe point; our handler, in vcore
/// context, takes it off the vcore and hands it back to the queue, and the scheduler runs
/// the next. 1 ms: signals cost 10-20 µs of a vcore's time here, so ticks much below
/// 100 µs would eat the CPU.
const TICK: Duration = Duration::from_millis(1);
static PREEMPTIONS: AtomicUsize = AtomicUsize::new(0);

fn on_tick(_: &EventMsg, _: EventType) {
    if let Some(preempted) = uthread::take_interrupted() {
        PREEMPTIONS.fetch_add(1, Ordering::Relaxed);
        uthread::paused(preempted); // back to the tail of the queue
    }
}

/// Spinning uthreads that never yield, run to completion under preemption.
fn preemptive_demo() {
    events::register_handler(EV_USER_IPI, on_tick).expect("register the tick handler");
    std::thread::spawn(|| loop {
        std::thread::sleep(TICK); // a plain thread: sleeping here blocks no vcore
                                  // Only running vcores: an event would wake a parked one for nothing.
        for v in (0..vcore::max_vcores()).filter(|&v| vcore::get(v).is_ok_and(|vc| !vc.is_parked())) {
            let _ = events::send_event(&EventMsg::default(), EV_USER_IPI, v);
        }
    });
    const SPINNERS: usize = 8;
    static FINISHED: AtomicUsize = AtomicUsize::new(0);
    let start = Instant::now();
    for i in 0..SPINNERS {
        spawn(move || {
            let mut x = i as u64; // a pure compute loop: no yield, no system call
            for _ in 0..100_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            FINISHED.fetch_add(1, Ordering::Release);
        });
    }
    // `main` is a uthread too, and gets the vcore back only because the spinners are
    // preempted.
    while FINISHED.load(Ordering::Acquire) < SPINNERS {
        yield_now();
    }
    let n = PREEMPTIONS.load(Ordering::Relaxed);
    println!(
        "{SPINNERS} spinning uthreads finished in {:.0} ms after {n} preemptions",
        start.elapsed().as_secs_f64() * 1e3
    );
    assert!(n > 0, "the spinners can only have shared the vcores through preemption");
}

fn main() {
    // From here on `main` is a uthread on vcore 0; the other vcores start as work for
    // them appears.
    uthread::lib_init(&SCHED, ()).expect("uthread::lib_init");
    if std::env::args().any(|a| a == "--preempt") {
        return preemptive_demo();
    }

    static GO: AtomicUsize = AtomicUsize::new(0);
    static DONE: AtomicUsize = AtomicUsize::new(0);
    static RUNS_ON: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];
    for _ in 0..THREADS {
        spawn(move || {
            // Wait at the gate, so every vcore has uthreads to run once it opens.
            while GO.load(Ordering::Acquire) == 0 {
                yield_now();
            }
            for _ in 0..YIELDS {
                RUNS_ON[vcore::id() % 64].fetch_add(1, Ordering::Relaxed);
                yield_now();
            }
            DONE.fetch_add(1, Ordering::Release);
        });
    }
    let start = Instant::now();
    GO.store(1, Ordering::Release);
    while DONE.load(Ordering::Acquire) < THREADS {
        yield_now();
    }
    let elapsed = start.elapsed();
    println!(
        "{THREADS} uthreads x {YIELDS} yields on {} vcores in {:.1} ms",
        vcore::max_vcores(),
        elapsed.as_secs_f64() * 1e3
    );
    let mut total = 0;
    for (id, n) in RUNS_ON.iter().take(vcore::max_vcores()).enumerate() {
        let n = n.load(Ordering::Relaxed);
        total += n;
        println!("  vcore {id}: {n} uthread time slices");
    }
    assert_eq!(total, THREADS * YIELDS, "every yield of every uthread ran exactly once");
}
