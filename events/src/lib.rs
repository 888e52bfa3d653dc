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
//! thread, vcore or not, and from signal handlers. When the target's ring is full, the
//! sender waits for room only if the target can drain while it waits; otherwise the
//! message goes to the target's small overflow ring, which `handle_events` drains too:
//! * a sender on another task notifies the target and waits (its wait is the target's
//!   handling time); a uthread of the target with notifications on does the same, and
//!   the notification interrupts it so that its vcore drains;
//! * a vcore context that waits for another vcore's ring drains its own queue
//!   meanwhile (nested, a few levels at most), so vcores that flood each other do not
//!   wait on each other;
//! * the target's own vcore context uses the overflow ring, and past it runs the
//!   handler at once, in place;
//! * a signal handler never waits behind a push it interrupted;
//! * a sender that nothing can drain for (a uthread of the target with notifications
//!   disabled, or a signal handler on the target's task) uses the overflow ring, and
//!   only past it, with more than [`QUEUE_CAPACITY`] + [`OVERFLOW_CAPACITY`] messages
//!   outstanding, panics naming the vcore.
//!
//! `send_to_full`'s table in the source gives every case.
//!
//! Messages from one sender are handled in the order sent, except that overflowed
//! messages may be handled before earlier ones still in the main ring, and a handler
//! run in place runs before the messages queued ahead of it.
//!
//! ## Example
//!
//! ```
//! # // As a user of the facade crate `parlib` writes it; here, its paths mapped.
//! # mod parlib { pub(crate) use parlib_events as events; pub(crate) use parlib_vcore as vcore; }
//! use parlib::events::{self, EventMsg, EventType};
//! use parlib::vcore;
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
use core::sync::atomic::{compiler_fence, AtomicBool, AtomicU32, Ordering};
use std::sync::OnceLock;

use crossbeam_utils::{atomic::AtomicCell, Backoff};
use parlib_vcore as vcore;
use parlib_vcore::Vcore;

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
/// Capacity of each vcore's overflow ring, used by senders that must not wait for room
/// in the main ring (see the crate docs).
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
    /// How deep this vcore's context nests `handle_events` while it waits to send
    /// (only that vcore context touches it).
    nested_drains: AtomicU32,
}

static QUEUES: OnceLock<Box<[VcoreQueues]>> = OnceLock::new();
static HANDLERS: [AtomicCell<Option<Handler>>; MAX_EVENT_TYPES as usize] =
    [const { AtomicCell::new(None) }; MAX_EVENT_TYPES as usize];
// Handlers are looked up by senders in signal handlers, where a locked AtomicCell could
// deadlock against the registration it interrupted.
const _: () = assert!(AtomicCell::<Option<Handler>>::is_lock_free());

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
                nested_drains: AtomicU32::new(0),
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
    Ok(slot.swap(Some(handler)))
}

fn handler(ty: EventType) -> Option<Handler> {
    HANDLERS.get(ty.0 as usize)?.load()
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
    if !push(&q.main, ty, msg) {
        send_to_full(qs, q, ty, msg, vcoreid);
    }
    vcore::notify(vcoreid).map_err(|_| Error::NoSuchVcore(vcoreid))
}

std::thread_local! {
    /// The ring this execution context (task, or uthread with its own TLS) is pushing
    /// into, between claiming a slot and publishing it; 0 otherwise. A signal handler
    /// that finds it set has interrupted that push, so it must not wait for room in that
    /// ring: its consumer stops at the claimed slot until the push completes.
    static IN_PUSH: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

/// One push, marked in [`IN_PUSH`] and, on a uthread, with notifications off: a uthread
/// switched out between claim and publication would leave the consumer waiting behind
/// its slot (parlib is linked into the binary, so the safe-point text check does not
/// cover this code).
#[inline]
fn push(ring: &Ring, ty: EventType, msg: &EventMsg) -> bool {
    let pinned = vcore::notif::disable_if_uthread();
    let outer = IN_PUSH.replace(ring as *const Ring as usize);
    let ok = ring.push(ty, msg);
    IN_PUSH.set(outer);
    if pinned {
        // SAFETY: `pinned` says we are a uthread on a vcore whose depth we raised, and
        // it kept us there; this skips the second vcore check `enable_notifs` makes.
        unsafe { vcore::notif::enable_notifs() };
    }
    ok
}

/// How deep a vcore context waiting for room elsewhere nests `handle_events` on its own
/// queue. Each level is one handler frame plus `handle_events`, a few hundred bytes of
/// the vcore stack; four levels let chains of handlers that flood each other progress.
const MAX_NESTED_DRAINS: u32 = 4;

/// The slow path of `send_event` when the target's main ring is full. Who may wait for
/// room depends on whether the target can drain meanwhile:
///
/// | sender | what it does |
/// |---|---|
/// | the target's own vcore context | the target's overflow ring; if that is full too, runs the handler at once, in place |
/// | a signal handler on the target's task, or a uthread of the target with notifications disabled | the overflow ring; if that is full too, panics naming the vcore (nothing can drain before the sender returns) |
/// | any other sender: another task, or a uthread of the target with notifications on | notifies the target and waits for room; a uthread of the target is interrupted by that notification, so its vcore drains |
/// | ... in the vcore context of another vcore | also tries the target's overflow ring, and while waiting drains its own queue, nested at most [`MAX_NESTED_DRAINS`] deep, so two vcores that flood each other do not wait on each other |
/// | ... in a signal handler that interrupted a push into the target's ring | waits only on the target's other ring: the interrupted push holds a slot that stops the drain of its ring |
#[cold]
fn send_to_full(qs: &[VcoreQueues], q: &VcoreQueues, ty: EventType, msg: &EventMsg, vcoreid: usize) {
    let here = vcore::this();
    let interrupted_push = IN_PUSH.get();
    let in_handler = interrupted_push != 0 || here.is_some_and(|v| v.on_signal_stack());
    // Vcore context proper: not a signal handler that interrupted it.
    let own_ctx =
        here.filter(|v| v.in_vcore_context() && !in_handler && !qs[v.id()].popping.load(Ordering::Relaxed));
    if here.is_some_and(|v| v.id() == vcoreid) {
        let can_wait = !in_handler && !vcore::in_vcore_context() && vcore::notif::running_depth() == 0;
        if !can_wait {
            if push(&q.overflow, ty, msg) {
                return;
            }
            if own_ctx.is_some() {
                // Vcore context is where handlers run: run this one now rather than nest
                // the whole queue, whose handlers could send again (unbounded nesting).
                if let Some(h) = handler(ty) {
                    h(msg, ty);
                }
                return;
            }
            panic!(
                "parlib-events: vcore {vcoreid} sent itself more than {} events without handling them \
                 (from a uthread with notifications disabled, or a signal handler)",
                QUEUE_CAPACITY + OVERFLOW_CAPACITY
            );
        }
    }
    // Rings we may wait on: not one whose push we interrupted. Vcore contexts and such
    // handlers use the overflow ring too; other senders leave it to them.
    let usable = |r: &Ring| r as *const Ring as usize != interrupted_push;
    let use_overflow = own_ctx.is_some() || interrupted_push != 0;
    let backoff = Backoff::new();
    loop {
        if usable(&q.main) && push(&q.main, ty, msg) {
            return;
        }
        if use_overflow && usable(&q.overflow) && push(&q.overflow, ty, msg) {
            return;
        }
        let _ = vcore::notify(vcoreid);
        if let Some(v) = own_ctx {
            let mine = &qs[v.id()];
            let nest = mine.nested_drains.load(Ordering::Relaxed);
            if nest < MAX_NESTED_DRAINS && (mine.main.has_ready() || mine.overflow.has_ready()) {
                mine.nested_drains.store(nest + 1, Ordering::Relaxed);
                handle_events();
                mine.nested_drains.store(nest, Ordering::Relaxed);
                continue;
            }
        }
        // The longer the ring stays full, the fewer notifications (each may be a tgkill).
        backoff.spin();
    }
}

/// Runs the handler of every message queued for the calling vcore; returns how many.
/// Clears `notif_pending` first, so a notification that arrives meanwhile is seen on the
/// next pass.
///
/// # Panics
/// Outside vcore context.
pub fn handle_events() -> usize {
    match vcore::this() {
        // SAFETY: checked just now.
        Some(vc) if vc.in_vcore_context() => unsafe { handle_events_on(vc) },
        _ => panic!("events::handle_events must be called in vcore context"),
    }
}

/// [`handle_events`] for a caller that knows it runs in `vc`'s vcore context, as
/// `vcore_entry` does: it skips the lookup, which is a fifth of the work when the queue
/// is empty (every yield passes here).
///
/// # Safety
/// The caller runs in vcore context on `vc`.
pub unsafe fn handle_events_on(vc: &Vcore) -> usize {
    let Ok(qs) = queues() else { return 0 };
    let q = &qs[vc.id()];
    vc.clear_notif_pending();
    let mut handled = POLLER.get().map_or(0, |p| (p.poll)(vc.id()));
    // The peek keeps the common empty pass (every yield) to two loads.
    while q.main.has_ready() || q.overflow.has_ready() {
        // A signal handler on this task that interrupts the pop sees the flag.
        q.popping.store(true, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        // SAFETY: the rings are single-consumer, and only this vcore's context pops them:
        // a sender that interrupted it (a signal handler: `popping`, the signal stack or
        // a marked push) never drains (`send_to_full`), and handlers run after the pop.
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
    if vcore::on_uthread() {
        // SAFETY: we run on a vcore, outside vcore context.
        unsafe { vcore::notif::enable_notifs() };
    }
}
