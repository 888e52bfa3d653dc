//! A small benchmark scheduler written against `parlib_uthread::Scheduler`, shared by the
//! benches in this folder (`#[path = "common/mod.rs"] mod common;`).
//!
//! It is part of what the benches measure, so its hot paths are as short as the
//! `Scheduler` trait allows:
//!
//! * one FIFO run queue per vcore, a [`SpinLock`]`<VecDeque>` padded to 128 bytes;
//! * every uthread has a *home* vcore, chosen by [`spawn_on`], and never migrates: a
//!   yield ([`yield_now`] = `yield_with(true, paused)`) and a wake-up both push it onto
//!   its home queue, and `sched_entry` only ever pops the queue of the vcore it runs on;
//! * an idle vcore also polls its event queue ([`events::events_pending`]) and runs
//!   [`events::handle_events`] when something is there, so an event sent to a vcore that
//!   sits in `sched_entry` is handled there, with no signal and no wake-up;
//! * a vcore whose queue stays empty for [`IDLE_POLLS`] polls parks with
//!   [`vcore::yield_vcore`]; whoever next puts work on its queue requests it again with
//!   [`vcore::request_specific`] (the "sleeping" handshake below). [`set_spin_when_idle`]
//!   keeps a vcore polling instead, for benches that measure a vcore spinning in
//!   `sched_entry`;
//! * [`Gate`] and [`Completion`] block and wake uthreads (and let plain Linux threads
//!   wake them): the benchmark driver, the `main` uthread, waits on a `Completion`
//!   while the measured uthreads run.
//!
//! # The sleeping handshake (no lost wake-ups)
//!
//! `vcore::request_specific(v)` does nothing if `v` is still running, so a vcore that
//! decides to park must not miss work queued between its decision and its park. Each
//! vcore has a `sleeping` flag next to its queue:
//!
//! 1. the idle vcore stores `sleeping = true`, then looks at its queue once more, under
//!    the queue lock;
//! 2. a producer pushes under the same lock, then loads `sleeping`;
//! 3. the queue lock orders the two critical sections. If the vcore's look came second it
//!    sees the new entry; if the push came second, the producer sees `sleeping == true`
//!    (the vcore's store happens before its unlock, which happens before the producer's
//!    lock);
//! 4. whoever of the two swaps `sleeping` back to false owns the outcome: the vcore
//!    cancels its park and runs the entry, or the producer spins on
//!    `request_specific(v)` until it succeeds, which it does as soon as the vcore has
//!    stored `PARKED` (a few instructions later: the vcore is committed to parking).
//!
//! `sleeping` starts true for every vcore but 0: they start parked, and `lib_init`
//! requests only vcore 0. A vcore that finds `sleeping` still set on entering
//! `sched_entry` (woken by someone else) clears it, so no producer is left spinning on a
//! vcore that is running.
//!
//! [`set_spin_when_idle`]`(v, true)` is a producer of the same kind: it stores
//! `spin_when_idle` and then loads `sleeping`, while an idle vcore stores `sleeping` and
//! then loads `spin_when_idle` (all SeqCst, Dekker's pattern), so at least one of the two
//! sees the other, and the `sleeping` swap of step 4 again decides who owns the outcome.

#![allow(dead_code)] // each bench uses a different subset

use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parlib::events;
use parlib::uthread::{self, BlockReason, Scheduler, TlsMode, Uthread};
use parlib::vcore::{self, spin::SpinLock, Stack};

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

/// Our uthread record. `Uthread` comes first, so a `NonNull<Uthread>` from the uthread
/// layer also points to the `Thread` around it.
#[repr(C)]
struct Thread {
    uth: Uthread,
    /// The vcore whose queue this uthread always goes back to.
    home: usize,
    /// What it runs; taken once by `thread_main`.
    body: Option<Box<dyn FnOnce() + Send>>,
}

const _: () = assert!(core::mem::offset_of!(Thread, uth) == 0);

/// A run-queue entry. The pointer moves between tasks only through the queue's lock.
struct Entry(NonNull<Uthread>);
// SAFETY: a uthread record may be handed to any vcore (or a plain thread waking it); the
// queue lock orders the hand-over, and the uthread layer's state checks catch misuse.
unsafe impl Send for Entry {}

/// One vcore's share of the scheduler.
///
/// Aligned to 128 bytes, not 64: the L2 spatial prefetcher of Intel parts since Sandy
/// Bridge completes every 64-byte line to its 128-byte-aligned pair (Intel 64 and IA-32
/// Architectures Optimization Reference Manual, "Data Prefetching"), and AMD Zen's L2
/// up/down prefetcher fetches the adjacent line too, so two vcores' queues only 64 bytes
/// apart would still false-share. crossbeam-utils' `CachePadded` pads to 128 on x86-64
/// for this reason (citing the same manual), as does `parlib_vcore::Vcore`.
#[repr(C, align(128))]
struct PerVcore {
    queue: SpinLock<VecDeque<Entry>>,
    /// Set by the vcore just before it parks (see the module docs).
    sleeping: AtomicBool,
    /// While set, the vcore never parks when idle: it keeps polling its run queue and
    /// its events ([`set_spin_when_idle`]).
    spin_when_idle: AtomicBool,
}

impl PerVcore {
    const fn new() -> PerVcore {
        PerVcore {
            queue: SpinLock::new(VecDeque::new()),
            sleeping: AtomicBool::new(false),
            spin_when_idle: AtomicBool::new(false),
        }
    }
}

/// The scheduler: per-vcore FIFO queues, no migration, park when idle.
struct BenchSched {
    vcores: [PerVcore; MAX_VCORES],
}

static SCHED: BenchSched = BenchSched { vcores: [const { PerVcore::new() }; MAX_VCORES] };

impl BenchSched {
    /// Queues `uth` on its home vcore and requests that vcore if it parked or is parking.
    #[inline]
    fn enqueue(&self, uth: NonNull<Uthread>) {
        // SAFETY: every uthread this scheduler sees is the first field of a `Thread`
        // (spawn_on and start make them all), alive until its exit callback frees it.
        let home = unsafe { uth.cast::<Thread>().as_ref() }.home;
        let pv = &self.vcores[home];
        pv.queue.lock().push_back(Entry(uth));
        // Step 2 of the handshake. Relaxed is enough: the queue lock provides the order.
        if pv.sleeping.load(Ordering::Relaxed) && pv.sleeping.swap(false, Ordering::AcqRel) {
            // Step 4: we own the wake-up. The vcore is parked or about to be.
            while !vcore::request_specific(home).expect("home vcore exists") {
                core::hint::spin_loop();
            }
        }
    }
}

impl Scheduler for BenchSched {
    // Vcore context: run the next uthread of this vcore's queue, or park.
    fn sched_entry(&self) -> ! {
        // SAFETY: the uthread layer calls sched_entry only in vcore context, on a vcore task.
        let id = unsafe { vcore::this_unchecked() }.id();
        let pv = &self.vcores[id];
        if pv.sleeping.load(Ordering::Relaxed) {
            // Woken by someone other than a producer: stop advertising that we park.
            pv.sleeping.store(false, Ordering::Relaxed);
        }
        loop {
            let mut idle_polls = 0;
            while idle_polls < IDLE_POLLS {
                // A separate statement: the guard must be dropped before run_uthread,
                // which never returns (an `if let` would keep it to the end of the block).
                let next = pv.queue.lock().pop_front();
                if let Some(Entry(uth)) = next {
                    uthread::run_uthread(uth);
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
            // Step 1 of the handshake.
            pv.sleeping.store(true, Ordering::SeqCst);
            let empty = pv.queue.lock().is_empty();
            let spin = pv.spin_when_idle.load(Ordering::SeqCst);
            if (!empty || spin) && pv.sleeping.swap(false, Ordering::AcqRel) {
                continue; // we cancelled our own park; run what arrived, or keep spinning
            }
            // Either the queue is empty, or a producer owns our wake-up and is spinning
            // until we park: park now either way.
            vcore::yield_vcore();
        }
    }

    fn thread_runnable(&self, uth: NonNull<Uthread>) {
        self.enqueue(uth);
    }

    fn thread_paused(&self, uth: NonNull<Uthread>) {
        self.enqueue(uth);
    }
    // thread_has_blocked: the default (nothing); a Gate keeps the uthread until `open`.
}

/// Starts the uthread layer with this scheduler and turns the caller into the uthread
/// `main` on vcore 0 (its home). No other vcore is requested: [`spawn_on`] requests
/// them as it puts uthreads there. Call once, from a plain thread (normally `main`).
pub fn start() {
    // Every vcore but 0 starts parked and must be requested by the first producer that
    // queues work on it; vcore 0 is requested by lib_init itself, to run `main`.
    for pv in &SCHED.vcores[1..] {
        pv.sleeping.store(true, Ordering::Relaxed);
    }
    let main = Box::leak(Box::new(Thread { uth: Uthread::new(), home: 0, body: None }));
    // SAFETY: the record is leaked, so it stays valid for the rest of the process.
    unsafe { uthread::lib_init(&SCHED, NonNull::from(&mut main.uth)) }.expect("uthread::lib_init");
}

/// Keeps vcore `vc` polling in `sched_entry` when it is idle (`on`), instead of parking
/// after [`IDLE_POLLS`] empty polls; requests it if it is parked or about to park. With
/// `on == false` the vcore parks again once it has been idle for `IDLE_POLLS` polls.
pub fn set_spin_when_idle(vc: usize, on: bool) {
    assert!(
        vc < usable_vcores(),
        "set_spin_when_idle: vcore {vc} is not one of the {} usable",
        usable_vcores()
    );
    let pv = &SCHED.vcores[vc];
    pv.spin_when_idle.store(on, Ordering::SeqCst);
    // The producer's side of the handshake (module docs), with `spin_when_idle` as the work.
    if on && pv.sleeping.load(Ordering::SeqCst) && pv.sleeping.swap(false, Ordering::AcqRel) {
        while !vcore::request_specific(vc).expect("vcore exists") {
            core::hint::spin_loop();
        }
    }
}

/// How many vcores [`spawn_on`] accepts: all of them, up to [`MAX_VCORES`].
pub fn usable_vcores() -> usize {
    vcore::max_vcores().min(MAX_VCORES)
}

/// Starts `body` as a new uthread whose home is vcore `vc`, with its own TLS
/// ([`TlsMode::Backed`]) or on the vcore's ([`TlsMode::None`]). It runs once `vc` gets
/// to it in FIFO order; `vc` is requested if it was parked.
pub fn spawn_on(vc: usize, tls: TlsMode, body: impl FnOnce() + Send + 'static) {
    assert!(vc < usable_vcores(), "spawn_on: vcore {vc} is not one of the {} usable", usable_vcores());
    let t = Box::into_raw(Box::new(Thread { uth: Uthread::new(), home: vc, body: Some(Box::new(body)) }));
    // SAFETY: `t` is a fresh allocation and `uth` its first field.
    let uth = unsafe { NonNull::new_unchecked(&raw mut (*t).uth) };
    let stack = Stack::with_default_size().expect("mmap a uthread stack");
    // SAFETY: the record lives until thread_main's exit callback frees it; `t` is what
    // thread_main expects as its argument.
    unsafe { uthread::init(uth, thread_main, t.cast(), stack, tls) }.expect("uthread::init");
    uthread::runnable(uth);
}

/// Every spawned uthread starts here, runs its body, and frees itself on exit.
fn thread_main(arg: *mut ()) -> ! {
    let t = arg.cast::<Thread>();
    // SAFETY: `arg` is the Thread spawn_on made for this uthread; only it touches `body`.
    let body = unsafe { (*t).body.take() }.expect("a uthread runs its body once");
    body();
    uthread::exit_with(|uth| {
        // SAFETY: vcore context; the uthread is Done and off its stack, and `uth` is the
        // first field of the Box<Thread> that spawn_on leaked.
        unsafe {
            uthread::cleanup(uth);
            drop(Box::from_raw(uth.as_ptr().cast::<Thread>()));
        }
    })
}

/// Gives the vcore to the next uthread in its queue: one uthread switch.
#[inline]
pub fn yield_now() {
    uthread::yield_with(true, uthread::paused);
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
        uthread::yield_with(true, |uth| {
            // Vcore context. Blocked first, published second: once the address is in
            // `state` an opener may make it runnable at once.
            uthread::has_blocked(uth, BlockReason::Other(BLOCKED_ON_GATE));
            if self
                .state
                .compare_exchange(SHUT, uth.as_ptr() as usize, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                // Opened since our first look; only `open` writes while we are the
                // waiter, and it leaves OPEN. Take it and go on.
                self.state.store(SHUT, Ordering::Relaxed);
                uthread::runnable(uth);
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
            // SAFETY: a waiter's address is stored only by `pass`, for a uthread that is
            // Blocked and kept alive until it runs again.
            uthread::runnable(unsafe { NonNull::new_unchecked(s as *mut Uthread) });
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
