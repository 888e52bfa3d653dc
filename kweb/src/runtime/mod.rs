//! The three ways kweb runs its threads, behind one interface: the request code
//! (`worker`, `poller`) is the same for all of them.
//!
//! | variant | threads | connection queue | a poller waits for readiness with |
//! |---|---|---|---|
//! | [`linux`] | `std::thread`s (kernel-scheduled) | one, `std::sync` mutex and condvar | `epoll_wait` that blocks the thread |
//! | [`upthread`](mod@upthread) | `parlib-upthread` threads (uthreads on every vcore, upthread's scheduler) | one, `parlib-sync` mutex and condvar | `parlib_syscalls::io::wait_readable` on its epoll descriptor: only the poller waits |
//! | [`custom`] | uthreads on [`custom::KwebSched`], kweb's own `Scheduler` | one per vcore (*shard*), each with its own workers and poller; connections dealt round robin by the acceptor on vcore 0 and never migrated | as upthread |

pub mod custom;
pub mod linux;
mod parlib_queue;
pub mod upthread;

use std::sync::Arc;

use crate::status::Status;

/// Waits for a thread started by [`Runtime::spawn`] to finish.
pub type Joiner = Box<dyn FnOnce() + Send>;

/// A shard's queue of connections (slot numbers) ready to be served.
pub trait ConnQueue: Send + Sync {
    /// Queues `slot` at the tail and wakes a waiting worker, if one waits.
    fn push(&self, slot: u32);
    /// The next connection; blocks the calling thread while there is none. `None` once
    /// [`close`](ConnQueue::close)d.
    fn pop(&self) -> Option<u32>;
    /// Queues the caller behind every connection waiting now, and blocks it until a
    /// worker's [`pop`](ConnQueue::pop) reaches that place (a timed handler's turn:
    /// `handler` module, protocol in `parlib_queue`). Returns at once if no worker is
    /// idle to get there, or if the queue keeps no turns.
    fn wait_turn(&self);
    /// Wakes every worker; `pop` returns `None` from now on.
    fn close(&self);
}

/// A way of running kweb's threads.
pub trait Runtime: Send + Sync {
    /// `linux`, `upthread` or `custom`.
    fn name(&self) -> &'static str;
    /// How many shards (connection queues, epoll sets, worker pools) to make.
    fn shards(&self) -> usize;
    /// How many shards new connections are dealt to (the first ones); `url_cmd` may
    /// change it.
    fn active_shards(&self) -> usize {
        self.shards()
    }
    /// A new, empty queue.
    fn queue(&self) -> Arc<dyn ConnQueue>;
    /// Starts `f` as one of this runtime's threads, belonging to `shard`.
    fn spawn(&self, shard: usize, name: String, f: Box<dyn FnOnce() + Send>) -> std::io::Result<Joiner>;
    /// Waits until epoll set `epfd` has events and returns some in `evs` (at least one,
    /// unless interrupted). Blocks only the calling thread.
    fn wait_events(&self, epfd: i32, evs: &mut [libc::epoll_event]) -> usize;
    /// Lets the runtime's other threads run between two turns of a worker: uthreads are
    /// not preempted, and a worker that always finds work would otherwise keep its vcore
    /// from the poller, whose connections then wait (the kernel preempts Linux threads).
    fn yield_now(&self) {}
    /// The vcore (or, for Linux threads, the CPU) the caller runs on, for statistics.
    fn vcore(&self) -> usize;
    /// `url_cmd`'s `request_vcores?n=`: use `n` vcores. The reply text, or a status.
    fn request_vcores(&self, n: usize) -> Result<String, Status>;
    /// `url_cmd`'s `yield_vcore`: give one vcore back. The reply text, or a status.
    fn yield_vcore(&self) -> Result<String, Status>;
}

/// The wait of the uthread runtimes: take what the epoll set has, else block this
/// uthread alone until its descriptor is readable (an epoll descriptor is readable while
/// it has events), and look again.
fn wait_events_on_uthread(epfd: i32, evs: &mut [libc::epoll_event]) -> usize {
    loop {
        let n = crate::sys::epoll_wait(epfd, evs, 0);
        if n > 0 {
            return n;
        }
        if parlib_syscalls::io::wait_readable(epfd).is_err() {
            return 0; // interrupted: the caller looks at its stop flag
        }
    }
}
