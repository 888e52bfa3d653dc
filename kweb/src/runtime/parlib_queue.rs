//! The connection queue of the uthread variants: `parlib-sync`'s mutex and condvar, so a
//! worker waiting for a connection blocks only itself, and waking it makes it runnable
//! (no system call when it waits on a running vcore).
//!
//! # Turns: a timed handler's place in the queue
//!
//! A worker whose timed handler ran out of its quantum (`handler` module) queues a *turn*
//! behind the connections waiting now, and blocks until a worker pops it:
//!
//! 1. Under the lock, `wait_turn` takes the next ticket and queues `Turn(ticket)`, but
//!    only if some worker is idle in `pop`: it is woken to drain the queue. Otherwise it
//!    returns at once (the caller has yielded its vcore just before: `handler` docs).
//! 2. `pop` takes items in order. Connections it returns; a turn it marks released
//!    (tickets are queued and popped in order, so one number, the last released ticket,
//!    says which turns are over), wakes the turn waiters, and takes the next item.
//! 3. The waiter returns once its ticket is released, or the queue is closed.
//!
//! Why no worker waits for a turn forever: step 1 queues a turn only while another worker
//! is idle in `pop`, not waiting for a turn; that worker can queue a turn of its own only
//! while yet another is idle, and so on. So at every instant some worker is not waiting
//! for a turn, and it comes back to `pop` when its handler ends (every timed handler ends
//! within its budget), which releases the turns in order.

use std::collections::VecDeque;

use parlib_sync::{Condvar, Mutex};

use super::ConnQueue;

/// A FIFO of connection slots (and turns) for workers that are uthreads.
pub struct UthreadQueue {
    state: Mutex<State>,
    /// Workers waiting for an item.
    ready: Condvar,
    /// Workers waiting for their turn to be released.
    turns: Condvar,
}

impl UthreadQueue {
    /// An empty queue.
    pub fn new() -> UthreadQueue {
        UthreadQueue { state: Mutex::new(State::default()), ready: Condvar::new(), turns: Condvar::new() }
    }
}

enum Item {
    Conn(u32),
    Turn(u64),
}

#[derive(Default)]
struct State {
    items: VecDeque<Item>,
    /// Workers blocked in `pop`: a push wakes one only if there is one.
    waiting: usize,
    closed: bool,
    /// The last ticket handed out, and the last one released (module docs).
    ticket: u64,
    released: u64,
}

impl ConnQueue for UthreadQueue {
    fn push(&self, slot: u32) {
        let mut s = self.state.lock();
        s.items.push_back(Item::Conn(slot));
        let wake = s.waiting > 0;
        drop(s);
        if wake {
            self.ready.notify_one();
        }
    }

    fn pop(&self) -> Option<u32> {
        let mut s = self.state.lock();
        while !s.closed {
            match s.items.pop_front() {
                Some(Item::Conn(slot)) => return Some(slot),
                Some(Item::Turn(t)) => {
                    s.released = t;
                    self.turns.notify_all();
                }
                None => {
                    s.waiting += 1;
                    s = self.ready.wait(s);
                    s.waiting -= 1;
                }
            }
        }
        None
    }

    fn wait_turn(&self) {
        let mut s = self.state.lock();
        if s.waiting == 0 || s.closed {
            return;
        }
        s.ticket += 1;
        let t = s.ticket;
        s.items.push_back(Item::Turn(t));
        self.ready.notify_one();
        while s.released < t && !s.closed {
            s = self.turns.wait(s);
        }
    }

    fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_all();
        self.turns.notify_all();
    }
}
