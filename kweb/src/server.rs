//! The server's shared state, and its pollers: accepting, readiness, timeouts, stopping.
//!
//! Each shard has a poller thread, its epoll set and its connection queue. The poller:
//!
//! 1. waits for events on its epoll set (`Runtime::wait_events`: on a uthread, only the
//!    poller waits);
//! 2. for a connection's readiness, hands the connection to the queue if it was idle
//!    (`Conn::notify`), which wakes a worker;
//! 3. on shard 0, for the listening socket, accepts up to [`ACCEPT_BATCH`] connections
//!    and deals them to the active shards round robin. When the process is out of
//!    descriptors (`EMFILE`, `ENFILE`) or memory, it stops watching the listener and
//!    tries again when a connection closes or at the next tick: the connections it has
//!    keep being served, and the rest wait in the listen backlog;
//! 4. on its tick (a `timerfd`), closes its idle connections past their deadline;
//! 5. on the stop event (an `eventfd` every epoll set watches, level-triggered, written
//!    by the signal handler or `url_cmd`'s `stop`), closes its queue and returns.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use crate::config::Config;
use crate::conn::{Conn, Conns};
use crate::files::Files;
use crate::handler::HandlerStats;
use crate::runtime::{ConnQueue, Runtime};
use crate::sys;
use crate::work::Work;

/// Connections accepted per listener event before looking at other events (nginx's
/// `multi_accept`, bounded so a connect storm cannot starve readiness).
pub const ACCEPT_BATCH: usize = 64;
/// Events taken per `epoll_wait`.
const EVENTS: usize = 256;
/// Descriptors kept free for opening files (and the odd pipe of a lower layer) when
/// connections approach the descriptor limit: accepting pauses at the limit minus this.
const FD_RESERVE: usize = 16;
/// Listen backlog (`somaxconn` caps it).
const BACKLOG: i32 = 4096;

/// Epoll tags at or above this are not connections.
const SPECIAL: u64 = 1 << 63;
const TAG_LISTENER: u64 = SPECIAL;
const TAG_STOP: u64 = SPECIAL | 1;
const TAG_TICK: u64 = SPECIAL | 2;
const TAG_KICK: u64 = SPECIAL | 3;

/// Edge-triggered readiness in both directions, and the peer's half-close.
const CONN_EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;

/// The eventfd the stop signal's handler writes (-1: none yet).
static STOP_FD: AtomicI32 = AtomicI32::new(-1);

/// One shard: an epoll set, a connection queue, and the tick of its timeouts.
pub struct Shard {
    /// Its epoll set.
    pub epfd: i32,
    /// Connections ready to be served.
    pub queue: Arc<dyn ConnQueue>,
    tick: i32,
}

/// Counters `url_cmd stats` and the exit summary report.
pub struct Stats {
    /// Requests answered, per vcore (or CPU) that answered them.
    pub per_vcore: Box<[CachePadded<AtomicU64>]>,
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections closed by the idle timeout.
    pub timed_out: AtomicU64,
    /// Times `accept` ran out of descriptors or memory and backed off.
    pub accept_backoffs: AtomicU64,
}

impl Stats {
    /// Requests answered in all.
    pub fn requests(&self) -> u64 {
        self.per_vcore.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Everything the threads of a server share.
pub struct Server {
    /// The configuration it runs with.
    pub config: Config,
    /// The variant's threads.
    pub rt: Box<dyn Runtime>,
    /// The root and the open-file cache.
    pub files: Files,
    /// Connection slots.
    pub conns: Conns,
    /// One per shard.
    pub shards: Vec<Shard>,
    /// Counters.
    pub stats: Stats,
    /// `/work`, calibrated, if `--work` is on.
    pub work: Option<Work>,
    /// What timed handlers did.
    pub handlers: HandlerStats,
    listener: i32,
    stop_fd: i32,
    kick_fd: i32,
    stopping: AtomicBool,
    accept_paused: AtomicBool,
    next_shard: AtomicUsize,
    fd_limit: usize,
}

/// The listening socket on `config`'s address: non-blocking, `SO_REUSEADDR` (std's
/// bind sets it), with a deep backlog. Returns it and its port.
pub fn listen(config: &Config) -> std::io::Result<(i32, u16)> {
    use std::os::fd::IntoRawFd;
    let l = std::net::TcpListener::bind((config.bind, config.port))?;
    l.set_nonblocking(true)?;
    let port = l.local_addr()?.port();
    let fd = l.into_raw_fd();
    // SAFETY: `fd` is a listening socket we own; listen again only deepens the backlog.
    unsafe { libc::listen(fd, BACKLOG) };
    Ok((fd, port))
}

impl Server {
    /// Sets up the shards and the server's descriptors around `listener`.
    pub fn new(config: Config, rt: Box<dyn Runtime>, files: Files, listener: i32) -> std::io::Result<Server> {
        let e = |what: &str, errno: i32| {
            std::io::Error::other(format!("{what}: {}", std::io::Error::from_raw_os_error(errno)))
        };
        let stop_fd = sys::eventfd().map_err(|x| e("eventfd", x))?;
        let kick_fd = sys::eventfd().map_err(|x| e("eventfd", x))?;
        let tick_ms = (config.idle_timeout.as_millis() as u64 / 4).clamp(10, 1000);
        let mut shards = Vec::new();
        for s in 0..rt.shards() {
            let epfd = sys::epoll_create().map_err(|x| e("epoll_create1", x))?;
            let tick = sys::ticker(tick_ms).map_err(|x| e("timerfd", x))?;
            let lt = libc::EPOLLIN as u32;
            sys::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, stop_fd, lt, TAG_STOP)
                .map_err(|x| e("epoll_ctl", x))?;
            sys::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, tick, lt, TAG_TICK).map_err(|x| e("epoll_ctl", x))?;
            if s == 0 {
                sys::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, listener, lt, TAG_LISTENER)
                    .map_err(|x| e("epoll_ctl", x))?;
                sys::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, kick_fd, lt, TAG_KICK)
                    .map_err(|x| e("epoll_ctl", x))?;
            }
            shards.push(Shard { epfd, queue: rt.queue(), tick });
        }
        let vcores =
            std::thread::available_parallelism().map_or(1, |n| n.get()).max(parlib_vcore::max_vcores());
        // A connection needs a descriptor: the arena never needs more slots than that.
        let limit = fd_limit();
        let capacity = limit.clamp(64, 1 << 20);
        STOP_FD.store(stop_fd, Ordering::Release);
        let work = config.work.then(Work::calibrate);
        Ok(Server {
            config,
            rt,
            files,
            conns: Conns::new(capacity),
            shards,
            stats: Stats {
                per_vcore: (0..vcores.max(1)).map(|_| CachePadded::new(AtomicU64::new(0))).collect(),
                accepted: AtomicU64::new(0),
                timed_out: AtomicU64::new(0),
                accept_backoffs: AtomicU64::new(0),
            },
            work,
            handlers: HandlerStats::default(),
            listener,
            stop_fd,
            kick_fd,
            stopping: AtomicBool::new(false),
            accept_paused: AtomicBool::new(false),
            next_shard: AtomicUsize::new(0),
            fd_limit: limit,
        })
    }

    /// Asks every poller to stop (async-signal-safe).
    pub fn stop(&self) {
        sys::eventfd_signal(self.stop_fd);
    }

    /// Whether the server is stopping: responses close their connections.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Counts `n` requests answered on the caller's vcore.
    pub fn count(&self, n: u64) {
        let v = self.rt.vcore() % self.stats.per_vcore.len();
        self.stats.per_vcore[v].fetch_add(n, Ordering::Relaxed);
    }

    /// Closes connection `slot`, which the caller owns.
    pub fn close(&self, slot: u32, c: &Conn) {
        sys::close(c.fd.load(Ordering::Relaxed));
        self.conns.release(slot);
        if self.accept_paused.load(Ordering::Relaxed) {
            sys::eventfd_signal(self.kick_fd); // a descriptor is free: accept again
        }
    }

    /// The poller of shard `s` (module docs). Returns when the server stops.
    pub fn poll(&self, s: usize) {
        let shard = &self.shards[s];
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        while !self.stopping() {
            let n = self.rt.wait_events(shard.epfd, &mut evs);
            for ev in &evs[..n] {
                match ev.u64 {
                    TAG_STOP => self.stopping.store(true, Ordering::Relaxed),
                    TAG_LISTENER => self.accept_some(),
                    TAG_KICK => {
                        let _ = sys::read(self.kick_fd, &mut [0; 8]);
                        self.resume_accept();
                    }
                    TAG_TICK => {
                        let _ = sys::read(shard.tick, &mut [0; 8]);
                        self.sweep(s);
                        if s == 0 {
                            self.resume_accept();
                        }
                    }
                    tag => self.ready(shard, tag, ev.events),
                }
            }
        }
        shard.queue.close();
    }

    /// Step 2: readiness `events` of the connection tagged `tag`.
    fn ready(&self, shard: &Shard, tag: u64, events: u32) {
        let slot = tag as u32;
        let Some(c) = self.conns.get(slot) else { return };
        // A stale event of a closed connection: its slot's generation has moved on.
        if c.generation.load(Ordering::Relaxed) != (tag >> 32) as u32 {
            return;
        }
        if events & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
            c.peer_closed.store(true, Ordering::Relaxed); // before `notify` publishes it
        }
        if c.notify() {
            shard.queue.push(slot);
        }
    }

    /// Step 3: accepts what the backlog holds, up to a batch.
    fn accept_some(&self) {
        for _ in 0..ACCEPT_BATCH {
            match sys::accept(self.listener) {
                Ok((fd, loopback)) => {
                    self.adopt(fd, loopback);
                    // Leave descriptors for opening files: a connection that cannot open
                    // the file it asks for is worse off than one that waits in the backlog.
                    if fd as usize + FD_RESERVE >= self.fd_limit {
                        return self.pause_accept();
                    }
                }
                Err(libc::EAGAIN) => return,
                Err(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                    return self.pause_accept()
                }
                // The peer gave up before we took it, and the like: next one.
                Err(_) => {}
            }
        }
    }

    /// Registers a new connection with a shard, idle: its first readiness queues it.
    fn adopt(&self, fd: i32, loopback: bool) {
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let Some((slot, c)) = self.conns.alloc() else {
            sys::close(fd); // more connections than the arena: cannot happen below the fd limit
            return;
        };
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.rt.active_shards().max(1);
        let now = sys::coarse_now_ns();
        c.fd.store(fd, Ordering::Relaxed);
        c.loopback.store(loopback, Ordering::Relaxed);
        c.shard.store(shard as u32, Ordering::Relaxed);
        // SAFETY: `alloc` made the connection ours.
        unsafe { c.data() }.since_ns = now;
        let _ = sys::set_nodelay(fd); // a connection without it is slower, not wrong
        let sh = &self.shards[shard];
        if sys::epoll_ctl(sh.epfd, libc::EPOLL_CTL_ADD, fd, CONN_EVENTS, c.tag(slot)).is_err() {
            return self.close(slot, c);
        }
        // Readiness reported since the registration (by another shard's poller) must
        // not be lost: then the connection is still ours, and we queue it.
        if !c.try_idle(now + self.idle_timeout_ns()) {
            sh.queue.push(slot);
        }
    }

    fn pause_accept(&self) {
        self.stats.accept_backoffs.fetch_add(1, Ordering::Relaxed);
        self.accept_paused.store(true, Ordering::Relaxed);
        let _ = sys::epoll_ctl(self.shards[0].epfd, libc::EPOLL_CTL_MOD, self.listener, 0, TAG_LISTENER);
    }

    fn resume_accept(&self) {
        if self.accept_paused.swap(false, Ordering::Relaxed) {
            let lt = libc::EPOLLIN as u32;
            let _ = sys::epoll_ctl(self.shards[0].epfd, libc::EPOLL_CTL_MOD, self.listener, lt, TAG_LISTENER);
        }
    }

    /// The idle timeout in ns.
    pub fn idle_timeout_ns(&self) -> u64 {
        self.config.idle_timeout.as_nanos() as u64
    }

    /// Step 4: closes shard `s`'s idle connections past their deadline. One that holds
    /// part of a request is told so (408) first.
    fn sweep(&self, s: usize) {
        let now = sys::coarse_now_ns();
        for (slot, c) in self.conns.iter() {
            if c.shard.load(Ordering::Relaxed) as usize == s && c.claim_expired(now) {
                // SAFETY: `claim_expired` made the connection ours.
                if !unsafe { c.data() }.leftover.is_empty() {
                    let mut out = crate::output::Output::default();
                    crate::respond::error_page(
                        &mut out,
                        crate::status::Status::RequestTimeout,
                        false,
                        false,
                        &mut Default::default(),
                    );
                    let _ = out.flush(c.fd.load(Ordering::Relaxed));
                }
                self.stats.timed_out.fetch_add(1, Ordering::Relaxed);
                self.close(slot, c);
            }
        }
    }

    /// After every thread has stopped: closes what is left.
    pub fn shut(&self) {
        for (slot, c) in self.conns.iter() {
            if c.state.load(Ordering::Relaxed) != crate::conn::FREE {
                self.close(slot, c);
            }
        }
        for sh in &self.shards {
            sys::close(sh.epfd);
            sys::close(sh.tick);
        }
        sys::close(self.listener);
        sys::close(self.kick_fd);
        // The stop descriptor stays open: a SIGINT handler that read its number just
        // before this store could still write to it, and a closed number may be reused.
        STOP_FD.store(-1, Ordering::Release);
    }
}

/// The soft `RLIMIT_NOFILE`.
fn fd_limit() -> usize {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `r` is valid for writes.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 1024;
    }
    usize::try_from(r.rlim_cur).unwrap_or(usize::MAX)
}

/// The handler of SIGINT and SIGTERM: asks the server to stop. Async-signal-safe: one
/// atomic load and a raw `write`.
extern "C" fn on_stop_signal(_sig: libc::c_int) {
    let fd = STOP_FD.load(Ordering::Acquire);
    if fd >= 0 {
        sys::eventfd_signal(fd);
    }
}

/// Installs the stop handler, and ignores SIGPIPE (a peer that goes away is an `EPIPE`).
pub fn install_signals() {
    // SAFETY: an all-zero sigaction is valid; the handler is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGINT, &sa, core::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &sa, core::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}
