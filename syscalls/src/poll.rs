//! I/O readiness: one epoll instance per vcore, integrated with scheduling.
//!
//! A uthread whose call would block registers its descriptor in the epoll instance of
//! the vcore it runs on, then blocks (`wait_io`). Readiness is therefore reported on that
//! vcore, which makes the uthread runnable itself: no thread hop, no cross-vcore traffic.
//!
//! | vcore is ... | how readiness is noticed |
//! |---|---|
//! | parked | it sleeps in `epoll_wait` (the vcore park hook); readiness wakes it, and so does an eventfd write, which replaces the futex wake for ordinary requests and events |
//! | busy or spinning in `sched_entry` | `handle_events` polls with a zero timeout while it has waiters: on every entry while polls keep finding readiness, else at most once per [`POLL_INTERVAL_NS`] |
//!
//! Each descriptor is registered `EPOLLONESHOT` with the union of its waiters' interests,
//! and re-armed for the waiters that remain after each report.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::collections::HashMap;
use std::sync::OnceLock;

use parlib_sync::PdrSpinLock;
use parlib_uthread::{self as uthread, BlockReason, Uthread};
use parlib_vcore::{self as vcore, arch::syscall6, ParkHook, Vcore};

/// How often a busy vcore with waiters polls its epoll instance: a zero-timeout
/// `epoll_wait` costs about half a microsecond here, so polling on every entry into vcore
/// context (every switch) would dominate; 20 µs bounds the added latency well below a
/// network round trip.
pub const POLL_INTERVAL_NS: u64 = 20_000;

/// `epoll_event.data` of each vcore's eventfd (descriptors are never negative).
const WAKE_TAG: u64 = u64::MAX;

/// A uthread waiting for readiness; on its stack while it waits.
pub(crate) struct IoWaiter {
    uth: NonNull<Uthread>,
    events: u32,
    /// Set when the descriptor was closed under it.
    pub(crate) closed: core::sync::atomic::AtomicBool,
    /// Errno if the descriptor cannot be waited on (for example a regular file).
    pub(crate) error: AtomicI32,
}

struct Ptr(*const IoWaiter);
// SAFETY: waiters are only touched under their vcore's lock while they wait.
unsafe impl Send for Ptr {}

struct Waiting {
    by_fd: HashMap<i32, Vec<Ptr>>,
}

struct VcorePoll {
    epfd: i32,
    wakefd: i32,
    waiting: PdrSpinLock<Waiting>,
    count: AtomicUsize,
    last_poll: AtomicU64,
    /// Whether the last poll found readiness: then the next one need not wait.
    hot: core::sync::atomic::AtomicBool,
}

static POLL: OnceLock<Box<[VcorePoll]>> = OnceLock::new();

pub(crate) fn init() -> std::io::Result<()> {
    if POLL.get().is_some() {
        return Ok(());
    }
    let mut v = Vec::new();
    for _ in 0..vcore::max_vcores() {
        // SAFETY: plain descriptor-creating calls, results checked.
        let (epfd, wakefd) = unsafe {
            (
                libc::epoll_create1(libc::EPOLL_CLOEXEC),
                libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK),
            )
        };
        if epfd < 0 || wakefd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: WAKE_TAG };
        // SAFETY: valid descriptors and event.
        if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, wakefd, &mut ev) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        v.push(VcorePoll {
            epfd,
            wakefd,
            waiting: PdrSpinLock::new(Waiting { by_fd: HashMap::new() }),
            count: AtomicUsize::new(0),
            last_poll: AtomicU64::new(0),
            hot: core::sync::atomic::AtomicBool::new(false),
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
/// `EBADF`), or `EBADF` if it was closed while waiting.
pub(crate) fn wait_io(fd: i32, events: u32) -> Result<(), i32> {
    let uth = uthread::current().expect("wait_io on a uthread");
    let w = IoWaiter {
        uth,
        events,
        closed: core::sync::atomic::AtomicBool::new(false),
        error: AtomicI32::new(0),
    };
    let wp = Ptr(&w);
    let waddr = &w as *const IoWaiter as usize;
    uthread::yield_with(true, move |uth| {
        uthread::has_blocked(uth, BlockReason::Syscall);
        let id = vcore::id();
        let pv = &polls()[id];
        let mut waiting = pv.waiting.lock();
        let list = waiting.by_fd.entry(fd).or_default();
        let first = list.is_empty();
        list.push(wp);
        // SAFETY: every pointer in the list is a live waiter (they leave it before waking).
        let interest = list.iter().fold(0, |acc, p| acc | unsafe { (*p.0).events });
        if let Err(e) = arm(pv.epfd, fd, interest, first) {
            let list = waiting.by_fd.get_mut(&fd).expect("just inserted");
            list.pop();
            if list.is_empty() {
                waiting.by_fd.remove(&fd);
            }
            drop(waiting);
            // SAFETY: the waiter lives on the blocked uthread's stack.
            unsafe { (*(waddr as *const IoWaiter)).error.store(e, Ordering::Relaxed) };
            uthread::runnable(uth);
            return;
        }
        pv.count.fetch_add(1, Ordering::Relaxed);
    });
    if w.closed.load(Ordering::Acquire) {
        return Err(libc::EBADF);
    }
    match w.error.load(Ordering::Relaxed) {
        0 => Ok(()),
        e => Err(e),
    }
}

fn arm(epfd: i32, fd: i32, interest: u32, first: bool) -> Result<(), i32> {
    let mut ev = libc::epoll_event { events: interest | libc::EPOLLONESHOT as u32, u64: fd as u64 };
    let op = if first { libc::EPOLL_CTL_ADD } else { libc::EPOLL_CTL_MOD };
    // SAFETY: raw epoll_ctl (no errno) with a valid event.
    let mut r = unsafe {
        syscall6(
            libc::SYS_epoll_ctl as usize,
            epfd as usize,
            op as usize,
            fd as usize,
            &mut ev as *mut _ as usize,
            0,
            0,
        )
    };
    if r == -(libc::EEXIST as isize) || r == -(libc::ENOENT as isize) {
        let op = if r == -(libc::EEXIST as isize) { libc::EPOLL_CTL_MOD } else { libc::EPOLL_CTL_ADD };
        // SAFETY: as above.
        r = unsafe {
            syscall6(
                libc::SYS_epoll_ctl as usize,
                epfd as usize,
                op as usize,
                fd as usize,
                &mut ev as *mut _ as usize,
                0,
                0,
            )
        };
    }
    if r < 0 {
        Err(-r as i32)
    } else {
        Ok(())
    }
}

/// Polls vcore `id`'s epoll instance with `timeout_ms` and wakes the waiters of every
/// descriptor that reported. Returns how many uthreads it woke, and whether the eventfd
/// fired. In vcore context on vcore `id`.
fn poll(id: usize, timeout_ms: i32) -> (usize, bool) {
    let Some(pv) = polls().get(id) else { return (0, false) };
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 64];
    // SAFETY: raw epoll_wait into a local array of the size we pass.
    let n = unsafe {
        syscall6(
            libc::SYS_epoll_wait as usize,
            pv.epfd as usize,
            evs.as_mut_ptr() as usize,
            evs.len(),
            timeout_ms as isize as usize,
            0,
            0,
        )
    };
    pv.last_poll.store(parlib_sync::now_ns(), Ordering::Relaxed);
    let mut woken = 0;
    let mut wake = false;
    for ev in evs.iter().take(n.max(0) as usize) {
        let (data, revents) = (ev.u64, ev.events);
        if data == WAKE_TAG {
            let mut buf = 0u64;
            // SAFETY: reading 8 bytes from our own non-blocking eventfd.
            unsafe { libc::read(pv.wakefd, &mut buf as *mut u64 as *mut libc::c_void, 8) };
            wake = true;
            continue;
        }
        woken += report(pv, data as i32, revents);
    }
    pv.hot.store(woken > 0, Ordering::Relaxed);
    (woken, wake)
}

/// Wakes the waiters of `fd` whose interest `revents` satisfies (all of them on an error
/// or hang-up) and re-arms the descriptor for the rest.
fn report(pv: &VcorePoll, fd: i32, revents: u32) -> usize {
    let all = revents & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
    let mut ready = Vec::new();
    {
        let mut waiting = pv.waiting.lock();
        let Some(list) = waiting.by_fd.get_mut(&fd) else { return 0 };
        // SAFETY: every pointer in the list is a live waiter.
        list.retain(|p| {
            let hit = all || unsafe { (*p.0).events } & revents != 0;
            if hit {
                ready.push(unsafe { (*p.0).uth });
            }
            !hit
        });
        if list.is_empty() {
            waiting.by_fd.remove(&fd);
            // SAFETY: raw epoll_ctl DEL; a stale descriptor is fine (ENOENT/EBADF).
            unsafe {
                syscall6(
                    libc::SYS_epoll_ctl as usize,
                    pv.epfd as usize,
                    libc::EPOLL_CTL_DEL as usize,
                    fd as usize,
                    0,
                    0,
                    0,
                )
            };
        } else {
            // SAFETY: as above.
            let interest = list.iter().fold(0, |acc, p| acc | unsafe { (*p.0).events });
            let _ = arm(pv.epfd, fd, interest, false);
        }
    }
    pv.count.fetch_sub(ready.len(), Ordering::Relaxed);
    let n = ready.len();
    for u in ready {
        uthread::runnable(u);
    }
    n
}

/// The busy poll, called by `handle_events` on every entry into vcore context.
fn poll_busy(id: usize) -> usize {
    if !poll_pending(id) {
        return 0;
    }
    poll(id, 0).0
}

fn poll_pending(id: usize) -> bool {
    let Some(pv) = polls().get(id) else { return false };
    pv.count.load(Ordering::Relaxed) > 0
        && (pv.hot.load(Ordering::Relaxed)
            || parlib_sync::now_ns().saturating_sub(pv.last_poll.load(Ordering::Relaxed)) >= POLL_INTERVAL_NS)
}

/// The park hook's sleep: `epoll_wait` with no timeout. Readiness wakes the uthreads here.
fn park_wait(vc: &Vcore) -> bool {
    let (woken, _) = poll(vc.id(), -1);
    woken > 0
}

/// The park hook's wake: a write to the parked vcore's eventfd.
fn park_wake(vc: &Vcore) {
    if let Some(pv) = polls().get(vc.id()) {
        let one = 1u64;
        // SAFETY: an 8-byte write to our own eventfd; raw, so errno is untouched.
        unsafe {
            syscall6(libc::SYS_write as usize, pv.wakefd as usize, &one as *const u64 as usize, 8, 0, 0, 0)
        };
    }
}

/// Wakes every uthread waiting on `fd`, on every vcore, with "closed" (the close wrapper
/// calls this before closing, so no waiter hangs on a descriptor that is gone).
pub(crate) fn wake_closed(fd: i32) {
    for pv in polls() {
        let taken = {
            let mut waiting = pv.waiting.lock();
            match waiting.by_fd.remove(&fd) {
                Some(list) => {
                    // SAFETY: raw epoll_ctl DEL on a descriptor that is still open.
                    unsafe {
                        syscall6(
                            libc::SYS_epoll_ctl as usize,
                            pv.epfd as usize,
                            libc::EPOLL_CTL_DEL as usize,
                            fd as usize,
                            0,
                            0,
                            0,
                        )
                    };
                    list
                }
                None => continue,
            }
        };
        pv.count.fetch_sub(taken.len(), Ordering::Relaxed);
        for p in taken {
            // SAFETY: the waiter is alive until it is woken.
            let uth = unsafe {
                (*p.0).closed.store(true, Ordering::Release);
                (*p.0).uth
            };
            uthread::runnable(uth);
        }
    }
}
