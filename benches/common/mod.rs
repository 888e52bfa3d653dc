//! A small benchmark scheduler written against `parlib_uthread::Scheduler`, shared by the
//! benches in this folder (`#[path = "common/mod.rs"] mod common;`).
//!
//! It is part of what the benches measure, so its hot paths are as short as the
//! `Scheduler` trait allows:
//!
//! * one FIFO run queue per vcore, a [`SpinLock`]`<VecDeque>` padded to 128 bytes;
//! * every uthread has a *home* vcore, chosen by [`spawn_on`], and never migrates: a
//!   yield ([`yield_now`] = `yield_with(paused)`) and a wake-up both push it onto
//!   its home queue, and `sched_entry` only ever pops the queue of the vcore it runs on;
//! * an idle vcore also polls its event queue ([`events::events_pending`]) and runs
//!   [`events::handle_events`] when something is there, so an event sent to a vcore that
//!   sits in `sched_entry` is handled there, with no signal and no wake-up;
//! * a vcore whose queue stays empty for [`IDLE_POLLS`] polls parks with
//!   `uthread::idle::park`; whoever next puts work on its queue wakes it (the library's
//!   handshake, in its lock-ordered form: the push reads `idle::is_parking` under the
//!   queue lock that the parker's `validate` takes, so a push needs no fence).
//!   [`set_spin_when_idle`] keeps a vcore polling instead, for benches that measure a
//!   vcore spinning in `sched_entry`;
//! * [`Gate`] and [`Completion`] block and wake uthreads (and let plain Linux threads
//!   wake them): the benchmark driver, the `main` uthread, waits on a `Completion`
//!   while the measured uthreads run.

#![allow(dead_code)] // each bench uses a different subset

use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use parlib::events;
use parlib::uthread::{self, idle, BlockReason, Blocked, Runnable, Scheduler, TlsMode, Uthread};
use parlib::vcore::{self, spin::SpinLock};

/// Vcores this scheduler can drive. Its per-vcore records are a static array so that
/// `sched_entry` finds its queue with one index, no pointer chase; 64 x 128 bytes is
/// 8 KiB. Vcores beyond this are never used (see [`usable_vcores`]).
pub const MAX_VCORES: usize = 64;

/// How many times an idle vcore polls its empty queue before parking. A poll (lock, look,
/// unlock, a look at the event queue, `pause`) takes some ns to some tens of ns here, so
/// the vcore spins for at most tens of µs: about what a futex wake-up of a parked vcore
/// costs in this VM (~50 µs, see `examples/round_robin.rs`), so a short gap between two
/// pieces of work is not turned into a park and a wake-up, and an idle vcore gives its
/// core back soon after. Handling an event starts the count again.
pub const IDLE_POLLS: u32 = 2000;

/// `BlockReason::Other` code of a uthread blocked on a [`Gate`].
const BLOCKED_ON_GATE: u32 = 1;

/// What this scheduler keeps per uthread: the vcore whose queue it always goes back to.
pub struct Home(usize);

/// One vcore's share of the scheduler, on cache lines of its own: `CachePadded` pads to
/// 128 bytes on x86-64 because the L2 spatial prefetcher of Intel parts since Sandy
/// Bridge completes every 64-byte line to its 128-byte-aligned pair (Intel 64 and IA-32
/// Architectures Optimization Reference Manual, "Data Prefetching"), and AMD Zen's L2
/// up/down prefetcher fetches the adjacent line too, so two vcores' queues only 64 bytes
/// apart would still false-share.
struct PerVcore {
    queue: SpinLock<VecDeque<Runnable<Home>>>,
    /// While set, the vcore never parks when idle: it keeps polling its run queue and
    /// its events ([`set_spin_when_idle`]).
    spin_when_idle: AtomicBool,
}

impl PerVcore {
    const fn new() -> PerVcore {
        PerVcore { queue: SpinLock::new(VecDeque::new()), spin_when_idle: AtomicBool::new(false) }
    }
}

/// The scheduler: per-vcore FIFO queues, no migration, park when idle.
struct BenchSched {
    vcores: [CachePadded<PerVcore>; MAX_VCORES],
}

static SCHED: BenchSched = BenchSched { vcores: [const { CachePadded::new(PerVcore::new()) }; MAX_VCORES] };

impl BenchSched {
    /// Queues `t` on its home vcore and wakes that vcore if it parked or is parking.
    #[inline]
    fn enqueue(&self, t: Runnable<Home>) {
        let home = t.0;
        let pv = &self.vcores[home];
        let parking = {
            let mut q = pv.queue.lock();
            q.push_back(t);
            // The park handshake's read, under the lock the parker's `validate` takes.
            idle::is_parking(home)
        };
        if parking {
            let _ = vcore::notify(home);
        }
    }
}

impl Scheduler for BenchSched {
    type Thread = Home;

    // Vcore context: run the next uthread of this vcore's queue, or park.
    fn sched_entry(&self) -> ! {
        // SAFETY: the uthread layer calls sched_entry only in vcore context, on a vcore task.
        let id = unsafe { vcore::this_unchecked() }.id();
        let pv = &self.vcores[id];
        loop {
            let mut idle_polls = 0;
            while idle_polls < IDLE_POLLS {
                // A separate statement: the guard must be dropped before run_uthread,
                // which never returns (an `if let` would keep it to the end of the block).
                let next = pv.queue.lock().pop_front();
                if let Some(t) = next {
                    uthread::run_uthread(t);
                }
                // Only when the queue is empty, so a busy vcore's switches pay nothing.
                // A sender found us in vcore context, so it only queued and set
                // `notif_pending`: looking is our part of the notification.
                if events::events_pending() {
                    events::handle_events(); // handlers may have queued uthreads: look again
                    idle_polls = 0;
                    continue;
                }
                if !pv.spin_when_idle.load(Ordering::Relaxed) {
                    idle_polls += 1;
                }
                core::hint::spin_loop();
            }
            idle::park(|| !pv.queue.lock().is_empty() || pv.spin_when_idle.load(Ordering::SeqCst), || {});
        }
    }

    fn thread_runnable(&self, t: Runnable<Home>) {
        self.enqueue(t);
    }
    // thread_paused defaults to thread_runnable; thread_has_blocked: the default
    // (nothing), a Gate keeps the uthread until `open`; thread_exited: the default
    // (drop the handle: the uthread is freed).
}

/// Starts the uthread layer with this scheduler and turns the caller into the uthread
/// `main` on vcore 0 (its home). No other vcore runs until [`spawn_on`] puts uthreads
/// there. Call once, from a plain thread (normally `main`).
pub fn start() {
    uthread::lib_init(&SCHED, Home(0)).expect("uthread::lib_init");
}

/// Keeps vcore `vc` polling in `sched_entry` when it is idle (`on`), instead of parking
/// after [`IDLE_POLLS`] empty polls; wakes it if it is parked or about to park. With
/// `on == false` the vcore parks again once it has been idle for `IDLE_POLLS` polls.
pub fn set_spin_when_idle(vc: usize, on: bool) {
    assert!(
        vc < usable_vcores(),
        "set_spin_when_idle: vcore {vc} is not one of the {} usable",
        usable_vcores()
    );
    SCHED.vcores[vc].spin_when_idle.store(on, Ordering::SeqCst);
    if on {
        idle::wake(vc); // the flag is work the parker's `validate` looks for
    }
}

/// How many vcores [`spawn_on`] accepts: all of them, up to [`MAX_VCORES`].
pub fn usable_vcores() -> usize {
    vcore::max_vcores().min(MAX_VCORES)
}

/// Starts `body` as a new uthread whose home is vcore `vc`, with its own TLS
/// ([`TlsMode::Backed`]) or on the vcore's ([`TlsMode::None`]). It runs once `vc` gets
/// to it in FIFO order; `vc` is woken if it was parked.
pub fn spawn_on(vc: usize, tls: TlsMode, body: impl FnOnce() + Send + 'static) {
    assert!(vc < usable_vcores(), "spawn_on: vcore {vc} is not one of the {} usable", usable_vcores());
    uthread::spawn(Home(vc), tls, body).expect("uthread::spawn");
}

/// Gives the vcore to the next uthread in its queue: one uthread switch.
#[inline]
pub fn yield_now() {
    uthread::yield_with(uthread::paused);
}

// ---------------------------------------------------------------------------------------
// Blocking and waking.

/// `Gate::state` when nobody waits and it is shut.
const SHUT: usize = 0;
/// `Gate::state` when it was opened and nobody has passed yet.
const OPEN: usize = 1;
// Any other value: the address of the one uthread blocked on the gate.

/// A one-waiter gate: [`pass`](Gate::pass) blocks the calling uthread until someone
/// [`open`](Gate::open)s the gate, and shuts it again behind it. Opening an open gate does
/// nothing. `open` may be called from a uthread or a plain Linux thread.
///
/// | state | `pass` (one uthread at a time) | `open` |
/// |---|---|---|
/// | `SHUT` | block: state = its address | state = `OPEN` |
/// | `OPEN` | state = `SHUT`, go on | nothing |
/// | waiter | (impossible: one waiter) | state = `SHUT`, make the waiter runnable |
///
/// A gate must not live on the stack of the uthread that waits on it: the opener touches
/// it after the waiter may already run again elsewhere.
pub struct Gate {
    state: AtomicUsize,
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

impl Gate {
    /// A shut gate.
    pub const fn new() -> Gate {
        Gate { state: AtomicUsize::new(SHUT) }
    }

    /// Waits (blocking only the calling uthread) until the gate is open, then shuts it.
    pub fn pass(&self) {
        if self.state.compare_exchange(OPEN, SHUT, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            return;
        }
        let state = &self.state as *const AtomicUsize as usize;
        uthread::yield_with(move |me| {
            // SAFETY: a gate outlives its waiter's wait (the type's docs).
            let state = unsafe { &*(state as *const AtomicUsize) };
            // Vcore context. Blocked first, published second: once the address is in
            // `state` an opener may make it runnable at once.
            let me = uthread::has_blocked(me, BlockReason::Other(BLOCKED_ON_GATE)).into_raw();
            if state
                .compare_exchange(SHUT, me.as_ptr() as usize, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                // Opened since our first look; only `open` writes while we are the
                // waiter, and it leaves OPEN. Take it and go on.
                state.store(SHUT, Ordering::Relaxed);
                // SAFETY: our own handle, never published.
                uthread::runnable(unsafe { Blocked::from_raw(me) });
            }
        });
    }

    /// Opens the gate, waking its waiter if there is one.
    pub fn open(&self) {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            let new = match s {
                OPEN => return,
                SHUT => OPEN,
                _ => SHUT, // a waiter: it passes, and the gate stays shut behind it
            };
            match self.state.compare_exchange_weak(s, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        if s != SHUT {
            // SAFETY: a waiter's address is its Blocked handle's pointer, stored only by
            // `pass`; taking it out of `state` makes its wake-up ours.
            uthread::runnable(unsafe { Blocked::from_raw(NonNull::new_unchecked(s as *mut Uthread)) });
        }
    }
}

/// A completion counter: [`wait`](Completion::wait) blocks one uthread (the driver) until
/// [`arrive`](Completion::arrive) has been called as many times as the last
/// [`reset`](Completion::reset) said. Arrivals may come from uthreads on any vcore or from
/// plain Linux threads.
pub struct Completion {
    left: AtomicUsize,
    gate: Gate,
}

impl Default for Completion {
    fn default() -> Self {
        Completion::new()
    }
}

impl Completion {
    /// A completion that expects nothing yet.
    pub const fn new() -> Completion {
        Completion { left: AtomicUsize::new(0), gate: Gate::new() }
    }

    /// Expects `n` arrivals. Only while nobody arrives or waits.
    pub fn reset(&self, n: usize) {
        assert!(n > 0, "a completion must expect at least one arrival");
        self.left.store(n, Ordering::Relaxed);
    }

    /// Counts one arrival; the last one wakes the waiter.
    pub fn arrive(&self) {
        let before = self.left.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "more arrivals than the completion expected");
        if before == 1 {
            self.gate.open();
        }
    }

    /// Blocks the calling uthread until every expected arrival has happened.
    pub fn wait(&self) {
        self.gate.pass();
    }
}
