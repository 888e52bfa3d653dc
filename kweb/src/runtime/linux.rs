//! The Linux-threads variant: the baseline. Workers and the poller are `std::thread`s
//! that the kernel schedules; a worker waiting for a connection sleeps in a futex
//! (`std::sync::Condvar`), the poller in `epoll_wait`.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

use super::{ConnQueue, Joiner, Runtime};
use crate::status::Status;

/// Worker stacks: the request path needs little; buffers are on the heap.
const STACK: usize = 256 * 1024;

/// Linux threads.
pub struct Linux;

#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    slots: VecDeque<u32>,
    waiting: usize,
    closed: bool,
}

impl ConnQueue for Queue {
    fn push(&self, slot: u32) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.slots.push_back(slot);
        let wake = s.waiting > 0;
        drop(s);
        if wake {
            self.ready.notify_one();
        }
    }

    fn pop(&self) -> Option<u32> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if s.closed {
                return None;
            }
            if let Some(slot) = s.slots.pop_front() {
                return Some(slot);
            }
            s.waiting += 1;
            s = self.ready.wait(s).unwrap_or_else(|e| e.into_inner());
            s.waiting -= 1;
        }
    }

    /// The kernel time-slices these threads itself: no turns are kept.
    fn wait_turn(&self) {}

    fn close(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.ready.notify_all();
    }
}

impl Runtime for Linux {
    fn name(&self) -> &'static str {
        "linux"
    }

    fn shards(&self) -> usize {
        1
    }

    fn queue(&self) -> Arc<dyn ConnQueue> {
        Arc::new(Queue::default())
    }

    fn spawn(&self, _shard: usize, name: String, f: Box<dyn FnOnce() + Send>) -> std::io::Result<Joiner> {
        let h = std::thread::Builder::new().name(name).stack_size(STACK).spawn(f)?;
        Ok(Box::new(move || {
            let _ = h.join();
        }))
    }

    fn wait_events(&self, epfd: i32, evs: &mut [libc::epoll_event]) -> usize {
        crate::sys::epoll_wait(epfd, evs, -1)
    }

    fn vcore(&self) -> usize {
        // SAFETY: no preconditions. On a Linux thread glibc's answer (from the thread's
        // own rseq area, no system call) is right.
        unsafe { libc::sched_getcpu() }.max(0) as usize
    }

    fn request_vcores(&self, _n: usize) -> Result<String, Status> {
        Err(Status::NotImplemented) // the kernel places Linux threads
    }

    fn yield_vcore(&self) -> Result<String, Status> {
        Err(Status::NotImplemented)
    }
}
