//! The upthread scheduler: per-vcore run queues, round robin, work stealing, idle
//! vcores that park, and the knobs that tune it.
//!
//! # Where a runnable thread goes
//!
//! | how it became runnable | queue | end |
//! |---|---|---|
//! | created, stealing on | the creator's vcore (idle vcores steal to spread the work) | tail |
//! | created, stealing off or from outside the vcores | vcore `n mod active` for a global counter `n` (round robin) | tail |
//! | yielded, preempted, woken by a sync primitive | the vcore that last ran it (modulo the active count, if that shrank) | tail |
//! | woken after blocking in a system call ([`BlockReason::Syscall`], `thread_blockon_sysc`) | the vcore that last ran it | head |
//!
//! # What an idle vcore does
//!
//! `sched_entry` pops the head of its own queue; the thread this vcore just paused (a
//! yield or a preemption) goes to the tail in the same critical section, or runs again
//! at once if nobody else waits. When the queue is empty and stealing is on, it picks
//! two queues at random and steals half (rounded up) of the longer; if both are empty it
//! scans every queue once. Meanwhile it polls its events (`events_pending` /
//! `handle_events`): an idle vcore never leaves vcore context, so alarms, I/O
//! completions and wake-ups sent to it would otherwise wait. After [`IDLE_SPINS`] empty
//! rounds it parks (`yield_vcore`), unless vcore requesting is off
//! ([`can_vcore_request`]`(false)`), in which case it keeps polling.
//!
//! # Parking without losing a wake-up
//!
//! An idle vcore parks with `parlib_uthread::idle::park`, whose handshake is the
//! library's (its module docs). upthread takes the lock-ordered form of it, so that the
//! push on every wake-up needs no fence:
//!
//! 1. the parking vcore's `validate` (after `idle::park`'s SeqCst fence) takes its
//!    queue's lock and looks at the queue (and at the paused slot), then at every queue
//!    (when stealing);
//! 2. a pusher reads the target's parking flag (`idle::is_parking`) while it holds the
//!    queue's lock, after queueing the thread; if it is set, it *notifies* the vcore
//!    (`parlib_vcore::notify`) once the lock is released.
//!
//! The two critical sections are ordered by the lock: if the vcore's comes first, its
//! flag store (made before `validate`) happens before the pusher reads the flag; if the
//! pusher's comes first, the vcore sees the thread. A notification cannot be lost between
//! the vcore's last look and its park: `yield_vcore` re-checks `notif_pending` after
//! marking itself parked, and a notification to a parked vcore wakes it. Notifying also
//! works when the pusher is the parking vcore itself, handling its events before it parks.
//! The flag is only ever set while the vcore is in vcore context or parked, so the
//! notification never interrupts a running thread.
//!
//! # Requesting vcores
//!
//! With [`can_vcore_request`] on (the default) vcores are not requested up front: a
//! thread queued on a parked vcore wakes it (above), and when a queue holds more than one
//! thread while some active vcore is parked, the pusher wakes one parked vcore so it can
//! steal (`idle::wake`, with its fence: that vcore's queue is not the one locked). Idle vcores park again after [`IDLE_SPINS`] rounds. With it off, every active
//! vcore is requested and none ever parks.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::collections::VecDeque;
use std::sync::OnceLock;

use crossbeam_utils::CachePadded;
use parlib_alarms::AlarmWaiter;
use parlib_events as events;
use parlib_sync::Errno;
use parlib_uthread::{self as uthread, idle, BlockReason, Exited, Runnable, Scheduler, Syscall};
use parlib_vcore::{self as vcore, spin::SpinLock};

use crate::preempt;
use crate::record::{Rec, Thread, NO_VCORE};

/// How many empty polling rounds an idle vcore makes before it parks. One round is a
/// queue check, a steal attempt and an event check, about 10 ns when everything is
/// empty, so 2000 rounds are some 20 µs: longer than a typical gap between a thread
/// blocking and another waking (so a busy vcore does not park between them), far
/// shorter than the ~50 µs a futex wake-up of a parked vcore costs here (the figure
/// `examples/round_robin.rs` uses too).
pub const IDLE_SPINS: u32 = 2000;

/// One vcore's scheduler state, on cache lines of its own (`CachePadded`: 128 bytes on
/// x86-64, since adjacent-line prefetch pulls in 64-byte lines in pairs on Intel and AMD
/// parts), so two vcores' hot fields never false-share.
pub(crate) struct PerVcore {
    /// Runnable threads; records move between vcores only through this lock.
    queue: SpinLock<VecDeque<Runnable<Thread>>>,
    /// The queue's length, readable without the lock (for thieves and parkers).
    len: AtomicUsize,
    /// Whether this vcore counts itself into `AWAKE`.
    counted: AtomicBool,
    /// xorshift state for choosing victims; only this vcore touches it.
    rng: AtomicU64,
    /// The thread this vcore's context just paused (a yield or a preemption), not yet
    /// queued (a `Runnable` given up with `into_raw`): `sched_entry` queues it behind the
    /// others in the same critical section that takes the next one, or runs it again if
    /// nobody else waits. Only this vcore's context touches it.
    paused: AtomicPtr<Rec>,
    /// This vcore's preemption alarm (see `preempt`). Lives in the slice of a static
    /// `OnceLock`, never dropped or reset, so it never moves.
    pub(crate) preempt: AlarmWaiter,
}

/// The scheduler. All state is in statics; the unit struct is what `lib_init` needs.
pub(crate) struct Upsched;

/// The one scheduler instance given to `uthread::lib_init`.
pub(crate) static SCHED: Upsched = Upsched;

static VCORES: OnceLock<Box<[CachePadded<PerVcore>]>> = OnceLock::new();
/// Vcores threads are placed on: `0..ACTIVE`.
static ACTIVE: AtomicUsize = AtomicUsize::new(1);
static CAN_REQUEST: AtomicBool = AtomicBool::new(true);
static CAN_STEAL: AtomicBool = AtomicBool::new(true);
/// Vcores that count themselves awake (entered `sched_entry`, not parked). A hint for
/// requesting: it never exceeds the vcores really awake.
static AWAKE: AtomicUsize = AtomicUsize::new(1);
/// The active count asked for before `init` (0: every vcore).
static WANTED: AtomicUsize = AtomicUsize::new(0);
/// Round-robin counter for placing new threads.
static NEXT_NEW: AtomicUsize = AtomicUsize::new(0);

#[inline]
fn pvs() -> &'static [CachePadded<PerVcore>] {
    VCORES.get().map(|v| &v[..]).expect("upthread: scheduler used before parlib_upthread::init")
}

/// Allocates the per-vcore state; called by `init` after the vcore layer is up and
/// before the scheduler is installed.
pub(crate) fn setup() {
    let n = vcore::max_vcores();
    let v = (0..n).map(|id| {
        let pv = PerVcore {
            queue: SpinLock::new(VecDeque::new()),
            len: AtomicUsize::new(0),
            // Vcore 0 will run main without entering sched_entry first.
            counted: AtomicBool::new(id == 0),
            rng: AtomicU64::new(0x2545_F491_4F6C_DD1D ^ ((id as u64 + 1) << 32) | 1),
            paused: AtomicPtr::new(core::ptr::null_mut()),
            preempt: AlarmWaiter::new(),
        };
        pv.preempt.init_waiter(preempt::on_tick);
        CachePadded::new(pv)
    });
    let _ = VCORES.set(v.collect());
    let wanted = WANTED.load(Ordering::Acquire);
    ACTIVE.store(if wanted == 0 { n } else { wanted.min(n) }, Ordering::Release);
}

/// The active vcore count.
#[inline]
pub(crate) fn active() -> usize {
    ACTIVE.load(Ordering::Relaxed)
}

impl Upsched {
    fn push(&self, target: usize, t: Runnable<Thread>, head: bool) {
        let pv = &pvs()[target];
        let (parking, len) = {
            let mut q = pv.queue.lock();
            if head {
                q.push_front(t);
            } else {
                q.push_back(t);
            }
            pv.len.store(q.len(), Ordering::Relaxed);
            // Step 2 of the park handshake, inside the lock: see the module docs.
            (idle::is_parking(target), q.len())
        };
        if parking {
            let _ = vcore::notify(target);
            return;
        }
        if len > 1
            && CAN_REQUEST.load(Ordering::Relaxed)
            && CAN_STEAL.load(Ordering::Relaxed)
            && AWAKE.load(Ordering::Relaxed) < active()
        {
            wake_one_parked(target);
        }
    }

    /// The next thread for this vcore: the head of its queue, with the thread it just
    /// paused going to the tail; the paused thread itself if the queue is empty; else a
    /// stolen one.
    fn next(&self, id: usize, pv: &PerVcore) -> Option<Runnable<Thread>> {
        let Some(paused) = take_paused(pv) else {
            return self.pop_local(pv).or_else(|| self.steal(id, pv));
        };
        if pv.len.load(Ordering::Relaxed) == 0 {
            return Some(paused);
        }
        let mut q = pv.queue.lock();
        let Some(head) = q.pop_front() else { return Some(paused) };
        q.push_back(paused);
        Some(head)
    }

    fn pop_local(&self, pv: &PerVcore) -> Option<Runnable<Thread>> {
        if pv.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut q = pv.queue.lock();
        let t = q.pop_front();
        pv.len.store(q.len(), Ordering::Relaxed);
        t
    }

    /// Work stealing: two random victims, half of the longer; else one scan.
    fn steal(&self, me: usize, pv: &PerVcore) -> Option<Runnable<Thread>> {
        let n = active();
        if n < 2 || !CAN_STEAL.load(Ordering::Relaxed) {
            return None;
        }
        let (a, b) = (random_below(pv, n), random_below(pv, n));
        let len = |v: usize| if v == me { 0 } else { pvs()[v].len.load(Ordering::Relaxed) };
        let pick = if len(a) >= len(b) { a } else { b };
        if len(pick) > 0 {
            if let Some(t) = self.steal_from(pick, pv) {
                return Some(t);
            }
        }
        let start = random_below(pv, n);
        (0..n).map(|i| (start + i) % n).filter(|&v| len(v) > 0).find_map(|v| self.steal_from(v, pv))
    }

    /// Moves half (rounded up) of `victim`'s queue, from its tail, to `pv`'s; returns the
    /// first of them to run now.
    fn steal_from(&self, victim: usize, pv: &PerVcore) -> Option<Runnable<Thread>> {
        let vq = &pvs()[victim];
        let mut taken = {
            let mut q = vq.queue.lock();
            let keep = q.len() / 2;
            let taken = q.split_off(keep);
            vq.len.store(q.len(), Ordering::Relaxed);
            taken
        };
        let first = taken.pop_front()?;
        if !taken.is_empty() {
            let mut q = pv.queue.lock();
            q.append(&mut taken);
            pv.len.store(q.len(), Ordering::Relaxed);
        }
        Some(first)
    }

    /// Runs `t` on this vcore. Only `sched_entry` calls it, in vcore context.
    fn run(&self, id: usize, pv: &'static PerVcore, mut t: Runnable<Thread>) -> ! {
        t.last_vcore.store(id, Ordering::Relaxed);
        crate::signal::push_delivery(&mut t);
        preempt::arm(pv);
        // SAFETY: `run` is only called from `sched_entry`, in vcore context.
        unsafe { uthread::run_uthread_in_vcore_context(t) }
    }

    /// Whether the vcore of `pv` has anything to run (step 1 of the park handshake): its
    /// own queue under its lock, then the others when stealing (`idle::park` fenced before
    /// calling this). The look at other queues only spreads work: a thread pushed there
    /// is its own vcore's, which the pusher notified if it was parking.
    fn has_work(&self, pv: &PerVcore) -> bool {
        if !pv.queue.lock().is_empty() || !pv.paused.load(Ordering::Relaxed).is_null() {
            return true;
        }
        CAN_STEAL.load(Ordering::Relaxed) && (0..active()).any(|v| pvs()[v].len.load(Ordering::Relaxed) > 0)
    }

    /// What a vcore does just before it parks: its preemption alarm and its count go.
    fn before_sleep(&self, pv: &PerVcore) {
        preempt::disarm(pv);
        if pv.counted.swap(false, Ordering::AcqRel) {
            AWAKE.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// A vcore beyond the active count hands its queue to the active vcores and parks.
    fn retire(&self, id: usize, pv: &PerVcore) -> ! {
        let drained: Vec<Runnable<Thread>> = {
            let mut q = pv.queue.lock();
            pv.len.store(0, Ordering::Relaxed);
            take_paused(pv).into_iter().chain(q.drain(..)).collect()
        };
        for t in drained {
            self.push(id % active(), t, false);
        }
        // Nothing is pushed to a retired vcore. Woken (for its events), it starts afresh in
        // `vcore_entry`, which handles them and comes back here through `sched_entry`.
        idle::park(|| false, || self.before_sleep(pv));
        unreachable!("idle::park returns only when its validate finds work")
    }
}

/// The queue of a thread that has never run: with stealing on, the creator's vcore
/// (its data is warm there, and idle vcores steal to spread the work); else, and for
/// threads made from outside the vcores, round robin over the active vcores.
fn place_new(n: usize) -> usize {
    if CAN_STEAL.load(Ordering::Relaxed) {
        if let Some(v) = vcore::try_id().filter(|&v| v < n) {
            return v;
        }
    }
    NEXT_NEW.fetch_add(1, Ordering::Relaxed) % n
}

/// Empties `pv`'s paused slot; for its own vcore context.
fn take_paused(pv: &PerVcore) -> Option<Runnable<Thread>> {
    // A load and a store rather than a swap: only the owner touches the slot, and a
    // locked swap would cost a barrier on every yield.
    let p = NonNull::new(pv.paused.load(Ordering::Relaxed))?;
    pv.paused.store(core::ptr::null_mut(), Ordering::Relaxed);
    // SAFETY: `thread_paused` stored a Runnable given up with `into_raw`, and the slot
    // is emptied before it is taken back, once.
    Some(unsafe { Runnable::from_raw(p) })
}

fn random_below(pv: &PerVcore, n: usize) -> usize {
    let mut x = pv.rng.load(Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    pv.rng.store(x, Ordering::Relaxed);
    (x % n as u64) as usize
}

/// Wakes one parked active vcore other than `busy`, so it can steal.
fn wake_one_parked(busy: usize) {
    if let Some(v) = (0..active()).find(|&v| v != busy && idle::is_parking(v)) {
        idle::wake(v);
    }
}

impl Scheduler for Upsched {
    type Thread = Thread;

    fn sched_entry(&self) -> ! {
        // SAFETY: sched_entry runs in vcore context, on a vcore task.
        let id = unsafe { vcore::this_unchecked() }.id();
        let pv = &pvs()[id];
        // Usually already counted; a plain load avoids a locked write on every entry
        // (every yield passes here).
        if !pv.counted.load(Ordering::Relaxed) && !pv.counted.swap(true, Ordering::AcqRel) {
            AWAKE.fetch_add(1, Ordering::AcqRel);
        }
        if id >= active() {
            self.retire(id, pv);
        }
        loop {
            for _ in 0..IDLE_SPINS {
                if let Some(t) = self.next(id, pv) {
                    self.run(id, pv, t);
                }
                if events::events_pending() {
                    events::handle_events();
                }
                core::hint::spin_loop();
            }
            if CAN_REQUEST.load(Ordering::Relaxed) {
                idle::park(|| self.has_work(pv), || self.before_sleep(pv));
            }
        }
    }

    fn thread_runnable(&self, t: Runnable<Thread>) {
        let n = active();
        let target = match t.last_vcore.load(Ordering::Relaxed) {
            NO_VCORE => place_new(n),
            v => v % n,
        };
        // A plain load first: the flag is rarely set, and a swap is a locked write.
        let head = t.to_head.load(Ordering::Relaxed) && t.to_head.swap(false, Ordering::Relaxed);
        self.push(target, t, head);
    }

    fn thread_paused(&self, t: Runnable<Thread>) {
        let last = t.last_vcore.load(Ordering::Relaxed);
        // Every yield and preemption pauses the thread in the context of the vcore that
        // ran it; that vcore's `sched_entry` is next, so the thread waits in its slot.
        // The stack check makes sure the caller is that context (and not, say, an event
        // handler of another vcore), cheaper than a vcore lookup.
        if last < active() {
            let pv = &pvs()[last];
            let here = vcore::get(last).is_ok_and(|v| v.on_vcore_stack());
            if here && pv.paused.load(Ordering::Relaxed).is_null() {
                pv.paused.store(t.into_raw().as_ptr(), Ordering::Relaxed);
                return;
            }
        }
        self.thread_runnable(t)
    }

    fn thread_has_blocked(&self, t: &Rec, reason: BlockReason) {
        if reason == BlockReason::Syscall {
            t.to_head.store(true, Ordering::Relaxed);
        }
    }

    fn thread_blockon_sysc(&self, t: &Rec, _sysc: &Syscall) {
        t.to_head.store(true, Ordering::Relaxed);
    }

    fn thread_exited(&self, t: Exited<Thread>) {
        crate::thread::finish(t);
    }
}

// ---------------------------------------------------------------------------------------
// Knobs.

/// Whether the scheduler requests vcores as work appears and yields them when idle
/// (`true`, the default), or keeps every active vcore and polls when idle (`false`).
/// Switching it off requests every active vcore at once.
pub fn can_vcore_request(on: bool) {
    CAN_REQUEST.store(on, Ordering::Release);
    if !on && VCORES.get().is_some() {
        request_active();
    }
}

/// Whether idle vcores steal threads from other vcores' queues (default `true`). With it
/// off, a thread only ever runs on the vcore it was placed on (see the module docs).
pub fn can_vcore_steal(on: bool) {
    CAN_STEAL.store(on, Ordering::Release);
}

/// Places threads on vcores `0..n` only (default: every vcore, or `UPTHREAD_VCORES`).
/// Vcores beyond `n` hand their queued threads over and park when they next schedule.
///
/// # Errors
/// `EINVAL` if `n` is 0 or more than the process has (`parlib_vcore::max_vcores()`).
pub fn set_num_vcores(n: usize) -> Result<(), Errno> {
    let max = vcore::max_vcores();
    if n == 0 || (max > 0 && n > max) {
        return Err(Errno::INVAL);
    }
    if VCORES.get().is_none() {
        // Before init: remembered, and checked against the vcore count by `setup`.
        WANTED.store(n, Ordering::Release);
        return Ok(());
    }
    ACTIVE.store(n, Ordering::Release);
    if !CAN_REQUEST.load(Ordering::Relaxed) {
        request_active();
    }
    // Vcores beyond n hand their threads over when they next enter sched_entry.
    Ok(())
}

/// The number of vcores threads are placed on.
pub fn num_vcores() -> usize {
    active()
}

/// Requests every active vcore that is parked.
pub(crate) fn request_active() {
    for v in 0..active() {
        let _ = vcore::request_specific(v);
    }
}

/// Whether vcore requesting is on ([`can_vcore_request`]).
pub fn requesting() -> bool {
    CAN_REQUEST.load(Ordering::Relaxed)
}

/// Whether work stealing is on ([`can_vcore_steal`]).
pub fn stealing() -> bool {
    CAN_STEAL.load(Ordering::Relaxed)
}
