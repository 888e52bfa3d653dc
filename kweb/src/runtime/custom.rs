//! The custom variant: kweb's own scheduler, written against the `Scheduler` trait as
//! the thesis describes (§2.6.3), and the runtime that uses it.
//!
//! * Every vcore is a *shard*: its own connection queue, worker pool and poller (with
//!   its own epoll set). A uthread has a home vcore and only ever runs there, so a
//!   connection, its worker and its readiness stay on one core and its caches.
//! * The acceptor is the poller of vcore 0; it deals new connections to the active
//!   shards round robin (`url_cmd`'s `request_vcores` and `yield_vcore` change how many
//!   are active). A connection is never migrated.
//! * [`KwebSched`] itself: one FIFO run queue per vcore under a spinlock, padded to its
//!   own cache lines; `sched_entry` runs the queue's head, handles events while it
//!   spins, and parks the vcore after [`IDLE_SPINS`] empty rounds (an idle vcore sleeps
//!   in `parlib-syscalls`' park hook, `epoll_wait`, so readiness of its poller's epoll
//!   descriptor wakes it).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_utils::CachePadded;
use parlib_events as events;
use parlib_sync::{Condvar, Mutex};
use parlib_uthread::{self as uthread, idle, Runnable, Scheduler, TlsMode};
use parlib_vcore::{self as vcore, spin::SpinLock, Stack};

use super::parlib_queue::UthreadQueue;
use super::{ConnQueue, Joiner, Runtime};
use crate::status::Status;

/// Empty rounds of `sched_entry` before an idle vcore parks: each takes tens of ns, so
/// the vcore spins for tens of µs, about what waking a parked vcore costs in this VM
/// (~50 µs, `examples/round_robin.rs`), so a short gap between requests costs no park.
pub const IDLE_SPINS: u32 = 2000;

/// Stack of every kweb uthread.
const STACK: usize = 256 * 1024;

/// What [`KwebSched`] keeps per uthread: its home vcore.
pub struct Home(usize);

/// One vcore's run queue, on cache lines of its own.
type RunQueue = CachePadded<SpinLock<VecDeque<Runnable<Home>>>>;

/// kweb's scheduler: per-vcore FIFO run queues, no migration (module docs).
pub struct KwebSched {
    queues: Box<[RunQueue]>,
}

static SCHED: OnceLock<KwebSched> = OnceLock::new();

impl Scheduler for KwebSched {
    type Thread = Home;

    fn sched_entry(&self) -> ! {
        let id = vcore::id();
        let q = &self.queues[id];
        loop {
            for _ in 0..IDLE_SPINS {
                let next = q.lock().pop_front();
                if let Some(t) = next {
                    uthread::run_uthread(t);
                }
                if events::events_pending() {
                    events::handle_events();
                }
                core::hint::spin_loop();
            }
            idle::park(|| !q.lock().is_empty(), || {});
        }
    }

    fn thread_runnable(&self, t: Runnable<Home>) {
        let home = t.0;
        let mut q = self.queues[home].lock();
        q.push_back(t);
        // Read under the lock `park`'s validate takes: no fence needed (`idle` docs).
        let parked = idle::is_parking(home);
        drop(q);
        if parked {
            let _ = vcore::notify(home);
        }
    }
}

/// The custom runtime: [`KwebSched`] on `shards` vcores.
pub struct Custom {
    shards: usize,
    active: AtomicUsize,
}

impl Custom {
    /// Starts the scheduler (the caller becomes uthread `main` on vcore 0) and the
    /// alarm and syscall services, with `vcores` shards (all allowed CPUs if `None`).
    pub fn start(vcores: Option<usize>) -> std::io::Result<Custom> {
        let err = |what: &str, e: &dyn std::fmt::Debug| std::io::Error::other(format!("{what}: {e:?}"));
        vcore::lib_init().map_err(|e| err("vcore::lib_init", &e))?;
        let max = vcore::max_vcores();
        let shards = vcores.unwrap_or(max);
        if shards == 0 || shards > max {
            return Err(std::io::Error::other(format!("--vcores {shards}: this process has 1 to {max}")));
        }
        let sched = SCHED.get_or_init(|| KwebSched {
            queues: (0..max).map(|_| CachePadded::new(SpinLock::new(VecDeque::new()))).collect(),
        });
        uthread::lib_init(sched, Home(0)).map_err(|e| err("uthread::lib_init", &e))?;
        parlib_alarms::init().map_err(|e| err("alarms::init", &e))?;
        parlib_syscalls::init().map_err(|e| err("syscalls::init", &e))?;
        Ok(Custom { shards, active: AtomicUsize::new(shards) })
    }

    /// Shards new connections are dealt to (the first ones).
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
}

impl Runtime for Custom {
    fn name(&self) -> &'static str {
        "custom"
    }

    fn shards(&self) -> usize {
        self.shards
    }

    fn active_shards(&self) -> usize {
        self.active()
    }

    fn queue(&self) -> Arc<dyn ConnQueue> {
        Arc::new(UthreadQueue::new())
    }

    fn spawn(&self, shard: usize, name: String, f: Box<dyn FnOnce() + Send>) -> std::io::Result<Joiner> {
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        let d = done.clone();
        let stack =
            Stack::new(STACK).map_err(|e| std::io::Error::other(format!("stack for {name}: {e:?}")))?;
        let body = move || {
            f();
            *d.0.lock() = true;
            d.1.notify_all();
        };
        let t = uthread::create(Home(shard), stack, TlsMode::Backed, body)
            .map_err(|e| std::io::Error::other(format!("uthread for {name}: {e:?}")))?;
        uthread::runnable(t);
        Ok(Box::new(move || {
            let mut g = done.0.lock();
            while !*g {
                g = done.1.wait(g);
            }
        }))
    }

    fn wait_events(&self, epfd: i32, evs: &mut [libc::epoll_event]) -> usize {
        super::wait_events_on_uthread(epfd, evs)
    }

    fn yield_now(&self) {
        uthread::yield_with(uthread::paused);
    }

    fn vcore(&self) -> usize {
        vcore::id()
    }

    fn request_vcores(&self, n: usize) -> Result<String, Status> {
        if n == 0 || n > self.shards {
            return Err(Status::BadRequest);
        }
        self.active.store(n, Ordering::Relaxed);
        Ok(format!("vcores {n} of {}\n", self.shards))
    }

    fn yield_vcore(&self) -> Result<String, Status> {
        let n = self.active();
        if n <= 1 {
            return Err(Status::BadRequest); // the last vcore stays
        }
        self.active.store(n - 1, Ordering::Relaxed);
        Ok(format!("vcores {} of {}\n", n - 1, self.shards))
    }
}
