//! I/O readiness: one epoll instance per vcore, integrated with scheduling.
//!
//! A uthread whose call would block waits on its descriptor (`wait_io`) in the epoll
//! instance of the vcore it runs on, so readiness is reported on that vcore, which makes
//! the uthread runnable itself: no thread hop, no cross-vcore traffic.
//!
//! | vcore is ... | how readiness is noticed |
//! |---|---|
//! | parked | it sleeps in `epoll_wait` (the vcore park hook); readiness wakes it (the events are stashed, the vcore requests itself, and its `handle_events` reports them in vcore context), and so does an eventfd write, which replaces the futex wake for ordinary requests and events |
//! | spinning in `sched_entry` | its idle loop asks `events_pending`, which is true while it has waiters; the `handle_events` that follows polls with a zero timeout |
//! | busy | `handle_events` polls on entries into vcore context while polls keep reporting, else at most once per [`POLL_INTERVAL_NS`] |
//!
//! # Registration
//!
//! A descriptor is registered once, edge-triggered, for both directions, on the vcore
//! where a uthread first waits on it, and stays registered until the close wrapper
//! removes it: steady-state waits cost no `epoll_ctl`. If a uthread waits on it from
//! another vcore, the registration moves there (under `REG_LOCK`, with its waiters).
//! Edge-triggered reports come once per transition, so readiness that arrives while
//! nobody waits for it is remembered in the descriptor's `ready` bits, and the next
//! waiter for it returns at once and retries its call.
//!
//! # Locks
//!
//! `REG_LOCK` (registration changes: first wait, move, close), then at most one vcore's
//! `waiting` lock at a time. Reports take only their vcore's lock. Both are PDR.
//!
//! # Interruptible waits
//!
//! A wait can be ended by `parlib_uthread::interrupt_wait` (cancellation, uthread-
//! directed signals; protocol in `parlib_uthread::interrupt`). Whoever takes a waiter out
//! of its vcore's list wakes it, and a waiter never put in a list is woken by `enqueue`:
//!
//! 1. The yield callback registers the interrupt (after `blockon_sysc`, so the uthread is
//!    `Blocked`), then runs `enqueue`.
//! 2. The interrupt function takes `REG_LOCK` (registrations cannot move) and the lock
//!    of the vcore the descriptor is registered on. If the waiter is in that list, it
//!    takes it out, marks it `INTERRUPTED` and wakes it. If not, and the waiter is still
//!    `WAITING`, it marks it `INTERRUPTED` and leaves the wake-up to `enqueue`, which
//!    has not queued it yet: `enqueue` checks the mark under the same vcore lock (its
//!    vcore is the registered one whenever it holds that lock, and registrations only
//!    change under `REG_LOCK`) and wakes the uthread instead of queueing it. A waiter
//!    already taken out by a report, a close or a failed move is `WOKEN`: the interrupt
//!    does nothing.
//! 3. The woken uthread withdraws its registration and, if it was interrupted, the call
//!    consults the interrupt policy ([`set_interrupt_policy`](crate::set_interrupt_policy)):
//!    restart, or fail with `EINTR`.

use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::collections::HashMap;
use std::sync::OnceLock;

use parlib_sync::PdrSpinLock;
use parlib_uthread::{self as uthread, Blocked, Syscall, Uthread, WaitInterrupt};
use parlib_vcore::{self as vcore, ParkHook, Vcore};

use crate::fdkind::MAX_CACHED_FD;
use crate::offload::block_on_sysc;
use crate::raw::sys;

/// How often a busy vcore with waiters polls its epoll instance when the last poll found
/// nothing: a zero-timeout `epoll_wait` costs about half a microsecond here, so polling on
/// every entry into vcore context (every switch) would dominate; 20 µs bounds the added
/// latency well below a network round trip.
pub const POLL_INTERVAL_NS: u64 = 20_000;

/// What a registration asks for: both directions, hang-ups, edge-triggered.
const INTEREST: u32 = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
/// Conditions that concern every waiter and stay true. (`EPOLLRDHUP`, the peer's
/// shutdown of its writing side, concerns readers only, and comes with `EPOLLIN`.)
const STICKY: u32 = (libc::EPOLLERR | libc::EPOLLHUP) as u32;

/// [`IoWaiter::state`]: waiting, taken out by a report / close / failed move, or ended by
/// an interrupt (module docs).
const WAITING: u8 = 0;
const WOKEN: u8 = 1;
const INTERRUPTED: u8 = 2;

/// A uthread waiting for readiness; on its stack while it waits.
pub(crate) struct IoWaiter {
    /// The waiting uthread; whoever takes the waiter out of its wait wakes it ([`wake`]).
    uth: NonNull<Uthread>,
    fd: i32,
    events: u32,
    /// `WAITING`, `WOKEN` or `INTERRUPTED`; changed under the vcore lock of its list (or
    /// `REG_LOCK`), read by the woken waiter.
    state: AtomicU8,
    /// Set when the descriptor was closed under it.
    pub(crate) closed: core::sync::atomic::AtomicBool,
    /// Errno if the descriptor cannot be waited on (for example a regular file).
    pub(crate) error: AtomicI32,
}

struct Ptr(*const IoWaiter);
// SAFETY: waiters are only touched under their vcore's lock while they wait.
unsafe impl Send for Ptr {}

#[derive(Default)]
struct FdState {
    waiters: Vec<Ptr>,
    /// Readiness reported while nobody waited for it (edge-triggered: not reported again).
    ready: u32,
}

struct Waiting {
    by_fd: HashMap<i32, FdState>,
}

struct VcorePoll {
    epfd: i32,
    wakefd: i32,
    waiting: PdrSpinLock<Waiting>,
    count: AtomicUsize,
    last_poll: AtomicU64,
    /// Whether the last poll found readiness: then the next one need not wait.
    hot: AtomicBool,
    /// Set when an idle scheduler asks `events_pending`: its next poll is not throttled.
    idle_asked: AtomicBool,
    /// Readiness the vcore's park hook collected, reported on its next `handle_events`.
    stash: StashCell,
    /// Whether `stash` has anything (atomic, so reading it needs no single-owner
    /// argument: `poll_pending` reads it).
    stashed: AtomicBool,
}

/// Events collected by [`park_wait`].
struct Stash {
    evs: [libc::epoll_event; EVENTS_PER_POLL],
    len: usize,
}

impl Default for Stash {
    fn default() -> Stash {
        Stash { evs: [EMPTY_EVENT; EVENTS_PER_POLL], len: 0 }
    }
}

/// A vcore's [`Stash`], without a lock: only that vcore's own task touches it, in vcore
/// context, first parked ([`park_wait`], the park hook, which runs on the parked vcore),
/// then running ([`drain_stash`], reached only through the poller that `handle_events`
/// calls with its own vcore's id). One task runs one of the two at a time: vcore context
/// is never interrupted by code that polls (notifications do not interrupt it, signal
/// handlers only send events), and neither function calls the other.
struct StashCell(UnsafeCell<Stash>);

// SAFETY: see `StashCell`: one task, one reference at a time.
unsafe impl Sync for StashCell {}

static POLL: OnceLock<Box<[VcorePoll]>> = OnceLock::new();

/// Serialises registration changes (see the module docs).
static REG_LOCK: PdrSpinLock<()> = PdrSpinLock::new(());
/// Where each descriptor is registered: vcore id + 1, or 0. Larger descriptors use
/// `REG_LARGE`.
static REG_SMALL: [AtomicU32; MAX_CACHED_FD] = [const { AtomicU32::new(0) }; MAX_CACHED_FD];
static REG_LARGE: PdrSpinLock<Option<HashMap<i32, u32>>> = PdrSpinLock::new(None);

fn reg_get(fd: i32) -> u32 {
    match usize::try_from(fd).ok().and_then(|i| REG_SMALL.get(i)) {
        Some(r) => r.load(Ordering::Acquire),
        None => REG_LARGE.lock().as_ref().and_then(|m| m.get(&fd).copied()).unwrap_or(0),
    }
}

fn reg_set(fd: i32, v: u32) {
    match usize::try_from(fd).ok().and_then(|i| REG_SMALL.get(i)) {
        Some(r) => r.store(v, Ordering::Release),
        None => {
            let mut m = REG_LARGE.lock();
            let m = m.get_or_insert_with(HashMap::new);
            if v == 0 {
                m.remove(&fd);
            } else {
                m.insert(fd, v);
            }
        }
    }
}

pub(crate) fn init() -> std::io::Result<()> {
    if POLL.get().is_some() {
        return Ok(());
    }
    let mut v = Vec::new();
    for _ in 0..vcore::max_vcores() {
        // Raw calls (see the crate docs: nothing here may reach libc's wrappers).
        let epfd = sys(libc::SYS_epoll_create1, [libc::EPOLL_CLOEXEC as usize, 0, 0, 0, 0, 0])
            .map_err(std::io::Error::from_raw_os_error)? as i32;
        let wakefd =
            sys(libc::SYS_eventfd2, [0, (libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) as usize, 0, 0, 0, 0])
                .map_err(std::io::Error::from_raw_os_error)? as i32;
        // Registered under its number like any descriptor: while it is open no other
        // descriptor can have that number.
        epoll_ctl(epfd, libc::EPOLL_CTL_ADD, wakefd, libc::EPOLLIN as u32)
            .map_err(std::io::Error::from_raw_os_error)?;
        v.push(VcorePoll {
            epfd,
            wakefd,
            waiting: PdrSpinLock::new(Waiting { by_fd: HashMap::new() }),
            count: AtomicUsize::new(0),
            last_poll: AtomicU64::new(0),
            hot: AtomicBool::new(false),
            idle_asked: AtomicBool::new(false),
            stash: StashCell(UnsafeCell::new(Stash::default())),
            stashed: AtomicBool::new(false),
        });
    }
    let _ = POLL.set(v.into_boxed_slice());
    vcore::set_park_hook(ParkHook { wait: park_wait, wake: park_wake });
    parlib_events::set_poller(parlib_events::Poller { poll: poll_busy, pending: poll_pending });
    Ok(())
}

fn polls() -> &'static [VcorePoll] {
    POLL.get().map(|p| &p[..]).unwrap_or(&[])
}

/// Blocks the calling uthread until `fd` reports one of `events` (or an error or hang-up),
/// or is closed through this layer. The caller then retries its call.
///
/// # Errors
/// The errno of `epoll_ctl` if `fd` cannot be waited on (`EPERM` for regular files,
/// `EBADF`), `EBADF` if it was closed while waiting, or `EINTR` if
/// `parlib_uthread::interrupt_wait` ended the wait (module docs).
///
/// `sysc` describes the call that would block; the scheduler sees it while the uthread
/// waits (`thread_blockon_sysc`).
pub(crate) fn wait_io(fd: i32, events: u32, sysc: &mut Syscall) -> Result<(), i32> {
    let uth = uthread::current().expect("wait_io on a uthread");
    let w = IoWaiter {
        uth,
        fd,
        events,
        state: AtomicU8::new(WAITING),
        closed: AtomicBool::new(false),
        error: AtomicI32::new(0),
    };
    let waddr = &w as *const IoWaiter as usize;
    let reg = WaitInterrupt::new(interrupt_io, waddr);
    let regp = &reg as *const WaitInterrupt as usize;
    let armed = AtomicBool::new(false);
    let armedp = &armed as *const AtomicBool as usize;
    let sysc = sysc as *mut Syscall as usize;
    uthread::yield_with(move |me| {
        // SAFETY: `sysc` is the caller's record, on this uthread's stack.
        let me = unsafe { block_on_sysc(me, sysc) }.into_raw();
        // SAFETY: the waiter, its registration and `armed` live on the blocked uthread's
        // stack until it is woken; `reg` stays there until `disarm` below.
        let w = unsafe { &*(waddr as *const IoWaiter) };
        if !unsafe { uthread::interrupt::arm(me, regp as *const WaitInterrupt) } {
            w.state.store(INTERRUPTED, Ordering::Relaxed); // an interrupt was pending
                                                           // SAFETY: not yet published anywhere: the wake-up is ours.
            unsafe { wake(me) };
            return;
        }
        // SAFETY: as above.
        unsafe { &*(armedp as *const AtomicBool) }.store(true, Ordering::Relaxed);
        if let Err(e) = enqueue(vcore::id(), fd, w) {
            w.error.store(e, Ordering::Relaxed);
            // SAFETY: a failed enqueue published the waiter nowhere.
            unsafe { wake(me) };
        }
    });
    if armed.load(Ordering::Relaxed) {
        // SAFETY: the yield callback registered `reg` for this uthread.
        unsafe { uthread::interrupt::disarm(uth, &reg) };
    }
    if w.state.load(Ordering::Acquire) == INTERRUPTED {
        return Err(libc::EINTR);
    }
    if w.closed.load(Ordering::Acquire) {
        return Err(libc::EBADF);
    }
    match w.error.load(Ordering::Relaxed) {
        0 => Ok(()),
        e => Err(e),
    }
}

/// Wakes the blocked uthread of a waiter taken out of its wait.
///
/// # Safety
/// The caller took the waiter out of its wait (unlinked it, or settled its state, under
/// the lock that decides the race), so the wake-up is its alone; the uthread blocked
/// before its waiter was published.
unsafe fn wake(uth: NonNull<Uthread>) {
    // SAFETY: the caller's contract.
    uthread::runnable(unsafe { Blocked::from_raw(uth) });
}

/// The interrupt function of [`wait_io`] (module docs, step 2).
fn interrupt_io(arg: usize) -> bool {
    // SAFETY: the registration's argument: the waiter, alive until its `disarm`.
    let w = unsafe { &*(arg as *const IoWaiter) };
    let _g = REG_LOCK.lock();
    let r = reg_get(w.fd);
    // Hold the registered vcore's lock (if any) across the check and the mark, so that
    // `enqueue` either queued the waiter before or sees the mark after (module docs).
    let held = (r != 0).then(|| {
        let pv = &polls()[r as usize - 1];
        (pv, pv.waiting.lock())
    });
    if let Some((pv, mut waiting)) = held {
        let st = waiting.by_fd.get_mut(&w.fd);
        if let Some(i) = st.as_ref().and_then(|st| st.waiters.iter().position(|p| core::ptr::eq(p.0, w))) {
            st.expect("found in it").waiters.remove(i);
            pv.count.fetch_sub(1, Ordering::Relaxed);
            w.state.store(INTERRUPTED, Ordering::Release);
            drop(waiting);
            // SAFETY: unlinked and marked by us under the vcore lock.
            unsafe { wake(w.uth) };
            return true;
        }
        // Not queued: taken out already (WOKEN), or not yet queued (`enqueue` sees the mark).
        return w.state.compare_exchange(WAITING, INTERRUPTED, Ordering::AcqRel, Ordering::Acquire).is_ok();
    }
    w.state.compare_exchange(WAITING, INTERRUPTED, Ordering::AcqRel, Ordering::Acquire).is_ok()
}

/// In vcore context on vcore `id`: makes sure `fd` is registered here, then either
/// returns at once (readiness already remembered, or the wait already interrupted: the
/// uthread is woken) or queues the waiter.
fn enqueue(id: usize, fd: i32, w: &IoWaiter) -> Result<(), i32> {
    let pv = &polls()[id];
    loop {
        if reg_get(fd) != id as u32 + 1 {
            register_here(id, fd)?;
        }
        let mut waiting = pv.waiting.lock();
        if reg_get(fd) != id as u32 + 1 {
            continue; // moved away or closed meanwhile: register again
        }
        if w.state.load(Ordering::Acquire) == INTERRUPTED {
            drop(waiting);
            // SAFETY: an interrupt that found the waiter unqueued left its wake-up to us.
            unsafe { wake(w.uth) };
            return Ok(());
        }
        let st = waiting.by_fd.entry(fd).or_default();
        if st.ready & (w.events | STICKY) != 0 {
            st.ready &= !w.events | STICKY;
            w.state.store(WOKEN, Ordering::Release);
            drop(waiting);
            // SAFETY: never queued, and marked WOKEN by us under the vcore lock.
            unsafe { wake(w.uth) };
            return Ok(());
        }
        st.waiters.push(Ptr(w));
        pv.count.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
}

/// Registers `fd` on vcore `id`'s epoll instance, moving it (with its waiters and
/// remembered readiness) from wherever it was.
fn register_here(id: usize, fd: i32) -> Result<(), i32> {
    let _g = REG_LOCK.lock();
    let here = id as u32 + 1;
    let was = reg_get(fd);
    if was == here {
        return Ok(());
    }
    let mut moved = FdState::default();
    if was != 0 {
        let old = &polls()[was as usize - 1];
        let mut waiting = old.waiting.lock();
        if let Some(st) = waiting.by_fd.remove(&fd) {
            old.count.fetch_sub(st.waiters.len(), Ordering::Relaxed);
            moved = st;
        }
        epoll_ctl(old.epfd, libc::EPOLL_CTL_DEL, fd, 0).ok();
        reg_set(fd, 0);
    }
    let pv = &polls()[id];
    let mut waiting = pv.waiting.lock();
    let r = match epoll_ctl(pv.epfd, libc::EPOLL_CTL_ADD, fd, INTEREST) {
        Err(libc::EEXIST) => epoll_ctl(pv.epfd, libc::EPOLL_CTL_MOD, fd, INTEREST),
        r => r,
    };
    if let Err(e) = r {
        drop(waiting);
        for p in moved.waiters {
            // SAFETY: moved waiters are alive until woken; they retry and meet the error.
            // Marked under REG_LOCK, which an interrupt takes too.
            let uth = unsafe {
                (*p.0).state.store(WOKEN, Ordering::Release);
                (*p.0).uth
            };
            // SAFETY: taken out of the moved list and marked by us under REG_LOCK.
            unsafe { wake(uth) };
        }
        return Err(e);
    }
    pv.count.fetch_add(moved.waiters.len(), Ordering::Relaxed);
    waiting.by_fd.insert(fd, moved);
    reg_set(fd, here);
    Ok(())
}

/// Raw `epoll_ctl` of `fd` on `epfd` for `events`; the event's data is `fd` itself.
fn epoll_ctl(epfd: i32, op: i32, fd: i32, events: u32) -> Result<(), i32> {
    let mut ev = libc::epoll_event { events, u64: fd as u64 };
    sys(libc::SYS_epoll_ctl, [epfd as usize, op as usize, fd as usize, &mut ev as *mut _ as usize, 0, 0])
        .map(drop)
}

/// Polls vcore `id`'s epoll instance without waiting and wakes the waiters of every
/// descriptor that reported (first those its park left in the stash). Returns how many
/// uthreads it woke. In vcore context on vcore `id`, with the vcore running.
fn poll(id: usize) -> usize {
    let Some(pv) = polls().get(id) else { return 0 };
    let mut woken = if pv.stashed.swap(false, Ordering::Relaxed) { drain_stash(pv) } else { 0 };
    let mut evs = [EMPTY_EVENT; EVENTS_PER_POLL];
    let n = epoll_wait(pv, &mut evs, 0);
    pv.last_poll.store(parlib_sync::now_ns(), Ordering::Relaxed);
    for ev in &evs[..n] {
        if ev.u64 == pv.wakefd as u64 {
            drain_wakefd(pv);
        } else {
            woken += report(pv, ev.u64 as i32, ev.events);
        }
    }
    pv.hot.store(n > 0, Ordering::Relaxed);
    woken
}

const EMPTY_EVENT: libc::epoll_event = libc::epoll_event { events: 0, u64: 0 };

/// Events taken per `epoll_wait`: as many as fit comfortably on the vcore stack (12
/// bytes each). More ready descriptors are not lost, edge-triggered ones included: the
/// kernel takes an entry off the instance's ready list only when it reports it (and
/// splices the rest back: `ep_send_events` in `fs/eventpoll.c`), so the next poll or
/// park reports them.
const EVENTS_PER_POLL: usize = 64;

/// Raw `epoll_wait` on `pv`'s instance into `evs`; the number of events (0 on error).
fn epoll_wait(pv: &VcorePoll, evs: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
    let r = sys(
        libc::SYS_epoll_wait,
        [pv.epfd as usize, evs.as_mut_ptr() as usize, evs.len(), timeout_ms as isize as usize, 0, 0],
    );
    r.unwrap_or(0).min(evs.len())
}

/// Empties `pv`'s eventfd (it only says "wake up"; the count does not matter).
fn drain_wakefd(pv: &VcorePoll) {
    let mut buf = 0u64;
    let _ = sys(libc::SYS_read, [pv.wakefd as usize, &mut buf as *mut u64 as usize, 8, 0, 0, 0]);
}

/// Reports what the vcore's last park collected (see [`park_wait`]).
fn drain_stash(pv: &VcorePoll) -> usize {
    // SAFETY: on the vcore's own task, in vcore context (`StashCell`); the reference
    // ends here, before any report.
    let stash = core::mem::take(unsafe { &mut *pv.stash.0.get() });
    let mut woken = 0;
    for ev in &stash.evs[..stash.len] {
        woken += report(pv, ev.u64 as i32, ev.events);
    }
    woken
}

/// Wakes the waiters of `fd` whose interest `revents` satisfies (all of them on an error
/// or hang-up) and remembers what nobody waited for.
fn report(pv: &VcorePoll, fd: i32, revents: u32) -> usize {
    let sticky = revents & STICKY;
    let mut ready = Vec::new();
    {
        let mut waiting = pv.waiting.lock();
        let Some(st) = waiting.by_fd.get_mut(&fd) else { return 0 };
        let mut wanted = 0;
        st.waiters.retain(|p| {
            // SAFETY: a waiter stays alive while it is in the list.
            let ev = unsafe { (*p.0).events };
            let hit = sticky != 0 || ev & revents != 0;
            if hit {
                wanted |= ev;
                // SAFETY: as above; marked under the vcore lock, which an interrupt takes.
                ready.push(unsafe {
                    (*p.0).state.store(WOKEN, Ordering::Release);
                    (*p.0).uth
                });
            }
            !hit
        });
        st.ready |= (revents & !wanted) | sticky;
    }
    pv.count.fetch_sub(ready.len(), Ordering::Relaxed);
    let n = ready.len();
    for u in ready {
        // SAFETY: taken out and marked WOKEN by us under the vcore lock.
        unsafe { wake(u) };
    }
    n
}

/// The poll `handle_events` makes on every entry into vcore context. Throttled (see
/// [`POLL_INTERVAL_NS`]) unless the last poll found readiness, an idle scheduler asked,
/// or the vcore's park left readiness in the stash.
fn poll_busy(id: usize) -> usize {
    let Some(pv) = polls().get(id) else { return 0 };
    let stashed = pv.stashed.load(Ordering::Relaxed);
    if pv.count.load(Ordering::Relaxed) == 0 && !stashed {
        return 0;
    }
    let due = stashed
        || pv.idle_asked.swap(false, Ordering::Relaxed)
        || pv.hot.load(Ordering::Relaxed)
        || parlib_sync::now_ns().saturating_sub(pv.last_poll.load(Ordering::Relaxed)) >= POLL_INTERVAL_NS;
    if !due {
        return 0;
    }
    poll(id)
}

/// `events_pending` for an idle scheduler: any waiter makes a poll worth it.
fn poll_pending(id: usize) -> bool {
    let Some(pv) = polls().get(id) else { return false };
    let waiting = pv.count.load(Ordering::Relaxed) > 0 || pv.stashed.load(Ordering::Relaxed);
    if waiting {
        pv.idle_asked.store(true, Ordering::Relaxed);
    }
    waiting
}

/// The park hook's sleep: `epoll_wait` with no timeout, on the parked vcore.
///
/// It does not wake anyone itself: the vcore is parked (its scheduler counts it as
/// such), so no scheduler callback may run here. Readiness is kept in the vcore's stash
/// (edge-triggered reports are not repeated, so they must not be dropped) and the hook
/// returns true: the vcore requests itself and enters `vcore_entry`, whose
/// `handle_events` reports the stash through [`poll_busy`], in vcore context, with the
/// vcore running, before its scheduler decides anything. So the stash is empty whenever
/// the vcore parks, and a whole `epoll_wait` fits in it; what does not fit stays in the
/// kernel (see [`EVENTS_PER_POLL`]).
fn park_wait(vc: &Vcore) -> bool {
    let Some(pv) = polls().get(vc.id()) else { return false };
    // SAFETY: on the parked vcore's own task, in vcore context (`StashCell`).
    let stash = unsafe { &mut *pv.stash.0.get() };
    debug_assert_eq!(stash.len, 0, "a vcore parked before reporting its stash");
    let n = epoll_wait(pv, &mut stash.evs, -1);
    // Keep the descriptors' events; the eventfd's only said "wake up".
    let mut kept = 0;
    for i in 0..n {
        let ev = stash.evs[i];
        if ev.u64 == pv.wakefd as u64 {
            drain_wakefd(pv);
        } else {
            stash.evs[kept] = ev;
            kept += 1;
        }
    }
    stash.len = kept;
    if kept > 0 {
        pv.stashed.store(true, Ordering::Relaxed);
    }
    kept > 0
}

/// The park hook's wake: a write to the parked vcore's eventfd.
fn park_wake(vc: &Vcore) {
    if let Some(pv) = polls().get(vc.id()) {
        let one = 1u64;
        let _ = sys(libc::SYS_write, [pv.wakefd as usize, &one as *const u64 as usize, 8, 0, 0, 0]);
    }
}

/// Forgets `fd`'s registration and wakes every uthread waiting on it with "closed" (the
/// close wrapper calls this before closing, so no waiter hangs on a descriptor that is
/// gone; descriptor-creating wrappers call it for the new number, in case an old
/// registration of that number outlived a close that bypassed us).
pub(crate) fn wake_closed(fd: i32) {
    if polls().is_empty() {
        return;
    }
    let _g = REG_LOCK.lock();
    let r = reg_get(fd);
    if r == 0 {
        return;
    }
    let pv = &polls()[r as usize - 1];
    let taken = {
        let mut waiting = pv.waiting.lock();
        let st = waiting.by_fd.remove(&fd).unwrap_or_default();
        epoll_ctl(pv.epfd, libc::EPOLL_CTL_DEL, fd, 0).ok();
        reg_set(fd, 0);
        st.waiters
    };
    pv.count.fetch_sub(taken.len(), Ordering::Relaxed);
    for p in taken {
        // SAFETY: the waiter is alive until it is woken.
        let uth = unsafe {
            (*p.0).closed.store(true, Ordering::Release);
            (*p.0).state.store(WOKEN, Ordering::Release); // taken out under REG_LOCK
            (*p.0).uth
        };
        // SAFETY: taken out and marked WOKEN by us under REG_LOCK.
        unsafe { wake(uth) };
    }
}
