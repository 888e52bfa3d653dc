//! The connection queue of the uthread variants: `parlib-sync`'s mutex and condvar, so a
//! worker waiting for a connection blocks only itself, and waking it makes it runnable
//! (no system call when it waits on a running vcore).

use std::collections::VecDeque;

use parlib_sync::{Condvar, Mutex};

use super::ConnQueue;

/// A FIFO of connection slots for workers that are uthreads.
pub struct UthreadQueue {
    state: Mutex<State>,
    ready: Condvar,
}

impl UthreadQueue {
    /// An empty queue.
    pub fn new() -> UthreadQueue {
        UthreadQueue { state: Mutex::new(State::default()), ready: Condvar::new() }
    }
}

#[derive(Default)]
struct State {
    slots: VecDeque<u32>,
    /// Workers blocked in `pop`: a push wakes one only if there is one.
    waiting: usize,
    closed: bool,
}

impl ConnQueue for UthreadQueue {
    fn push(&self, slot: u32) {
        let mut s = self.state.lock();
        s.slots.push_back(slot);
        let wake = s.waiting > 0;
        drop(s);
        if wake {
            self.ready.notify_one();
        }
    }

    fn pop(&self) -> Option<u32> {
        let mut s = self.state.lock();
        while !s.closed {
            if let Some(slot) = s.slots.pop_front() {
                return Some(slot);
            }
            s.waiting += 1;
            s = self.ready.wait(s);
            s.waiting -= 1;
        }
        None
    }

    fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_all();
    }
}
