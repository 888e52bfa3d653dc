//! A small test scheduler shared by the uthread test files (`mod common;`), after
//! `examples/round_robin.rs`:
//!
//! * one global FIFO run queue that every vcore serves, so uthreads migrate freely;
//! * one FIFO per vcore for uthreads *pinned* to that vcore ([`spawn_on`]), served
//!   before the global queue, for tests that need to know where code runs;
//! * an idle vcore polls for a while, then yields itself back (unless it is the last
//!   one awake), so a test that waits costs little CPU.
//!
//! [`init`] makes the calling test thread the uthread `main` and requests every vcore;
//! [`spawn`] / [`spawn_on`] start closures as uthreads; [`yield_now`] yields;
//! [`wait_all`] waits, by yielding, until every spawned uthread has exited and been
//! cleaned up.
//!
//! For the events and notification tests: an idle vcore handles the events sent to it
//! while it polls; [`on_fault`] lets a test see faults instead of the default policy's
//! abort; [`Ticker`] is a plain thread that sends `EV_USER_IPI` to vcores at a fixed
//! period, and [`preempt_on_tick`] the handler that turns each tick into a preemption.
//!
//! # Counting the vcores awake
//!
//! A vcore can be started by anyone: a `request` from this scheduler, or an event sent
//! to it while it was parked (a notification wakes a parked vcore). So each vcore counts
//! *itself* into `awake` when it enters `sched_entry` and out when it parks, and parks
//! only if the count stays at least 1 without it (a compare-and-swap, never a blind
//! decrement that could wrap). The count never exceeds the vcores really awake, so the
//! last vcore awake never parks and global work is never stranded.
//!
//! # Waking the vcore of a pinned uthread
//!
//! Work in the global queue is never stranded: the last vcore awake does not park. Work
//! pinned to a parked vcore needs that very vcore, so parking and pushing follow a
//! handshake (the store-then-load pattern on both sides, with SeqCst fences between):
//!
//! 1. a vcore about to park sets its `parking` flag, then looks at its queues once more;
//!    if it finds work it clears the flag and runs it;
//! 2. a pusher queues the uthread, then reads the flag; while it is set, it retries
//!    `request_specific` until that succeeds, or until the vcore clears the flag (it
//!    does when it restarts after someone else woke it, or when it decides not to park
//!    after all).
//!
//! Either the vcore sees the new work in step 1, or the pusher sees the flag in step 2;
//! the retry covers the instant between the vcore's last look and its park.

#![allow(dead_code)]

#[path = "../../../vcore/tests/common/mod.rs"]
pub mod probe;

use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parlib_events::{self as events, EventMsg, EventType, EV_USER_IPI};
use parlib_uthread::{self as uthread, Fault, Scheduler, TlsMode, Uthread};
use parlib_vcore::{self as vcore, spin::SpinLock, Stack};

/// The test scheduler's thread record. `Uthread` comes first, so every
/// `NonNull<Uthread>` this scheduler is given points at a `Thread`.
#[repr(C)]
pub struct Thread {
    uth: Uthread,
    /// The vcore this thread must run on, or `None` for any.
    pin: Option<usize>,
    body: Option<Box<dyn FnOnce() + Send>>,
}

/// A queue entry. The record is handed between vcores only through a queue's lock.
struct Entry(NonNull<Uthread>);
// SAFETY: any vcore may run a uthread record; the queue lock orders the hand-over.
unsafe impl Send for Entry {}

/// One vcore's queue of pinned uthreads, and its half of the park handshake.
struct Local {
    queue: SpinLock<VecDeque<Entry>>,
    parking: AtomicBool,
    /// Whether this vcore has counted itself into `awake` (see the module docs).
    counted: AtomicBool,
}

/// The scheduler: the global queue and the count of vcores awake (per-vcore queues are
/// in `LOCALS`, sized at `init`).
pub struct TestSched {
    global: SpinLock<VecDeque<Entry>>,
    /// Vcores in the scheduler that have not yielded (each counts itself; module docs).
    /// At least one stays awake, so global work is never stranded.
    awake: AtomicUsize,
}

/// How long an idle vcore polls before yielding: as in `examples/round_robin.rs`, about
/// 20 µs of polling, longer than a typical yield-to-yield gap.
const IDLE_SPINS: u32 = 2000;

static SCHED: TestSched = TestSched { global: SpinLock::new(VecDeque::new()), awake: AtomicUsize::new(1) };
static LOCALS: OnceLock<Vec<Local>> = OnceLock::new();
/// Spawned uthreads that have not been cleaned up yet.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Called in vcore context each time a vcore enters `sched_entry`.
static SCHED_ENTRY_HOOK: OnceLock<fn()> = OnceLock::new();
/// Called in vcore context by each spawned uthread's exit callback.
static EXIT_HOOK: OnceLock<fn()> = OnceLock::new();
/// Called in vcore context when a uthread faults; without it, the default policy aborts.
static FAULT_HOOK: OnceLock<fn(NonNull<Uthread>, &Fault)> = OnceLock::new();

fn locals() -> &'static [Local] {
    LOCALS.get().expect("common::init sets up the per-vcore queues")
}

impl TestSched {
    fn pop(&self, id: usize) -> Option<NonNull<Uthread>> {
        let pinned = locals()[id].queue.lock().pop_front();
        pinned.or_else(|| self.global.lock().pop_front()).map(|Entry(u)| u)
    }

    fn has_work(&self, id: usize) -> bool {
        !locals()[id].queue.lock().is_empty() || !self.global.lock().is_empty()
    }

    /// Step 2 of the handshake (module docs), after pinned work was queued for `id`.
    fn wake_pinned(&self, id: usize) {
        // Woken from its park by an event, a vcore handles events before its sched_entry
        // clears `parking`: it is already awake, and will find the work.
        if vcore::try_id() == Some(id) {
            return;
        }
        fence(Ordering::SeqCst);
        while locals()[id].parking.load(Ordering::Relaxed) {
            if vcore::request_specific(id) == Ok(true) {
                return;
            }
            std::hint::spin_loop();
        }
    }

    /// Parks the calling vcore unless it is the last one counted awake; returns if it
    /// stays up.
    fn park_unless_last(&self, me: &Local) {
        let others_awake =
            self.awake.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n > 1).then(|| n - 1)).is_ok();
        if others_awake {
            me.counted.store(false, Ordering::Relaxed);
            vcore::yield_vcore(); // a later request or event restarts us in vcore_entry
        }
    }
}

impl Scheduler for TestSched {
    fn sched_entry(&self) -> ! {
        let id = vcore::id();
        let me = &locals()[id];
        me.parking.store(false, Ordering::Relaxed);
        if !me.counted.swap(true, Ordering::AcqRel) {
            self.awake.fetch_add(1, Ordering::AcqRel);
        }
        if let Some(hook) = SCHED_ENTRY_HOOK.get() {
            hook();
        }
        loop {
            for _ in 0..IDLE_SPINS {
                if let Some(uth) = self.pop(id) {
                    uthread::run_uthread(uth); // never returns
                }
                // Events sent to a polling vcore are handled here, not when it next
                // leaves vcore context (which an idle vcore may never do).
                if parlib_events::events_pending() {
                    parlib_events::handle_events();
                }
                std::hint::spin_loop();
            }
            // Step 1 of the handshake: announce, then look once more.
            me.parking.store(true, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if self.has_work(id) {
                me.parking.store(false, Ordering::Relaxed);
                continue;
            }
            self.park_unless_last(me);
            // The last vcore awake keeps polling.
            me.parking.store(false, Ordering::Relaxed);
        }
    }

    fn thread_runnable(&self, uth: NonNull<Uthread>) {
        // SAFETY: every uthread of this scheduler is the first field of a `Thread`, and
        // `pin` never changes after spawn.
        let pin = unsafe { (*uth.cast::<Thread>().as_ptr()).pin };
        match pin {
            Some(id) => {
                locals()[id].queue.lock().push_back(Entry(uth));
                self.wake_pinned(id);
            }
            None => {
                self.global.lock().push_back(Entry(uth));
                if self.awake.load(Ordering::Relaxed) < vcore::max_vcores() {
                    let _ = vcore::request(1); // the woken vcore counts itself
                }
            }
        }
    }

    fn thread_refl_fault(&self, uth: NonNull<Uthread>, fault: &Fault) {
        let Some(hook) = FAULT_HOOK.get() else { uthread::default_fault_policy(uth, fault) };
        hook(uth, fault);
        // The faulting context was abandoned and the uthread is Done: reap it as its
        // exit callback would have.
        // SAFETY: `uth` is the first field of a Box<Thread> made by spawn, and nothing
        // will run it again.
        unsafe {
            uthread::cleanup(uth);
            drop(Box::from_raw(uth.as_ptr().cast::<Thread>()));
        }
        LIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Makes the calling (plain) thread the uthread `main` on vcore 0 and requests every
/// vcore. Call once, first thing in an isolated child.
pub fn init() {
    try_init().expect("uthread::lib_init");
}

/// [`init`], returning `uthread::lib_init`'s error instead of panicking.
pub fn try_init() -> Result<(), uthread::Error> {
    let main = Box::leak(Box::new(Thread { uth: Uthread::new(), pin: None, body: None }));
    // SAFETY: the record is leaked, so it lives for the rest of the process.
    unsafe { uthread::lib_init(&SCHED, NonNull::from(&mut main.uth)) }?;
    // Only vcore 0 runs (it runs us), so no vcore is in sched_entry yet.
    let n = vcore::max_vcores();
    assert!(n <= 64, "these tests keep sets of vcores in u64 masks; run them with VCORE_LIMIT=64");
    // Vcore 0 runs main without having entered the scheduler: it starts counted (the
    // static count starts at 1 for it).
    let locals = (0..n).map(|id| Local {
        queue: SpinLock::new(VecDeque::new()),
        parking: AtomicBool::new(false),
        counted: AtomicBool::new(id == 0),
    });
    let _ = LOCALS.set(locals.collect());
    vcore::request(n - 1).expect("request the other vcores");
    Ok(())
}

/// Runs `hook` in vcore context every time a vcore enters the scheduler. Set it before
/// [`init`].
pub fn on_sched_entry(hook: fn()) {
    SCHED_ENTRY_HOOK.set(hook).expect("one hook per process");
}

/// Runs `hook` in vcore context in the exit callback of every spawned uthread.
pub fn on_exit(hook: fn()) {
    EXIT_HOOK.set(hook).expect("one hook per process");
}

/// Runs `hook` in vcore context (from `thread_refl_fault`) when a spawned uthread
/// faults, instead of the default policy's report-and-abort; afterwards the scheduler
/// reaps the uthread as if it had exited. Set it before [`init`].
pub fn on_fault(hook: fn(NonNull<Uthread>, &Fault)) {
    FAULT_HOOK.set(hook).expect("one hook per process");
}

fn spawn_inner(pin: Option<usize>, tls: TlsMode, body: Box<dyn FnOnce() + Send>) -> NonNull<Uthread> {
    if let Some(id) = pin {
        assert!(id < vcore::max_vcores(), "no vcore {id} to pin to");
    }
    let t = Box::into_raw(Box::new(Thread { uth: Uthread::new(), pin, body: Some(body) }));
    // SAFETY: `t` is a fresh allocation; `uth` is its first field.
    let uth = unsafe { NonNull::new_unchecked(&raw mut (*t).uth) };
    let stack = Stack::with_default_size().expect("mmap a uthread stack");
    LIVE.fetch_add(1, Ordering::AcqRel);
    // SAFETY: the record lives until thread_main's exit callback frees it; `t` is the
    // argument thread_main expects.
    unsafe { uthread::init(uth, thread_main, t.cast(), stack, tls) }.expect("uthread::init");
    uthread::runnable(uth);
    uth
}

/// Starts `body` as a new uthread that may run on any vcore.
pub fn spawn(tls: TlsMode, body: impl FnOnce() + Send + 'static) -> NonNull<Uthread> {
    spawn_inner(None, tls, Box::new(body))
}

/// Starts `body` as a new uthread that only ever runs on vcore `id`.
pub fn spawn_on(id: usize, tls: TlsMode, body: impl FnOnce() + Send + 'static) -> NonNull<Uthread> {
    spawn_inner(Some(id), tls, Box::new(body))
}

/// Every spawned uthread starts here.
fn thread_main(arg: *mut ()) -> ! {
    let t = arg.cast::<Thread>();
    // SAFETY: `arg` is the Thread that spawn made for this uthread, and only this
    // uthread touches `body`.
    let body = unsafe { (*t).body.take() }.expect("a thread runs once");
    body();
    uthread::exit_with(|uth| {
        // Vcore context: the uthread is Done and off its stack, so free everything.
        if let Some(hook) = EXIT_HOOK.get() {
            hook();
        }
        // SAFETY: `uth` is the first field of a Box<Thread> made by spawn.
        unsafe {
            uthread::cleanup(uth);
            drop(Box::from_raw(uth.as_ptr().cast::<Thread>()));
        }
        LIVE.fetch_sub(1, Ordering::AcqRel);
    })
}

/// Gives the vcore to the next uthread in line.
pub fn yield_now() {
    uthread::yield_with(true, uthread::paused);
}

/// Yields until `done()` holds.
pub fn wait_until(mut done: impl FnMut() -> bool) {
    while !done() {
        yield_now();
    }
}

/// Whether every spawned uthread has exited and been cleaned up.
pub fn all_exited() -> bool {
    LIVE.load(Ordering::Acquire) == 0
}

/// Yields until every spawned uthread has exited and been cleaned up.
pub fn wait_all() {
    wait_until(all_exited);
}

/// The set of vcore ids `0..max_vcores()` as a bit mask (`init` checks there are at
/// most 64).
pub fn all_vcores_mask() -> u64 {
    u64::MAX >> (64 - vcore::max_vcores())
}

// ---------------------------------------------------------------------------------------
// Preemption: a tick source and the handler that preempts on each tick.

/// Uthreads the tick handler [`preempt_on_tick`] has paused.
pub static PREEMPTIONS: AtomicUsize = AtomicUsize::new(0);

/// An `EV_USER_IPI` handler that preempts: in vcore context, the uthread the
/// notification interrupted goes back to the scheduler ([`uthread::paused`]) and the
/// scheduler picks the next one. Counts into [`PREEMPTIONS`].
pub fn preempt_on_tick(_: &EventMsg, _: EventType) {
    if let Some(uth) = uthread::interrupted() {
        PREEMPTIONS.fetch_add(1, Ordering::Relaxed);
        uthread::paused(uth);
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

/// Every vcore id, `0..max_vcores()`.
pub fn all_vcores() -> Vec<usize> {
    (0..vcore::max_vcores()).collect()
}
