//! The upthread variant: workers and the poller are `parlib-upthread` threads, scheduled
//! by upthread's own scheduler (per-vcore round robin, work stealing) on every vcore it
//! is given. kweb itself knows nothing of vcores here.

use std::sync::Arc;

use parlib_upthread as upthread;

use super::parlib_queue::UthreadQueue;
use super::{ConnQueue, Joiner, Runtime};
use crate::status::Status;

/// Worker stacks, as for the Linux variant.
const STACK: usize = 256 * 1024;

/// upthread threads.
pub struct Upthread;

impl Upthread {
    /// Starts upthread (the caller becomes its `main` thread) on `vcores` vcores, or on
    /// every allowed CPU if `None`.
    pub fn start(vcores: Option<usize>) -> std::io::Result<Upthread> {
        upthread::init().map_err(|e| std::io::Error::other(format!("upthread::init: {e:?}")))?;
        if let Some(n) = vcores {
            upthread::set_num_vcores(n).map_err(|e| std::io::Error::other(format!("--vcores {n}: {e:?}")))?;
        }
        Ok(Upthread)
    }
}

impl Runtime for Upthread {
    fn name(&self) -> &'static str {
        "upthread"
    }

    fn shards(&self) -> usize {
        1
    }

    fn queue(&self) -> Arc<dyn ConnQueue> {
        Arc::new(UthreadQueue::new())
    }

    fn spawn(&self, _shard: usize, name: String, f: Box<dyn FnOnce() + Send>) -> std::io::Result<Joiner> {
        let h = upthread::Builder::new().name(name).stack_size(STACK).spawn(f)?;
        Ok(Box::new(move || {
            let _ = h.join();
        }))
    }

    fn wait_events(&self, epfd: i32, evs: &mut [libc::epoll_event]) -> usize {
        super::wait_events_on_uthread(epfd, evs)
    }

    fn yield_now(&self) {
        upthread::yield_now();
    }

    fn vcore(&self) -> usize {
        parlib_vcore::id()
    }

    fn request_vcores(&self, n: usize) -> Result<String, Status> {
        upthread::set_num_vcores(n).map_err(|_| Status::BadRequest)?;
        Ok(format!("vcores {}\n", upthread::num_vcores()))
    }

    fn yield_vcore(&self) -> Result<String, Status> {
        let n = upthread::num_vcores();
        if n <= 1 {
            return Err(Status::BadRequest); // the last vcore stays
        }
        upthread::set_num_vcores(n - 1).map_err(|_| Status::InternalError)?;
        Ok(format!("vcores {}\n", upthread::num_vcores()))
    }
}
