//! An open-loop load thread: its share of the pool in one epoll set, a timer for the next
//! arrival, the FIFO of idle connections and the FIFO of requests waiting for one.
//!
//! Each turn of the loop:
//!
//! 1. reads the clock once, and hands every arrival now due to an idle connection (the
//!    one idle longest), or, with none idle, to the back of the waiting FIFO;
//! 2. ends the load when no more arrivals are due before the end of `duration` and
//!    every request has been answered;
//! 3. stops the run if it passed its hard deadline, if another thread stopped it, or
//!    (checked every [`SCAN_NS`]) if a request or a connect has waited for `timeout`;
//! 4. arms the timer for the next arrival and waits in `epoll_wait` (level-triggered) for
//!    at most [`MAX_WAIT_MS`] (with `busy_poll`, no timer and no wait: it polls);
//! 5. for each ready connection: reads until a short read, completing its response (one
//!    timestamp per read); a connection whose response completed takes the oldest
//!    waiting request, or goes to the back of the idle FIFO.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use super::arrivals::Arrivals;
use super::conn::{Conn, Request, State, Window};
use super::plan::Plan;
use super::tally::Tally;
use crate::load::conn::Close;
use crate::load::sys::{self, token, Epoll, Timer, ERR, IN, OUT};

/// How often the connections and the waiting FIFO are scanned for a request waiting past
/// the timeout: a stall is thus noticed within `timeout + SCAN_NS`.
const SCAN_NS: u64 = 50_000_000;
/// The longest `epoll_wait`: bounds how late a thread sees another thread's stop.
/// Arrivals do not depend on it (the timer wakes the thread for each).
const MAX_WAIT_MS: u64 = 20;
/// Bytes read at once.
const READ_BUF: usize = 64 * 1024;
/// Events taken from one `epoll_wait`.
const EVENTS: usize = 512;
/// The longest the waiting FIFO may grow (16 bytes an entry: 16 MiB). A server that far
/// behind is not being measured any more; the run stops with errors instead of growing
/// without bound.
const MAX_WAITING: usize = 1 << 20;
/// The epoll token of the timer (a connection's token has its index, always smaller, in
/// the low half).
const TIMER: u64 = u64::MAX;

/// The per-thread settings of the load, taken from the spec.
pub(crate) struct Settings {
    pub addr: SocketAddr,
    pub warmup_ns: u64,
    pub duration_ns: u64,
    pub timeout_ns: u64,
    pub busy_poll: bool,
}

/// A request due that found no idle connection.
struct Waiting {
    class: u32,
    scheduled_ns: u64,
}

/// One load thread's pool share, schedule and figures.
pub(crate) struct Worker<'a> {
    plan: &'a Plan,
    settings: &'a Settings,
    stop: &'a AtomicBool,
    arrivals: Arrivals,
    epoll: Epoll,
    timer: Timer,
    conns: Vec<Conn>,
    /// The `Idle` connections, idle longest first.
    idle: VecDeque<u32>,
    /// Requests due with no idle connection, oldest first.
    waiting: VecDeque<Waiting>,
    /// `Busy` connections.
    busy: usize,
    /// Connections not `Finished`.
    live: usize,
    buf: Box<[u8]>,
    tally: Tally,
}

impl<'a> Worker<'a> {
    /// A worker for the open sockets `conns`, with its own `arrivals`.
    pub(crate) fn new(
        plan: &'a Plan,
        settings: &'a Settings,
        stop: &'a AtomicBool,
        arrivals: Arrivals,
        conns: Vec<OwnedFd>,
    ) -> std::io::Result<Worker<'a>> {
        let epoll = Epoll::new()?;
        let timer = Timer::new()?;
        epoll.add(timer.raw_fd(), IN, TIMER)?;
        let conns: Vec<Conn> = conns.into_iter().map(Conn::new).collect();
        for (i, c) in conns.iter().enumerate() {
            epoll.add(c.raw_fd(), IN, token(i, 0))?;
        }
        Ok(Worker {
            plan,
            settings,
            stop,
            arrivals,
            epoll,
            timer,
            idle: (0..conns.len() as u32).collect(),
            waiting: VecDeque::new(),
            busy: 0,
            live: conns.len(),
            conns,
            buf: vec![0; READ_BUF].into_boxed_slice(),
            tally: Tally::new(plan.classes.len()),
        })
    }

    /// Runs the load that started at `t0_ns`; returns what this thread counted.
    pub(crate) fn run(mut self, t0_ns: u64) -> Tally {
        let s = self.settings;
        let win = Window { warm_end_ns: t0_ns + s.warmup_ns, send_end_ns: t0_ns + s.duration_ns };
        let deadline = win.send_end_ns + s.timeout_ns;
        let mut cpu_start = (s.warmup_ns == 0).then(sys::thread_cpu_ns);
        let mut next = self.next_arrival(t0_ns, win);
        let mut armed = None;
        let mut next_scan = t0_ns + SCAN_NS;
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        loop {
            let now = sys::now_ns();
            if cpu_start.is_none() && now >= win.warm_end_ns {
                cpu_start = Some(sys::thread_cpu_ns());
            }
            while let Some((at, class)) = next.filter(|&(at, _)| at <= now) {
                if let Err(msg) = self.dispatch(class, at, now, win) {
                    self.stop_run(|n| format!("{msg}; stopping the run with {n} request(s) unanswered"));
                    return self.end(cpu_start);
                }
                next = self.next_arrival(t0_ns, win);
            }
            if next.is_none() && self.busy == 0 && self.waiting.is_empty() {
                return self.end(cpu_start);
            }
            if now >= deadline {
                let secs = (deadline - t0_ns) as f64 / 1e9;
                self.stop_run(|n| {
                    format!("the load ran past duration + timeout ({secs:.1} s), {n} request(s) unanswered")
                });
                return self.end(cpu_start);
            }
            if self.stop.load(Ordering::Relaxed) {
                self.abandon_all(|n| {
                    format!("stopped with {n} request(s) unanswered: another load thread timed out")
                });
                return self.end(cpu_start);
            }
            if self.live == 0 {
                self.stop_run(|n| {
                    format!("no connection left (every reconnect failed); {n} request(s) unanswered")
                });
                return self.end(cpu_start);
            }
            if now >= next_scan {
                next_scan = now + SCAN_NS;
                if let Some(msg) = self.find_stall(now) {
                    self.stop_run(|n| format!("{msg}; stopping the run with {n} request(s) unanswered"));
                    return self.end(cpu_start);
                }
            }
            if let Some((at, _)) = next.filter(|_| !s.busy_poll) {
                if armed != Some(at) {
                    if let Err(e) = self.timer.set_at(at) {
                        self.stop_run(|n| format!("timerfd_settime: {e}; {n} request(s) unanswered"));
                        return self.end(cpu_start);
                    }
                    armed = Some(at);
                }
            }
            let wake = next_scan.min(deadline);
            let wait_ms = if s.busy_poll {
                0
            } else {
                wake.saturating_sub(now).div_ceil(1_000_000).min(MAX_WAIT_MS) as i32
            };
            let n = self.epoll.wait(&mut events, wait_ms);
            for ev in &events[..n] {
                if ev.u64 == TIMER {
                    self.timer.clear();
                    continue;
                }
                let (i, generation) = ((ev.u64 & 0xffff_ffff) as usize, (ev.u64 >> 32) as u32);
                if self.conns[i].generation == generation {
                    self.on_event(i, ev.events, win);
                }
            }
        }
    }

    /// The tally, with the CPU time since `cpu_start`.
    fn end(mut self, cpu_start: Option<u64>) -> Tally {
        self.tally.cpu_ns = cpu_start.map_or(0, |c| sys::thread_cpu_ns().saturating_sub(c));
        self.tally
    }

    /// The next arrival (absolute time, class), or `None` if it falls past the end of
    /// the schedule.
    fn next_arrival(&mut self, t0_ns: u64, win: Window) -> Option<(u64, u32)> {
        let (offset, class) = self.arrivals.next();
        let at = t0_ns + offset;
        (at < win.send_end_ns).then_some((at, class))
    }

    /// Hands the arrival of `class` due at `at` to the connection idle longest, or queues
    /// it. `Err` if the waiting FIFO is full.
    fn dispatch(&mut self, class: u32, at: u64, now: u64, win: Window) -> Result<(), String> {
        let req = Request { class, scheduled_ns: at, handed_ns: now };
        match self.idle.pop_front() {
            Some(i) => self.hand(i as usize, req, win),
            None if self.waiting.len() >= MAX_WAITING => {
                return Err(format!(
                    "{MAX_WAITING} requests are waiting for a connection: the server is far behind"
                ))
            }
            None => {
                if at >= win.warm_end_ns {
                    self.tally.queued += 1;
                }
                self.waiting.push_back(Waiting { class, scheduled_ns: at });
            }
        }
        Ok(())
    }

    /// Sends `req` on idle connection `i`.
    fn hand(&mut self, i: usize, req: Request, win: Window) {
        self.busy += 1;
        let r = self.conns[i].send(req, self.plan, win, &mut self.tally);
        self.settle(i, r);
    }

    /// Connection `i` has become idle: it takes the oldest waiting request, or joins the
    /// back of the idle FIFO.
    fn became_idle(&mut self, i: usize, win: Window) {
        self.conns[i].state = State::Idle;
        match self.waiting.pop_front() {
            Some(w) => {
                let req = Request { class: w.class, scheduled_ns: w.scheduled_ns, handed_ns: sys::now_ns() };
                self.hand(i, req, win);
            }
            None => self.idle.push_back(i as u32),
        }
    }

    /// Handles the readiness `flags` of connection `i`.
    fn on_event(&mut self, i: usize, flags: u32, win: Window) {
        match self.conns[i].state {
            State::Finished => {}
            // Only writability (or an error) says the connect has ended.
            State::Connecting(_) if flags & (OUT | ERR) == 0 => {}
            State::Connecting(_) => match sys::socket_error(self.conns[i].raw_fd()) {
                0 => {
                    self.settle(i, Ok(()));
                    self.became_idle(i, win);
                }
                e => {
                    let addr = self.settings.addr;
                    self.tally.errors(None, 1, || {
                        format!("reconnect to {addr} failed: {}", std::io::Error::from_raw_os_error(e))
                    });
                    self.finish(i);
                }
            },
            State::Idle | State::Busy => {
                let r = self.read_all(i, win);
                let completed = self.conns[i].take_completed();
                if completed {
                    self.busy -= 1;
                }
                let r = match r {
                    Ok(()) if flags & OUT != 0 => self.conns[i].flush(self.plan, win, &mut self.tally),
                    other => other,
                };
                self.settle(i, r);
                if completed && self.conns[i].state == State::Idle {
                    self.became_idle(i, win);
                }
            }
        }
    }

    /// Reads connection `i` until a short read, `EAGAIN` or the end of the stream,
    /// consuming what arrives.
    fn read_all(&mut self, i: usize, win: Window) -> Result<(), Close> {
        let c = &mut self.conns[i];
        let fd = c.raw_fd();
        loop {
            match sys::recv(fd, &mut self.buf) {
                Ok(0) if c.state == State::Idle => return Err(Close::Graceful),
                Ok(0) => return Err(Close::Eof),
                Ok(n) => {
                    let t = sys::now_ns();
                    c.consume(&self.buf[..n], t, self.plan, win, &mut self.tally)?;
                    if n < self.buf.len() {
                        return Ok(());
                    }
                }
                Err(libc::EAGAIN) => return Ok(()),
                Err(libc::EINTR) => {}
                Err(e) => return Err(Close::Io(e)),
            }
        }
    }

    /// After work on connection `i` that ended with `r`: closes and reconnects it on an
    /// error, and keeps its `EPOLLOUT` interest right.
    fn settle(&mut self, i: usize, r: Result<(), Close>) {
        if let Err(why) = r {
            let was_idle = self.conns[i].state == State::Idle;
            if self.conns[i].drop_socket(why, self.plan, &mut self.tally) {
                self.busy -= 1;
            }
            if was_idle {
                self.idle.retain(|&j| j as usize != i);
            }
            self.reconnect(i);
            return;
        }
        let c = &mut self.conns[i];
        let pending = c.pending(self.plan);
        if c.fd.is_some() && pending != c.watching_out {
            c.watching_out = pending;
            let events = if pending { IN | OUT } else { IN };
            if let Err(e) = self.epoll.modify(c.raw_fd(), events, token(i, c.generation)) {
                self.settle(i, Err(Close::Io(e.raw_os_error().unwrap_or(libc::EIO))));
            }
        }
    }

    /// Ends connection `i` for good.
    fn finish(&mut self, i: usize) {
        let state = self.conns[i].state;
        if state == State::Finished {
            return;
        }
        if state == State::Idle {
            self.idle.retain(|&j| j as usize != i);
        }
        let c = &mut self.conns[i];
        c.state = State::Finished;
        c.fd = None; // closing the socket also takes it out of the epoll set
        self.live -= 1;
    }

    /// Opens a new socket for connection `i`; it becomes idle when the epoll reports it
    /// writable (connected).
    fn reconnect(&mut self, i: usize) {
        let generation = self.conns[i].generation.wrapping_add(1);
        match sys::reopen(&self.epoll, &self.settings.addr, i, generation) {
            Ok(fd) => {
                let c = &mut self.conns[i];
                c.generation = generation;
                c.fd = Some(fd);
                c.state = State::Connecting(sys::now_ns());
                c.watching_out = true;
            }
            Err(e) => {
                self.tally.errors(None, 1, move || e);
                self.finish(i);
            }
        }
    }

    /// Describes the oldest request or connect waiting for longer than the timeout, if
    /// any.
    fn find_stall(&self, now: u64) -> Option<String> {
        let limit = self.settings.timeout_ns;
        let secs = limit as f64 / 1e9;
        if let Some(w) = self.waiting.front() {
            if now.saturating_sub(w.scheduled_ns) >= limit {
                let line = &self.plan.classes[w.class as usize].line;
                return Some(format!("{line}: no connection free for {secs:.3} s (timeout)"));
            }
        }
        for c in &self.conns {
            match (c.state, c.request()) {
                (State::Busy, Some(r)) if now.saturating_sub(r.handed_ns) >= limit => {
                    let line = &self.plan.classes[r.class as usize].line;
                    return Some(format!("{line}: no answer after {secs:.3} s (timeout)"));
                }
                (State::Connecting(since), _) if now.saturating_sub(since) >= limit => {
                    return Some(format!("connect: no answer after {secs:.3} s (timeout)"));
                }
                _ => {}
            }
        }
        None
    }

    /// Stops the whole run: tells the other threads, counts this thread's unanswered
    /// requests as errors (at least one: the stop itself is one).
    fn stop_run(&mut self, why: impl FnOnce(usize) -> String) {
        self.stop.store(true, Ordering::Relaxed);
        let n = self.abandon();
        self.tally.errors(None, n.max(1) as u64, || why(n));
    }

    /// Counts this thread's unanswered requests as errors (the run is stopping).
    fn abandon_all(&mut self, why: impl FnOnce(usize) -> String) {
        let n = self.abandon();
        if n > 0 {
            self.tally.errors(None, n as u64, || why(n));
        }
    }

    /// Ends every connection and empties the waiting FIFO; returns how many requests
    /// were unanswered, each also counted against its class (the caller counts them in
    /// all, with one description).
    fn abandon(&mut self) -> usize {
        let mut lost: Vec<u32> = self.waiting.drain(..).map(|w| w.class).collect();
        self.idle.clear();
        for i in 0..self.conns.len() {
            if let Some(r) = self.conns[i].request() {
                lost.push(r.class);
            }
            self.finish(i);
        }
        for &c in &lost {
            self.tally.classes[c as usize].errors += 1;
        }
        self.busy = 0;
        lost.len()
    }
}
