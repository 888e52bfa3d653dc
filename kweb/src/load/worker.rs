//! A load thread: one epoll instance over its share of the connections, and the loop
//! that keeps each of them `in_flight` requests deep until the run ends.
//!
//! Each turn of the loop:
//!
//! 1. reads the clock once, and stops sending when `duration` has passed;
//! 2. stops the run if it passed its hard deadline, if another thread stopped it, or
//!    (checked every [`SCAN_NS`]) if a request has been outstanding for `timeout`;
//! 3. waits in `epoll_wait` (level-triggered) for at most [`MAX_WAIT_MS`];
//! 4. for each ready connection: reads until a short read, completing every response
//!    each read holds (one timestamp per read), then sends the replacements of all the
//!    completed requests in one `send` (one timestamp per send).
//!
//! Level-triggered epoll with "read until a short read" costs one `recv` per readiness
//! in the common case; edge-triggered would need a second `recv` to see `EAGAIN`.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use super::conn::{Close, Conn, Ctx, State};
use super::plan::Plan;
use super::stats::Tally;
use super::sys::{self, token, Epoll, ERR, IN, OUT};

/// How often the connections are scanned for a request outstanding past the timeout. A
/// stall is thus noticed within `timeout + SCAN_NS`.
const SCAN_NS: u64 = 50_000_000;
/// The longest `epoll_wait`: bounds how late a thread sees the end of `duration` or
/// another thread's stop (a run's length is measured in seconds; 20 ms is noise).
const MAX_WAIT_MS: u64 = 20;
/// Bytes read at once: many pipelined responses per `recv`.
const READ_BUF: usize = 64 * 1024;
/// Events taken from one `epoll_wait`.
const EVENTS: usize = 512;

/// The per-thread settings of the load, taken from the spec.
pub(crate) struct Settings {
    pub addr: SocketAddr,
    pub in_flight: usize,
    pub budget: Option<u64>,
    pub warmup_ns: u64,
    pub duration_ns: Option<u64>,
    pub timeout_ns: u64,
}

/// One load thread's connections and figures.
pub(crate) struct Worker<'a> {
    plan: &'a Plan,
    settings: &'a Settings,
    stop: &'a AtomicBool,
    epoll: Epoll,
    conns: Vec<Conn>,
    /// Connections not yet `Finished`.
    live: usize,
    buf: Box<[u8]>,
    tally: Tally,
}

impl<'a> Worker<'a> {
    /// A worker for `conns`, each an open socket and the URL index it starts with.
    pub(crate) fn new(
        plan: &'a Plan,
        settings: &'a Settings,
        stop: &'a AtomicBool,
        conns: Vec<(OwnedFd, usize)>,
    ) -> std::io::Result<Worker<'a>> {
        let epoll = Epoll::new()?;
        let conns: Vec<Conn> =
            conns.into_iter().map(|(fd, first)| Conn::new(fd, first, settings.in_flight)).collect();
        for (i, c) in conns.iter().enumerate() {
            epoll.add(c.raw_fd(), IN, token(i, 0))?;
        }
        Ok(Worker {
            plan,
            settings,
            stop,
            epoll,
            live: conns.len(),
            conns,
            buf: vec![0; READ_BUF].into_boxed_slice(),
            tally: Tally::new(),
        })
    }

    /// Runs the load that started at `t0_ns`; returns what this thread counted.
    pub(crate) fn run(mut self, t0_ns: u64) -> Tally {
        let s = self.settings;
        let warm_end_ns = t0_ns + s.warmup_ns;
        let send_end = s.duration_ns.map(|d| t0_ns + d);
        let deadline = t0_ns + s.duration_ns.unwrap_or(0) + s.timeout_ns;
        let mut ctx =
            Ctx { plan: self.plan, in_flight: s.in_flight, budget: s.budget, warm_end_ns, sending: true };
        let mut cpu_start = (s.warmup_ns == 0).then(sys::thread_cpu_ns);

        for i in 0..self.conns.len() {
            let r = self.conns[i].fill(&ctx);
            self.settle(i, r, &ctx);
        }
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        let mut next_scan = t0_ns + SCAN_NS;
        while self.live > 0 {
            let now = sys::now_ns();
            if cpu_start.is_none() && now >= warm_end_ns {
                cpu_start = Some(sys::thread_cpu_ns());
            }
            if ctx.sending && send_end.is_some_and(|e| now >= e) {
                ctx.sending = false;
                for i in 0..self.conns.len() {
                    self.finish_if_done(i, &ctx);
                }
                continue;
            }
            if now >= deadline {
                let secs = (deadline - t0_ns) as f64 / 1e9;
                self.stop_run(|n| {
                    format!("the load ran past duration + timeout ({secs:.1} s), {n} request(s) outstanding")
                });
                break;
            }
            if self.stop.load(Ordering::Relaxed) {
                self.abandon_all(|n| {
                    format!("stopped with {n} request(s) outstanding: another load thread timed out")
                });
                break;
            }
            if now >= next_scan {
                next_scan = now + SCAN_NS;
                if let Some(msg) = self.find_stall(now) {
                    self.stop_run(|n| format!("{msg}; stopping the run with {n} request(s) outstanding"));
                    break;
                }
            }
            let mut wake = next_scan.min(deadline);
            if ctx.sending {
                wake = wake.min(send_end.unwrap_or(u64::MAX));
            }
            let wait_ms = wake.saturating_sub(now).div_ceil(1_000_000).min(MAX_WAIT_MS) as i32;
            let n = self.epoll.wait(&mut events, wait_ms);
            for ev in &events[..n] {
                let (i, generation) = ((ev.u64 & 0xffff_ffff) as usize, (ev.u64 >> 32) as u32);
                let flags = ev.events;
                if self.conns[i].generation == generation {
                    self.on_event(i, flags, &ctx);
                }
            }
        }
        self.tally.cpu_ns = cpu_start.map_or(0, |c| sys::thread_cpu_ns().saturating_sub(c));
        self.tally
    }

    /// Handles the readiness `flags` of connection `i`.
    fn on_event(&mut self, i: usize, flags: u32, ctx: &Ctx<'_>) {
        match self.conns[i].state {
            State::Finished => {}
            // Only writability (or an error) says the connect has ended.
            State::Connecting(_) if flags & (OUT | ERR) == 0 => {}
            State::Connecting(_) => {
                let c = &mut self.conns[i];
                match sys::socket_error(c.raw_fd()) {
                    0 => {
                        c.state = State::Open;
                        let r = c.fill(ctx);
                        self.settle(i, r, ctx);
                    }
                    e => {
                        let addr = self.settings.addr;
                        self.tally.errors(1, || {
                            format!("reconnect to {addr} failed: {}", std::io::Error::from_raw_os_error(e))
                        });
                        self.finish(i);
                    }
                }
            }
            State::Open => {
                let r = self.read_all(i, ctx);
                let r = r.and_then(|()| {
                    let c = &mut self.conns[i];
                    if flags & OUT != 0 || !c.pending() {
                        c.flush(ctx)
                    } else {
                        Ok(())
                    }
                });
                self.settle(i, r, ctx);
            }
        }
    }

    /// Reads connection `i` until a short read, `EAGAIN` or the end of the stream,
    /// consuming what arrives.
    #[inline]
    fn read_all(&mut self, i: usize, ctx: &Ctx<'_>) -> Result<(), Close> {
        let c = &mut self.conns[i];
        let fd = c.raw_fd();
        loop {
            match sys::recv(fd, &mut self.buf) {
                Ok(0) if c.outstanding().len() == 0 => return Err(Close::Graceful),
                Ok(0) => return Err(Close::Eof),
                Ok(n) => {
                    let t = sys::now_ns();
                    c.consume(&self.buf[..n], t, ctx, &mut self.tally)?;
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
    /// error, keeps its `EPOLLOUT` interest right, finishes it when its work is done.
    fn settle(&mut self, i: usize, r: Result<(), Close>, ctx: &Ctx<'_>) {
        if let Err(why) = r {
            self.conns[i].drop_socket(why, ctx, &mut self.tally);
            if self.conns[i].is_done(ctx) {
                self.finish(i);
            } else {
                self.reconnect(i);
            }
            return;
        }
        if self.finish_if_done(i, ctx) {
            return;
        }
        let c = &mut self.conns[i];
        if c.state == State::Open && c.pending() != c.watching_out {
            c.watching_out = c.pending();
            let events = if c.watching_out { IN | OUT } else { IN };
            if let Err(e) = self.epoll.modify(c.raw_fd(), events, token(i, c.generation)) {
                self.tally.errors(1, || format!("epoll_ctl: {e}"));
                self.finish(i);
            }
        }
    }

    /// Finishes connection `i` if it has nothing more to do; returns whether it is
    /// finished.
    fn finish_if_done(&mut self, i: usize, ctx: &Ctx<'_>) -> bool {
        let c = &self.conns[i];
        if c.state == State::Finished {
            return true;
        }
        if c.is_done(ctx) {
            self.finish(i);
            return true;
        }
        false
    }

    fn finish(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.state != State::Finished {
            c.state = State::Finished;
            c.fd = None; // closing the socket also takes it out of the epoll set
            self.live -= 1;
        }
    }

    /// Opens a new socket for connection `i`. The first requests go out when the epoll
    /// reports it writable (connected), from the main loop, so that a server that resets
    /// every connection cannot keep this thread from checking its clock.
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
                self.tally.errors(1, move || e);
                self.finish(i);
            }
        }
    }

    /// Describes the oldest request outstanding for longer than the timeout, if any.
    fn find_stall(&self, now: u64) -> Option<String> {
        let limit = self.settings.timeout_ns;
        for c in &self.conns {
            let since = match c.state {
                State::Connecting(since) => since,
                State::Open => match c.outstanding().front() {
                    Some(e) => e.sent_ns,
                    None => continue,
                },
                State::Finished => continue,
            };
            if now.saturating_sub(since) >= limit {
                let what = match (c.state, c.outstanding().front()) {
                    (State::Open, Some(e)) => self.plan.request_line(e.url).to_owned(),
                    _ => "connect".to_owned(),
                };
                return Some(format!("{what}: no answer after {:.3} s (timeout)", limit as f64 / 1e9));
            }
        }
        None
    }

    /// Stops the whole run: tells the other threads, counts this thread's outstanding
    /// requests as errors (at least one: the stop itself is one).
    fn stop_run(&mut self, why: impl FnOnce(usize) -> String) {
        self.stop.store(true, Ordering::Relaxed);
        let n = self.abandon_count();
        self.tally.errors(n.max(1) as u64, || why(n));
    }

    /// Counts this thread's outstanding requests as errors (the run is stopping).
    fn abandon_all(&mut self, why: impl FnOnce(usize) -> String) {
        let n = self.abandon_count();
        if n > 0 {
            self.tally.errors(n as u64, || why(n));
        }
    }

    fn abandon_count(&mut self) -> usize {
        let mut n = 0;
        for i in 0..self.conns.len() {
            n += self.conns[i].abandon();
            self.finish(i);
        }
        n
    }
}
