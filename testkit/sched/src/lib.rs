//! # parlib-testsched: the scheduler parlib-rs tests run their uthreads on
//!
//! A small scheduler written against `parlib_uthread::Scheduler`, after
//! `examples/round_robin.rs`, shared by the test suites of every layer from `uthread` up:
//!
//! * one global FIFO run queue that every vcore serves, so uthreads migrate freely;
//! * one FIFO per vcore for uthreads *pinned* to that vcore ([`spawn_on`]), for tests
//!   that need to know where code runs. A vcore serves its pinned queue and the global
//!   one in arrival order (each entry carries a ticket), so neither starves the other;
//! * an idle vcore polls for a while, then parks with `parlib_uthread::idle::park`; a
//!   push wakes the vcore it needs (`idle::wake` for pinned work, `idle::wake_any` for
//!   global work), so nothing is stranded on a parked vcore.
//!
//! [`init`] makes the calling test thread the uthread `main` (pinned to vcore 0) and lets
//! every vcore take work; [`spawn`] / [`spawn_on`] start closures as uthreads; [`yield_now`] yields;
//! [`wait_all`] waits, by yielding, until every spawned uthread has exited and been
//! freed.
//!
//! For the events and notification tests: an idle vcore handles the events sent to it
//! while it polls; [`on_fault`] lets a test see faults instead of the default policy's
//! abort; [`Ticker`] is a plain thread that sends `EV_USER_IPI` to vcores at a fixed
//! period, and [`preempt_on_tick`] the handler that turns each tick into a preemption.
//!
//! Run every test that uses it in its own process, under `parlib_testkit::isolated!`:
//! the runtime is process-wide.

#![warn(missing_docs)]

use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use parlib_events::{self as events, EventMsg, EventType, EV_USER_IPI};
use parlib_uthread::{self as uthread, idle, Exited, Fault, Record, Runnable, Scheduler, TlsMode, Uthread};
use parlib_vcore::{self as vcore, spin::SpinLock, Stack};

/// What the test scheduler keeps per uthread: the vcore it must run on, or `ANY` (any vcore).
pub struct Pin(AtomicUsize);

/// [`Pin`] of a uthread that may run on any vcore.
const ANY: usize = usize::MAX;

impl Pin {
    fn new(vcore: Option<usize>) -> Pin {
        Pin(AtomicUsize::new(vcore.unwrap_or(ANY)))
    }

    /// The vcore the uthread must run on, if any.
    fn get(&self) -> Option<usize> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&v| v != ANY)
    }
}

/// A queued uthread and its arrival ticket.
type Queue = SpinLock<VecDeque<(u64, Runnable<Pin>)>>;

/// The test scheduler: the global queue; per-vcore queues are in `LOCALS`, sized at
/// [`init`].
pub struct TestSched {
    global: Queue,
}

/// How long an idle vcore polls before parking: as in `examples/round_robin.rs`, about
/// 20 µs of polling, longer than a typical yield-to-yield gap.
const IDLE_SPINS: u32 = 2000;

static SCHED: TestSched = TestSched { global: SpinLock::new(VecDeque::new()) };
/// Each vcore's queue of pinned uthreads.
static LOCALS: OnceLock<Vec<Queue>> = OnceLock::new();
/// Arrival tickets, across all queues.
static TICKETS: AtomicU64 = AtomicU64::new(0);
/// Spawned uthreads that have not been freed yet.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Called in vcore context each time a vcore enters `sched_entry`.
static SCHED_ENTRY_HOOK: OnceLock<fn()> = OnceLock::new();
/// Called in vcore context when a spawned uthread exits.
static EXIT_HOOK: OnceLock<fn()> = OnceLock::new();
/// Called in vcore context when a uthread faults; without it, the default policy aborts.
static FAULT_HOOK: OnceLock<fn(&Uthread, &Fault)> = OnceLock::new();

fn locals() -> &'static [Queue] {
    LOCALS.get().expect("parlib_testsched::init sets up the per-vcore queues")
}

impl TestSched {
    /// The uthread that arrived first of this vcore's pinned queue and the global one.
    fn pop(&self, id: usize) -> Option<Runnable<Pin>> {
        let mut pinned = locals()[id].lock();
        let mut global = self.global.lock();
        let first = match (pinned.front(), global.front()) {
            (Some((p, _)), Some((g, _))) if g < p => &mut global,
            (Some(_), _) => &mut pinned,
            _ => &mut global,
        };
        first.pop_front().map(|(_, t)| t)
    }

    /// Queues `t` where it belongs; returns the vcore to wake, if it is pinned.
    fn push(&self, t: Runnable<Pin>) -> Option<usize> {
        let ticket = TICKETS.fetch_add(1, Ordering::Relaxed);
        match t.get() {
            Some(id) => {
                locals()[id].lock().push_back((ticket, t));
                Some(id)
            }
            None => {
                self.global.lock().push_back((ticket, t));
                None
            }
        }
    }

    fn has_work(&self, id: usize) -> bool {
        !locals()[id].lock().is_empty() || !self.global.lock().is_empty()
    }

    /// Frees an exited (or faulted) uthread and counts it out.
    fn reap(&self, t: Exited<Pin>) {
        drop(t);
        LIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Scheduler for TestSched {
    type Thread = Pin;

    fn sched_entry(&self) -> ! {
        let id = vcore::id();
        if let Some(hook) = SCHED_ENTRY_HOOK.get() {
            hook();
        }
        loop {
            for _ in 0..IDLE_SPINS {
                if let Some(next) = self.pop(id) {
                    uthread::run_uthread(next);
                }
                // Events sent to a polling vcore are handled here, not when it next
                // leaves vcore context (which an idle vcore may never do).
                if events::events_pending() {
                    events::handle_events();
                }
                std::hint::spin_loop();
            }
            idle::park(|| self.has_work(id), || {});
        }
    }

    fn thread_runnable(&self, thread: Runnable<Pin>) {
        match self.push(thread) {
            Some(id) => idle::wake(id),
            None => idle::wake_any(),
        }
    }

    /// A yield or a preemption: the vcore that paused it schedules next, so it needs
    /// nobody woken, unless the uthread is pinned elsewhere now (`pin_current`).
    fn thread_paused(&self, thread: Runnable<Pin>) {
        if let Some(id) = self.push(thread).filter(|&id| Some(id) != vcore::try_id()) {
            idle::wake(id);
        }
    }

    fn thread_exited(&self, thread: Exited<Pin>) {
        if let Some(hook) = EXIT_HOOK.get() {
            hook();
        }
        self.reap(thread);
    }

    fn thread_refl_fault(&self, thread: Exited<Pin>, fault: &Fault) {
        let Some(hook) = FAULT_HOOK.get() else { uthread::default_fault_policy(thread.uthread(), fault) };
        hook(thread.uthread(), fault);
        // The faulting context was abandoned and the uthread is exited: reap it.
        self.reap(thread);
    }
}

/// Makes the calling (plain) thread the uthread `main`, pinned to vcore 0; every other
/// vcore starts as soon as work is queued for it. Call once, first thing in an isolated
/// child.
pub fn init() {
    try_init().expect("uthread::lib_init");
}

/// [`init`], returning `uthread::lib_init`'s error instead of panicking.
pub fn try_init() -> Result<(), uthread::Error> {
    if !vcore::is_initialized() {
        vcore::lib_init()?;
    }
    let n = vcore::max_vcores();
    assert!(n <= 64, "these tests keep sets of vcores in u64 masks; run them with VCORE_LIMIT=64");
    let _ = LOCALS.set((0..n).map(|_| SpinLock::new(VecDeque::new())).collect());
    // `main` stays on vcore 0: tests that wait (by yielding) for another vcore to go idle
    // would otherwise find `main` migrated there, keeping it busy.
    uthread::lib_init(&SCHED, Pin::new(Some(0)))
}

/// Runs `hook` in vcore context every time a vcore enters the scheduler. Set it before
/// [`init`].
pub fn on_sched_entry(hook: fn()) {
    SCHED_ENTRY_HOOK.set(hook).expect("one hook per process");
}

/// Runs `hook` in vcore context when each spawned uthread exits.
pub fn on_exit(hook: fn()) {
    EXIT_HOOK.set(hook).expect("one hook per process");
}

/// Runs `hook` in vcore context (from `thread_refl_fault`) when a spawned uthread
/// faults, instead of the default policy's report-and-abort; afterwards the scheduler
/// frees the uthread as if it had exited. Set it before [`init`].
pub fn on_fault(hook: fn(&Uthread, &Fault)) {
    FAULT_HOOK.set(hook).expect("one hook per process");
}

fn spawn_inner(pin: Option<usize>, tls: TlsMode, body: impl FnOnce() + Send + 'static) -> NonNull<Uthread> {
    if let Some(id) = pin {
        assert!(id < vcore::max_vcores(), "no vcore {id} to pin to");
    }
    let stack = Stack::with_default_size().expect("mmap a uthread stack");
    let t = uthread::create(Pin::new(pin), stack, tls, body).expect("uthread::create");
    let id = t.as_ptr().cast();
    LIVE.fetch_add(1, Ordering::AcqRel);
    uthread::runnable(t);
    id
}

/// Starts `body` as a new uthread that may run on any vcore; returns its identity.
pub fn spawn(tls: TlsMode, body: impl FnOnce() + Send + 'static) -> NonNull<Uthread> {
    spawn_inner(None, tls, body)
}

/// Starts `body` as a new uthread that only ever runs on vcore `id`; returns its
/// identity.
pub fn spawn_on(id: usize, tls: TlsMode, body: impl FnOnce() + Send + 'static) -> NonNull<Uthread> {
    spawn_inner(Some(id), tls, body)
}

/// Pins the calling uthread to vcore `to` (`None`: any vcore) and yields, so it runs
/// there from now on (`main` starts pinned to vcore 0).
pub fn pin_current(to: Option<usize>) {
    if let Some(id) = to {
        assert!(id < vcore::max_vcores(), "no vcore {id} to pin to");
    }
    uthread::with_current(|me: &Record<Pin>| me.0.store(to.unwrap_or(ANY), Ordering::Relaxed))
        .expect("pin_current is called from a uthread");
    yield_now();
}

/// Gives the vcore to the next uthread in line.
pub fn yield_now() {
    uthread::yield_with(uthread::paused);
}

/// Yields until `done()` holds.
pub fn wait_until(mut done: impl FnMut() -> bool) {
    while !done() {
        yield_now();
    }
}

/// Whether every spawned uthread has exited and been freed.
pub fn all_exited() -> bool {
    LIVE.load(Ordering::Acquire) == 0
}

/// Yields until every spawned uthread has exited and been freed.
pub fn wait_all() {
    wait_until(all_exited);
}

/// The set of vcore ids `0..max_vcores()` as a bit mask (`init` checks there are at
/// most 64).
pub fn all_vcores_mask() -> u64 {
    u64::MAX >> (64 - vcore::max_vcores())
}

/// Every vcore id, `0..max_vcores()`.
pub fn all_vcores() -> Vec<usize> {
    (0..vcore::max_vcores()).collect()
}

/// Fails the calling test, naming it, unless the machine gives the process at least `n`
/// vcores: a test that needs two vcores must not pass on one without checking anything.
/// Tests that need more vcores than CI machines have are `#[ignore]`d instead, with the
/// reason.
pub fn require_vcores(n: usize) {
    let have = vcore::max_vcores();
    assert!(
        have >= n,
        "this test needs at least {n} vcores and the process has {have} (VCORE_LIMIT, CPU affinity): \
         it would check nothing here"
    );
}

// ---------------------------------------------------------------------------------------
// Preemption: a tick source and the handler that preempts on each tick.

/// Uthreads the tick handler [`preempt_on_tick`] has paused.
pub static PREEMPTIONS: AtomicUsize = AtomicUsize::new(0);

/// An `EV_USER_IPI` handler that preempts: in vcore context, the uthread the
/// notification interrupted goes back to the scheduler ([`uthread::paused`]) and the
/// scheduler picks the next one. Counts into [`PREEMPTIONS`].
pub fn preempt_on_tick(_: &EventMsg, _: EventType) {
    if let Some(preempted) = uthread::take_interrupted() {
        PREEMPTIONS.fetch_add(1, Ordering::Relaxed);
        uthread::paused(preempted);
    }
}

/// A plain Linux thread that sends `EV_USER_IPI` to a set of vcores every `period`
/// (each message carries the tick number in `arg0`). Sleeping on a plain thread blocks
/// no vcore. Vcores that are parked are skipped: a tick would only wake them for nothing.
pub struct Ticker {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Starts ticking to `vcores` (an `EV_USER_IPI` handler must be registered).
    pub fn start(period: Duration, vcores: &[usize]) -> Ticker {
        let (stop, sent) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (stop2, sent2, targets) = (stop.clone(), sent.clone(), vcores.to_vec());
        let thread = std::thread::Builder::new()
            .name("ticker".into())
            .spawn(move || {
                let mut tick = 0u64;
                while !stop2.load(Ordering::Relaxed) {
                    std::thread::sleep(period);
                    for &v in &targets {
                        if vcore::get(v).is_ok_and(|vc| !vc.is_parked()) {
                            tick += 1;
                            let msg = EventMsg { arg0: tick, ..Default::default() };
                            events::send_event(&msg, EV_USER_IPI, v).expect("send a tick");
                        }
                    }
                    sent2.store(tick as usize, Ordering::Relaxed);
                }
            })
            .expect("spawn the ticker thread");
        Ticker { stop, sent, thread: Some(thread) }
    }

    /// Ticks sent so far.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops ticking and waits, by yielding (so call it from a uthread), until the
    /// thread has finished; returns the ticks sent.
    pub fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let t = self.thread.take().expect("stopped once");
        wait_until(|| t.is_finished());
        t.join().expect("the ticker thread panicked");
        self.sent()
    }
}

/// Registers [`preempt_on_tick`] for `EV_USER_IPI` and starts a [`Ticker`] to `vcores`.
pub fn start_preempting(period: Duration, vcores: &[usize]) -> Ticker {
    events::register_handler(EV_USER_IPI, preempt_on_tick).expect("register the tick handler");
    Ticker::start(period, vcores)
}
