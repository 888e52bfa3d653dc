//! Connections: who owns one at each instant, and where they live.
//!
//! # Ownership
//!
//! A connection is owned by at most one party: the poller that finds it ready, the
//! connection queue, the worker serving it, or nobody (it waits in its shard's epoll
//! set, *idle*). Its `state` word says which; every hand-over is one atomic step:
//!
//! | state | event | by | new state | and then |
//! |---|---|---|---|---|
//! | `IDLE` | readiness | poller | `OWNED` | it queues the connection at the tail and wakes a worker |
//! | `OWNED` | readiness | poller | `OWNED_NOTIFIED` | nothing: the owner will look again |
//! | `OWNED_NOTIFIED` | readiness | poller | `OWNED_NOTIFIED` | nothing |
//! | `OWNED*` | a worker starts a turn | worker | `OWNED` | it reads, serves, writes |
//! | `OWNED` | nothing left to do | worker | `IDLE` | its deadline is set first: the poller may time it out from now on |
//! | `OWNED_NOTIFIED` | nothing left to do | worker | `OWNED` | it serves another turn (readiness came while it worked) |
//! | `IDLE` | past its deadline | poller | `OWNED` | it closes the connection |
//! | `OWNED` | closed | owner | `FREE` | the slot goes back to the free list, its generation moves on |
//!
//! Readiness is edge-triggered, so an edge that arrives while a worker owns the
//! connection is never lost: it is the `NOTIFIED` bit, which the worker's attempt to go
//! idle sees. No worker ever waits on a connection, so idle and slow connections hold no
//! worker (the original kweb's workers blocked in `read`, and enough idle connections
//! starved the pool).
//!
//! # Where they live
//!
//! [`Conns`] is an arena of fixed slots, allocated in chunks that are never freed, so a
//! poller may look at a slot whose connection a worker is closing: the slot stays valid
//! memory, and its generation, kept in the epoll tag, tells a stale event from a live
//! one. An idle connection costs its slot ([`Conn`], under 200 bytes) and the kernel's
//! socket; buffers belong to workers, and a connection keeps bytes only between turns
//! (a partial request, or pipelined requests beyond a burst).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::output::Output;

/// In no connection's use.
pub const FREE: u32 = 0;
/// Waiting in its shard's epoll set; nobody owns it.
pub const IDLE: u32 = 1;
/// Owned (queued or being served).
pub const OWNED: u32 = 2;
/// Owned, and readiness arrived since its owner last looked.
pub const OWNED_NOTIFIED: u32 = 3;

/// Slots per arena chunk.
const CHUNK: usize = 1024;

/// What only a connection's owner touches.
#[derive(Default)]
pub struct ConnData {
    /// Bytes received and not yet served: a partial request, or requests beyond a burst.
    pub leftover: Vec<u8>,
    /// Responses the socket has not taken yet.
    pub pending: Option<Box<Output>>,
    /// Request-body bytes still to discard.
    pub skip: u64,
    /// When the connection started waiting for its next complete request.
    pub since_ns: u64,
    /// Close once `pending` is written (a response said `Connection: close`).
    pub close_after_flush: bool,
}

/// One connection's slot.
pub struct Conn {
    /// `FREE`, `IDLE`, `OWNED` or `OWNED_NOTIFIED` (module docs).
    pub state: AtomicU32,
    /// Moves on each time the slot is freed: stale epoll events carry an old one.
    pub generation: AtomicU32,
    /// The socket (set before the connection is published).
    pub fd: AtomicI32,
    /// Shard (epoll set and queue) it belongs to.
    pub shard: AtomicU32,
    /// When an idle connection is closed (`CLOCK_MONOTONIC_COARSE`, ns).
    pub deadline_ns: AtomicU64,
    /// Whether the peer is on the loopback network (`url_cmd` answers only those).
    pub loopback: AtomicBool,
    /// The peer shut down its side (`EPOLLRDHUP`): once a read finds nothing more, the
    /// connection ends. Needed because the end of the stream can come with the last
    /// bytes, in one readiness report a worker's short read does not see past.
    pub peer_closed: AtomicBool,
    data: UnsafeCell<ConnData>,
}

// SAFETY: `data` is only touched by the connection's owner, and ownership passes
// between threads through `state` (Acquire/Release) or a queue's lock (module docs).
unsafe impl Sync for Conn {}

impl Conn {
    fn new() -> Conn {
        Conn {
            state: AtomicU32::new(FREE),
            generation: AtomicU32::new(0),
            fd: AtomicI32::new(-1),
            shard: AtomicU32::new(0),
            deadline_ns: AtomicU64::new(u64::MAX),
            loopback: AtomicBool::new(false),
            peer_closed: AtomicBool::new(false),
            data: UnsafeCell::new(ConnData::default()),
        }
    }

    /// The owner's data.
    ///
    /// # Safety
    /// The caller owns the connection (module docs) and holds no other reference to its
    /// data.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn data(&self) -> &mut ConnData {
        // SAFETY: the caller's contract: ownership makes the access exclusive.
        unsafe { &mut *self.data.get() }
    }

    /// The epoll tag of this connection in slot `slot`: slot and generation.
    pub fn tag(&self, slot: u32) -> u64 {
        u64::from(self.generation.load(Ordering::Relaxed)) << 32 | u64::from(slot)
    }

    /// Readiness, from the poller: whether the connection was idle and is now the
    /// caller's to queue (module docs, the first three rows).
    pub fn notify(&self) -> bool {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let next = match s {
                IDLE => OWNED,
                OWNED => OWNED_NOTIFIED,
                _ => return false, // already notified, or free
            };
            match self.state.compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return s == IDLE,
                Err(now) => s = now,
            }
        }
    }

    /// A worker starts a turn: readiness noticed so far is about to be looked at.
    pub fn begin_turn(&self) {
        self.state.store(OWNED, Ordering::Relaxed);
    }

    /// The owner has nothing left to do: the connection goes idle, unless readiness
    /// arrived meanwhile (then false, and the caller goes on owning it).
    pub fn try_idle(&self, deadline_ns: u64) -> bool {
        self.deadline_ns.store(deadline_ns, Ordering::Relaxed);
        if self.state.compare_exchange(OWNED, IDLE, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            return true;
        }
        self.state.store(OWNED, Ordering::Relaxed);
        false
    }

    /// The poller claims an idle connection past its deadline.
    pub fn claim_expired(&self, now_ns: u64) -> bool {
        self.state.load(Ordering::Relaxed) == IDLE
            && self.deadline_ns.load(Ordering::Relaxed) <= now_ns
            && self.state.compare_exchange(IDLE, OWNED, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }
}

/// Every connection slot, and the free ones.
pub struct Conns {
    chunks: Box<[OnceLock<Box<[Conn]>>]>,
    free: Mutex<Vec<u32>>,
    fresh: AtomicU32,
    capacity: usize,
    open: AtomicUsize,
}

impl Conns {
    /// An arena for up to `capacity` connections at once (rounded up to a chunk).
    pub fn new(capacity: usize) -> Conns {
        let chunks = capacity.div_ceil(CHUNK).max(1);
        Conns {
            chunks: (0..chunks).map(|_| OnceLock::new()).collect(),
            free: Mutex::new(Vec::new()),
            fresh: AtomicU32::new(0),
            capacity: chunks * CHUNK,
            open: AtomicUsize::new(0),
        }
    }

    /// The slot `slot`, if it was ever handed out.
    pub fn get(&self, slot: u32) -> Option<&Conn> {
        let s = slot as usize;
        self.chunks.get(s / CHUNK)?.get().map(|c| &c[s % CHUNK])
    }

    /// A free slot, owned by the caller (`OWNED`), or `None` if all are in use.
    pub fn alloc(&self) -> Option<(u32, &Conn)> {
        let slot = match self.free.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            Some(s) => s,
            None => {
                let s = self.fresh.fetch_add(1, Ordering::Relaxed) as usize;
                if s >= self.capacity {
                    self.fresh.fetch_sub(1, Ordering::Relaxed);
                    return None;
                }
                self.chunks[s / CHUNK].get_or_init(|| (0..CHUNK).map(|_| Conn::new()).collect());
                s as u32
            }
        };
        let c = self.get(slot).expect("an allocated slot exists");
        c.state.store(OWNED, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        Some((slot, c))
    }

    /// Frees `slot`, whose connection the caller owns and has closed.
    pub fn release(&self, slot: u32) {
        let c = self.get(slot).expect("a released slot exists");
        // SAFETY: the caller owns the connection.
        *unsafe { c.data() } = ConnData::default();
        c.fd.store(-1, Ordering::Relaxed);
        c.peer_closed.store(false, Ordering::Relaxed);
        c.generation.fetch_add(1, Ordering::Relaxed);
        c.state.store(FREE, Ordering::Release);
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.free.lock().unwrap_or_else(|e| e.into_inner()).push(slot);
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Every slot ever handed out, with its number.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Conn)> {
        let n = (self.fresh.load(Ordering::Acquire) as usize).min(self.capacity);
        (0..n).filter_map(move |s| self.get(s as u32).map(|c| (s as u32, c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_while_owned_keeps_the_connection_from_going_idle() {
        let conns = Conns::new(4);
        let (_, c) = conns.alloc().unwrap();
        assert!(!c.notify(), "owned: the poller does not queue it");
        assert!(!c.try_idle(0), "a notification arrived: serve again");
        assert!(c.try_idle(0));
        assert!(c.notify(), "idle: the poller now owns it");
        assert!(!c.notify());
    }

    #[test]
    fn only_idle_connections_past_their_deadline_expire() {
        let conns = Conns::new(4);
        let (_, c) = conns.alloc().unwrap();
        assert!(!c.claim_expired(10), "owned");
        assert!(c.try_idle(5));
        assert!(!c.claim_expired(4));
        assert!(c.claim_expired(5));
    }

    #[test]
    fn a_released_slot_is_reused_with_a_new_generation_and_ignores_readiness() {
        let conns = Conns::new(1);
        let (s, c) = conns.alloc().unwrap();
        let tag = c.tag(s);
        conns.release(s);
        assert!(!c.notify(), "free slots are never queued");
        let (s2, c2) = conns.alloc().unwrap();
        assert_eq!(s2, s);
        assert_ne!(c2.tag(s2), tag);
        assert_eq!(conns.open(), 1);
    }

    #[test]
    fn the_arena_refuses_past_its_capacity() {
        let conns = Conns::new(1);
        let n = (0..CHUNK + 1).filter(|_| conns.alloc().is_some()).count();
        assert_eq!(n, CHUNK);
    }
}
