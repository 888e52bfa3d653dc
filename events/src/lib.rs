//! # parlib-events: per-vcore event queues and notifications
//!
//! The third layer of parlib-rs (`DESIGN.md` §5): producer/consumer with active
//! messages. Each vcore has one queue. A message is a small inline payload
//! ([`EventMsg`]) plus an [`EventType`]; a handler table maps types to functions.
//! [`send_event`] queues a message for a vcore and *notifies* it
//! ([`parlib_vcore::notify`]): the vcore enters its entry function (`vcore_entry`), whose
//! first step is [`handle_events`], which runs the handler of every queued message.
//!
//! ## Where it sits
//!
//! ```text
//!   alarms, syscalls, schedulers   send and handle events (EV_ALARM, EV_SYSCALL, ...)
//!   parlib-uthread                 its vcore_entry calls handle_events first
//!   parlib-events                  this crate: queues, handler table, send / handle
//!   parlib-vcore                   notifications (futex wake or SIGUSR1), interruption
//! ```
//!
//! ## Sending never allocates, and never loses a message
//!
//! Queues are lock-free rings allocated once by [`init`]. `send_event` works from any
//! thread, vcore or not, and from signal handlers. When the target's ring is full:
//! * a sender on another task notifies the target and waits for room: the target
//!   drains its ring in vcore context, so the wait ends (its length is the target's
//!   handling time);
//! * a sender in the target's own vcore context drains the ring itself, then retries;
//! * a sender on the target's own task that cannot drain (a uthread of that vcore, or a
//!   signal handler that interrupted the draining) puts the message in the vcore's
//!   overflow ring instead, which `handle_events` drains too. Only if that is full as
//!   well, with more than [`QUEUE_CAPACITY`] + [`OVERFLOW_CAPACITY`] messages sent to a
//!   vcore by itself and not yet handled, does `send_event` panic, naming the vcore.
//!
//! Messages from one sender are handled in the order sent, except that overflowed
//! messages may be handled before earlier ones still in the main ring.
//!
//! ## Example
//!
//! ```
//! use parlib_events::{self as events, EventMsg, EventType};
//! use parlib_vcore as vcore;
//! use std::sync::atomic::{AtomicU64, Ordering};
//!
//! static SUM: AtomicU64 = AtomicU64::new(0);
//! const EV_ADD: EventType = EventType(events::EV_USER_BASE.0 + 1);
//!
//! fn on_add(msg: &EventMsg, _ty: EventType) {
//!     SUM.fetch_add(msg.arg0, Ordering::Relaxed);
//! }
//!
//! fn entry() -> ! {
//!     events::handle_events();              // the first thing vcore_entry does
//!     if SUM.load(Ordering::Relaxed) == 42 {
//!         vcore::resume_main()
//!     }
//!     vcore::yield_vcore()                  // park; the next event wakes us
//! }
//!
//! vcore::lib_init().unwrap();
//! events::init().unwrap();
//! events::register_handler(EV_ADD, on_add).unwrap();
//! vcore::set_entry(entry);
//! events::send_event(&EventMsg { arg0: 42, ..Default::default() }, EV_ADD, 0).unwrap();
//! vcore::request(1).unwrap(); // moves us onto vcore 0, whose entry handles the event
//! assert_eq!(SUM.load(Ordering::Relaxed), 42);
//! ```

#![warn(missing_docs)]

mod queue;

use core::fmt;
use core::sync::atomic::{compiler_fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

use parlib_vcore as vcore;

use crate::queue::Ring;

/// The type of an event: an index into the handler table, below [`MAX_EVENT_TYPES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(pub u32);

/// A system call completed.
pub const EV_SYSCALL: EventType = EventType(1);
/// An alarm expired.
pub const EV_ALARM: EventType = EventType(2);
/// A user-level inter-processor interrupt (for example a scheduler's tick).
pub const EV_USER_IPI: EventType = EventType(3);
/// A POSIX signal directed at the process.
pub const EV_POSIX_SIGNAL: EventType = EventType(4);
/// First type free for applications and schedulers; types below are parlib's.
pub const EV_USER_BASE: EventType = EventType(16);
/// Size of the handler table.
pub const MAX_EVENT_TYPES: u32 = 256;

/// Capacity of each vcore's ring. 4096 messages of 32 bytes: 128 KiB per vcore, room
/// for thousands of outstanding system calls or alarms between two handling passes.
pub const QUEUE_CAPACITY: usize = 4096;
/// Capacity of each vcore's overflow ring, used only by senders on the target's own task
/// that cannot drain it (see the crate docs).
pub const OVERFLOW_CAPACITY: usize = 1024;

/// The inline payload of an event. Its meaning belongs to the event type.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventMsg {
    /// First argument.
    pub arg0: u64,
    /// Second argument.
    pub arg1: u64,
    /// Third argument.
    pub arg2: u64,
}

/// A handler, run in vcore context for each message of its type.
pub type Handler = fn(&EventMsg, EventType);

/// What went wrong in an events call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// `init` has not run (or the vcore layer is not initialised).
    NotInitialized,
    /// No such vcore.
    NoSuchVcore(usize),
    /// An event type at or above [`MAX_EVENT_TYPES`].
    BadType(EventType),
    /// No handler is registered for the type, so the message could only be dropped.
    NoHandler(EventType),
}

impl Error {
    /// The errno a C caller would see.
    pub fn errno(&self) -> i32 {
        match self {
            Error::NotInitialized => libc::EBUSY,
            _ => libc::EINVAL,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotInitialized => {
                write!(f, "parlib-events used before events::init (and vcore::lib_init)")
            }
            Error::NoSuchVcore(id) => write!(f, "vcore {id} does not exist"),
            Error::BadType(t) => write!(f, "event type {} is not below {MAX_EVENT_TYPES}", t.0),
            Error::NoHandler(t) => write!(f, "no handler is registered for event type {}", t.0),
        }
    }
}

impl std::error::Error for Error {}

struct VcoreQueues {
    main: Ring,
    overflow: Ring,
    /// Set while the owner pops, so a signal handler on the same task that finds the
    /// ring full knows it must not drain it (see the crate docs).
    popping: AtomicBool,
}

static QUEUES: OnceLock<Box<[VcoreQueues]>> = OnceLock::new();
static HANDLERS: [AtomicUsize; MAX_EVENT_TYPES as usize] =
    [const { AtomicUsize::new(0) }; MAX_EVENT_TYPES as usize];

/// Allocates one queue per vcore. Call after `vcore::lib_init` (the uthread layer's
/// `lib_init` does); later calls do nothing.
pub fn init() -> Result<(), Error> {
    let n = vcore::max_vcores();
    if n == 0 {
        return Err(Error::NotInitialized);
    }
    QUEUES.get_or_init(|| {
        (0..n)
            .map(|_| VcoreQueues {
                main: Ring::new(QUEUE_CAPACITY),
                overflow: Ring::new(OVERFLOW_CAPACITY),
                popping: AtomicBool::new(false),
            })
            .collect()
    });
    Ok(())
}

fn queues() -> Result<&'static [VcoreQueues], Error> {
    QUEUES.get().map(|q| &q[..]).ok_or(Error::NotInitialized)
}

/// Registers `handler` for `ty`, returning the handler it replaces.
pub fn register_handler(ty: EventType, handler: Handler) -> Result<Option<Handler>, Error> {
    let slot = HANDLERS.get(ty.0 as usize).ok_or(Error::BadType(ty))?;
    let old = slot.swap(handler as usize, Ordering::AcqRel);
    // SAFETY: the table only ever holds 0 or a `Handler` stored above.
    Ok((old != 0).then(|| unsafe { core::mem::transmute::<usize, Handler>(old) }))
}

fn handler(ty: EventType) -> Option<Handler> {
    let f = HANDLERS.get(ty.0 as usize)?.load(Ordering::Acquire);
    // SAFETY: the table only ever holds 0 or a `Handler`.
    (f != 0).then(|| unsafe { core::mem::transmute::<usize, Handler>(f) })
}

/// Queues `msg` of type `ty` for vcore `vcoreid` and notifies it. Never allocates and
/// never drops the message (see the crate docs for a full queue). Callable from any
/// thread and from signal handlers.
///
/// # Errors
/// [`Error::NotInitialized`], [`Error::NoSuchVcore`], [`Error::BadType`], or
/// [`Error::NoHandler`] when nothing could handle the message.
pub fn send_event(msg: &EventMsg, ty: EventType, vcoreid: usize) -> Result<(), Error> {
    let qs = queues()?;
    let q = qs.get(vcoreid).ok_or(Error::NoSuchVcore(vcoreid))?;
    if ty.0 >= MAX_EVENT_TYPES {
        return Err(Error::BadType(ty));
    }
    if handler(ty).is_none() {
        return Err(Error::NoHandler(ty));
    }
    // A uthread interrupted between claiming a slot and publishing it would leave the
    // consumer waiting behind that slot (parlib is linked into the binary, so the
    // safe-point text check does not cover this code): keep notifications off meanwhile.
    let pinned = vcore::notif::disable_if_uthread();
    if !q.main.push(ty, msg) {
        send_to_full(q, ty, msg, vcoreid);
    }
    if pinned {
        enable_notifs();
    }
    vcore::notify(vcoreid).map_err(|_| Error::NoSuchVcore(vcoreid))
}

/// The slow path of `send_event` when the target's ring is full (crate docs).
#[cold]
fn send_to_full(q: &VcoreQueues, ty: EventType, msg: &EventMsg, vcoreid: usize) {
    let here = vcore::this();
    if here.map(|v| v.id()) != Some(vcoreid) {
        // Another task: have the target drain, and wait for room.
        while !q.main.push(ty, msg) {
            let _ = vcore::notify(vcoreid);
            core::hint::spin_loop();
        }
        return;
    }
    if vcore::in_vcore_context() && !q.popping.load(Ordering::Relaxed) {
        while !q.main.push(ty, msg) {
            handle_events();
        }
        return;
    }
    if !q.overflow.push(ty, msg) {
        panic!(
            "parlib-events: vcore {vcoreid} sent itself more than {} events without handling them \
             (from a uthread with notifications disabled, or a signal handler)",
            QUEUE_CAPACITY + OVERFLOW_CAPACITY
        );
    }
}

/// Runs the handler of every message queued for the calling vcore; returns how many.
/// Clears `notif_pending` first, so a notification that arrives meanwhile is seen on the
/// next pass.
///
/// # Panics
/// Outside vcore context.
pub fn handle_events() -> usize {
    let vc = match vcore::this() {
        Some(vc) if vc.in_vcore_context() => vc,
        _ => panic!("events::handle_events must be called in vcore context"),
    };
    let Ok(qs) = queues() else { return 0 };
    let q = &qs[vc.id()];
    vc.clear_notif_pending();
    let mut handled = POLLER.get().map_or(0, |p| (p.poll)(vc.id()));
    loop {
        q.popping.store(true, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst); // a signal handler on this task sees the flag
                                          // SAFETY: only the owning vcore pops, in vcore context, and handlers that send to
                                          // this vcore while `popping` is set use the overflow ring instead of draining.
        let next = unsafe { q.main.pop().or_else(|| q.overflow.pop()) };
        compiler_fence(Ordering::SeqCst);
        q.popping.store(false, Ordering::Relaxed);
        let Some((ty, msg)) = next else { break };
        if let Some(h) = handler(ty) {
            h(&msg, ty);
        }
        handled += 1;
    }
    handled
}

/// Whether the calling vcore has a notification or a message waiting: for schedulers
/// that spin in `sched_entry` and must notice events without leaving it.
#[inline]
pub fn events_pending() -> bool {
    let Some(vc) = vcore::this() else { return false };
    let Some(q) = QUEUES.get().and_then(|q| q.get(vc.id())) else { return false };
    vc.notif_pending()
        || q.main.has_ready()
        || q.overflow.has_ready()
        || POLLER.get().is_some_and(|p| (p.pending)(vc.id()))
}

/// A source of work that vcore context polls besides its event queue: the syscall
/// layer's I/O readiness. `handle_events` calls `poll` first; `events_pending` asks
/// `pending`. Both get the calling vcore's id; `poll` returns how much work it did.
#[derive(Clone, Copy)]
pub struct Poller {
    /// Polls without blocking, in vcore context.
    pub poll: fn(usize) -> usize,
    /// Whether polling would be worth it now (cheap).
    pub pending: fn(usize) -> bool,
}

static POLLER: OnceLock<Poller> = OnceLock::new();

/// Installs the poller. The first one stays; later calls return false.
pub fn set_poller(p: Poller) -> bool {
    POLLER.set(p).is_ok()
}

/// Disables notifications for the running uthread (depth + 1). Does nothing in vcore
/// context (always disabled there) or on a plain thread.
#[inline]
pub fn disable_notifs() {
    let _ = vcore::notif::disable_if_uthread();
}

/// Re-enables notifications for the running uthread (depth - 1); at depth 0 a pending
/// notification is delivered at once.
///
/// # Panics
/// Without a matching [`disable_notifs`].
#[inline]
pub fn enable_notifs() {
    // With notifications disabled the uthread cannot have moved, so the vcore it runs on
    // is the one whose depth it raised.
    if vcore::this().is_some() && !vcore::in_vcore_context() {
        // SAFETY: we run on a vcore, outside vcore context.
        unsafe { vcore::notif::enable_notifs() };
    }
}
