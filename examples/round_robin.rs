//! A complete round-robin scheduler written against the `Scheduler` trait.
//!
//! One global FIFO run queue shared by every vcore. Copy it as the starting point for a
//! scheduler of your own.
//!
//! * `cargo run --release --example round_robin`: cooperative; 1000 uthreads yield.
//! * `cargo run --release --example round_robin -- --preempt`: preemptive; uthreads
//!   spin without ever yielding, and a ticking `EV_USER_IPI` source interrupts them.

use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parlib::events::{self, EventMsg, EventType, EV_USER_IPI};
use parlib::uthread::{self, Scheduler, TlsMode, Uthread};
use parlib::vcore::{self, spin::SpinLock, Stack};

/// Our thread record. `Uthread` comes first, so a `NonNull<Uthread>` from the uthread
/// layer is also a pointer to the `Thread` around it.
#[repr(C)]
struct Thread {
    uth: Uthread,
    body: Option<Box<dyn FnOnce() + Send>>,
}

/// A queue entry. The pointer is shared between vcores only through the queue's lock.
struct Entry(NonNull<Uthread>);
// SAFETY: a uthread record may be run by any vcore; the lock orders the hand-over.
unsafe impl Send for Entry {}

struct RoundRobin {
    queue: SpinLock<VecDeque<Entry>>,
    /// Vcores we have not yielded. At least one stays awake, so nothing is stranded.
    awake: AtomicUsize,
}

/// How long an idle vcore polls the queue before giving itself back to the system.
/// About 20 µs of `pause`s: longer than a typical yield-to-yield gap, far shorter than
/// the ~50 µs a futex wake-up of a parked vcore costs here.
const IDLE_SPINS: u32 = 2000;

impl Scheduler for RoundRobin {
    // Vcore context: pick the next uthread or give the vcore back.
    fn sched_entry(&self) -> ! {
        loop {
            for _ in 0..IDLE_SPINS {
                let next = self.queue.lock().pop_front();
                if let Some(Entry(uth)) = next {
                    uthread::run_uthread(uth); // never returns
                }
                // An idle vcore stays in vcore context, so it must look for events
                // itself (alarms, wake-ups); they may make uthreads runnable.
                if events::events_pending() {
                    events::handle_events();
                }
                std::hint::spin_loop();
            }
            // Idle: yield the vcore unless we are the last one awake.
            if self.awake.fetch_sub(1, Ordering::AcqRel) > 1 {
                vcore::yield_vcore(); // parks; later requests restart us in vcore_entry
            }
            self.awake.fetch_add(1, Ordering::AcqRel);
        }
    }

    // A uthread may run: queue it at the tail, and wake a vcore if some are asleep.
    fn thread_runnable(&self, uth: NonNull<Uthread>) {
        self.queue.lock().push_back(Entry(uth));
        if self.awake.load(Ordering::Relaxed) < vcore::max_vcores() {
            self.awake.fetch_add(vcore::request(1).unwrap_or(0), Ordering::AcqRel);
        }
    }
    // thread_paused (a yield) defaults to thread_runnable; blocking, syscalls and faults
    // keep their defaults: this scheduler has no blocking primitives of its own.
}

static SCHED: RoundRobin = RoundRobin { queue: SpinLock::new(VecDeque::new()), awake: AtomicUsize::new(1) };

/// Starts `body` as a new uthread with its own TLS.
fn spawn(body: impl FnOnce() + Send + 'static) {
    let t = Box::into_raw(Box::new(Thread { uth: Uthread::new(), body: Some(Box::new(body)) }));
    // SAFETY: `t` is a fresh allocation; `uth` is its first field.
    let uth = unsafe { NonNull::new_unchecked(&raw mut (*t).uth) };
    let stack = Stack::with_default_size().expect("mmap a uthread stack");
    // SAFETY: the record lives until thread_main's exit callback frees it.
    unsafe { uthread::init(uth, thread_main, t.cast(), stack, TlsMode::Backed) }.expect("uthread::init");
    uthread::runnable(uth);
}

/// Every spawned uthread starts here.
fn thread_main(arg: *mut ()) -> ! {
    let t = arg.cast::<Thread>();
    // SAFETY: `arg` is the Thread that spawn made for this uthread.
    let body = unsafe { (*t).body.take() }.expect("a thread runs once");
    body();
    uthread::exit_with(|uth| {
        // Vcore context: the uthread is Done and off its stack, so free everything.
        // SAFETY: `uth` is the first field of a Box<Thread> made by spawn.
        unsafe {
            uthread::cleanup(uth);
            drop(Box::from_raw(uth.as_ptr().cast::<Thread>()));
        }
    })
}

/// Gives the vcore to the next uthread in line.
fn yield_now() {
    uthread::yield_with(true, uthread::paused);
}

const THREADS: usize = 1000;
const YIELDS: usize = 100;

/// Preemption: every `TICK`, a plain thread sends `EV_USER_IPI` to every vcore. The
/// event interrupts the running uthread at its next safe point; our handler, in vcore
/// context, hands it back to the queue, and the scheduler runs the next. 1 ms: signals
/// cost 10-20 µs of a vcore's time here, so ticks much below 100 µs would eat the CPU.
const TICK: Duration = Duration::from_millis(1);
static PREEMPTIONS: AtomicUsize = AtomicUsize::new(0);

fn on_tick(_: &EventMsg, _: EventType) {
    if let Some(uth) = uthread::interrupted() {
        PREEMPTIONS.fetch_add(1, Ordering::Relaxed);
        uthread::paused(uth); // back to the tail of the queue
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
    // `main` gets a Thread record too, so every NonNull<Uthread> is a Thread.
    let main = Box::leak(Box::new(Thread { uth: Uthread::new(), body: None }));
    // SAFETY: the record is leaked, so it lives for the rest of the process.
    unsafe { uthread::lib_init(&SCHED, NonNull::from(&mut main.uth)) }.expect("uthread::lib_init");
    // We are now a uthread on vcore 0. Wake the others.
    let more = vcore::request(vcore::max_vcores() - 1).expect("request vcores");
    SCHED.awake.fetch_add(more, Ordering::AcqRel);
    if std::env::args().any(|a| a == "--preempt") {
        return preemptive_demo();
    }

    static GO: AtomicUsize = AtomicUsize::new(0);
    static DONE: AtomicUsize = AtomicUsize::new(0);
    static RUNS_ON: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];
    for i in 0..THREADS {
        spawn(move || {
            // Wait at the gate, so every vcore has uthreads to run once it opens.
            while GO.load(Ordering::Acquire) == 0 {
                yield_now();
            }
            for _ in 0..YIELDS {
                RUNS_ON[vcore::id() % 64].fetch_add(1, Ordering::Relaxed);
                yield_now();
            }
            assert!(i < THREADS);
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
