//! Workers: the request code every variant runs.
//!
//! A worker takes a connection from its shard's queue and gives it one *turn*:
//!
//! 1. write what an earlier turn could not (the socket was full); if it still cannot,
//!    the connection waits for `EPOLLOUT` without a worker;
//! 2. read once, after any bytes kept from the last turn; parse and answer requests in
//!    order, up to the burst length (the thesis' 10: its "back at the head while the
//!    burst lasts" is this loop, without the queue round trips);
//! 3. write every answer of the turn together (`Output::flush`): pipelined responses
//!    leave in order, usually in one `sendmsg`;
//! 4. then, as the thesis does: a connection with more to serve after its burst goes to
//!    the *tail* of the queue (waking another worker); one that may have more to read
//!    takes another turn now; one with nothing goes idle, back to its poller, holding no
//!    worker and no buffer. A read that filled the buffer means the socket may hold
//!    more; a shorter one emptied it, so the worker need not ask again (edge-triggered
//!    readiness reports what arrives next).
//!
//! A connection whose request head stalls (a byte a second) is no different from an
//! idle one: its bytes wait in the connection, and the poller closes it when the head
//! has not completed within the idle timeout.

use std::sync::atomic::Ordering;

use crate::conn::Conn;
use crate::date::DateCache;
use crate::handler::{self, Timing};
use crate::http::{self, Method, Parsed, Request};
use crate::output::{Flushed, Output};
use crate::server::Server;
use crate::status::Status;
use crate::work::{self, Work};
use crate::{path, respond, sys, urlcmd};

/// Bytes a worker reads at once: two maximal request heads.
pub const IN_BUF: usize = 2 * http::MAX_HEAD;

/// A worker's buffers and caches, reused from turn to turn.
pub struct Worker<'s> {
    srv: &'s Server,
    shard: usize,
    inbuf: Vec<u8>,
    resp: Responder<'s>,
}

/// What answering needs, apart from the input buffer it answers from.
struct Responder<'s> {
    srv: &'s Server,
    out: Output,
    date: DateCache,
    path: Vec<u8>,
}

/// Runs worker of shard `shard` until its queue closes.
pub fn run(srv: &Server, shard: usize) {
    let mut w = Worker {
        srv,
        shard,
        inbuf: Vec::with_capacity(IN_BUF),
        resp: Responder {
            srv,
            out: Output::default(),
            date: DateCache::default(),
            path: Vec::with_capacity(256),
        },
    };
    let q = srv.shards[shard].queue.clone();
    while let Some(slot) = q.pop() {
        let Some(c) = srv.conns.get(slot) else { continue };
        w.turn(slot, c);
        srv.rt.yield_now(); // the poller's connections wait otherwise (`Runtime::yield_now`)
    }
}

impl Worker<'_> {
    /// One turn of connection `slot` (module docs), which the caller owns.
    fn turn(&mut self, slot: u32, c: &Conn) {
        let fd = c.fd.load(Ordering::Relaxed);
        // SAFETY: the queue handed us the connection: we own it until we hand it on.
        let d = unsafe { c.data() };
        let burst = self.srv.config.burst;
        let mut served = 0;
        loop {
            c.begin_turn();
            // 1. What an earlier turn left unwritten.
            if let Some(p) = d.pending.as_mut() {
                match p.flush(fd) {
                    Ok(Flushed::Done) => d.pending = None,
                    Ok(Flushed::Blocked) => {
                        if c.try_idle(d.since_ns + self.srv.idle_timeout_ns()) {
                            return;
                        }
                        continue;
                    }
                    Err(_) => return self.close(slot, c),
                }
                if d.close_after_flush {
                    return self.close(slot, c);
                }
            }
            // 2. Read and answer.
            self.inbuf.clear();
            self.inbuf.append(&mut d.leftover); // keeps its capacity for what is left over
            let mut pos = 0;
            let mut read = Read::NotYet;
            let mut close = false;
            let served_before = served;
            while served < burst && !close {
                if d.skip > 0 {
                    let k = d.skip.min((self.inbuf.len() - pos) as u64);
                    pos += k as usize;
                    d.skip -= k;
                }
                let parsed = if d.skip > 0 { Parsed::Partial } else { http::parse(&self.inbuf[pos..]) };
                match parsed {
                    Parsed::Request(r) => {
                        let (used, keep) = self.resp.answer(&r, c);
                        pos += used;
                        d.skip = r.body_len;
                        close = !keep;
                        served += 1;
                    }
                    Parsed::Refused { status, consumed, body_len, keep_alive, head } => {
                        let keep = keep_alive && !self.srv.stopping();
                        respond::error_page(&mut self.resp.out, status, keep, head, &mut self.resp.date);
                        pos += consumed;
                        d.skip = body_len;
                        close = !keep;
                        served += 1;
                    }
                    Parsed::Partial if read == Read::NotYet => {
                        self.inbuf.drain(..pos);
                        pos = 0;
                        read = self.read(fd);
                    }
                    Parsed::Partial => break,
                }
            }
            // The peer shut its side and a read found nothing after its last bytes: the
            // stream has ended (the report that said so was taken by `begin_turn`).
            if read == Read::Drained && served < burst && c.peer_closed.load(Ordering::Relaxed) {
                read = Read::Eof;
            }
            if served > served_before {
                self.srv.count((served - served_before) as u64);
                d.since_ns = sys::coarse_now_ns();
            }
            // 3. Write the turn's answers together.
            let flushed = match self.resp.out.flush(fd) {
                Ok(f) => f,
                Err(_) => {
                    self.resp.out.clear();
                    return self.close(slot, c);
                }
            };
            if pos < self.inbuf.len() && !close {
                d.leftover.extend_from_slice(&self.inbuf[pos..]);
            } else {
                d.leftover = Vec::new(); // an idle connection holds no buffer
            }
            let finished = close || read == Read::Eof;
            if flushed == Flushed::Blocked {
                d.pending = Some(Box::new(std::mem::take(&mut self.resp.out)));
                d.close_after_flush = finished;
                if c.try_idle(d.since_ns + self.srv.idle_timeout_ns()) {
                    return;
                }
                continue;
            }
            if finished || read == Read::Failed {
                return self.close(slot, c);
            }
            // 4. Where the connection goes next. It may go idle only once a read this turn
            //    found the socket empty: `begin_turn` consumed the readiness that announced
            //    any bytes still unread, and no new edge comes for them.
            let more = match read {
                Read::NotYet | Read::Full => true,
                _ => served >= burst && !d.leftover.is_empty(), // complete requests wait
            };
            if more && served >= burst {
                self.srv.shards[self.shard].queue.push(slot); // the tail, as the thesis
                return;
            }
            if !more && c.try_idle(d.since_ns + self.srv.idle_timeout_ns()) {
                return;
            }
        }
    }

    /// Reads what the socket has into the free end of the buffer.
    fn read(&mut self, fd: i32) -> Read {
        let len = self.inbuf.len();
        let room = IN_BUF.saturating_sub(len).max(1);
        self.inbuf.reserve(room);
        let spare = self.inbuf.spare_capacity_mut();
        // SAFETY: the kernel writes at most `room` bytes into the spare capacity, which
        // `reserve` made at least that long; `MaybeUninit<u8>` and `u8` share a layout.
        let buf = unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<u8>(), room) };
        match sys::read(fd, buf) {
            Ok(0) => Read::Eof,
            Ok(n) => {
                // SAFETY: the kernel initialised `n` bytes past `len`.
                unsafe { self.inbuf.set_len(len + n) };
                if n == room {
                    Read::Full
                } else {
                    Read::Drained
                }
            }
            Err(libc::EAGAIN) => Read::Drained,
            Err(_) => Read::Failed,
        }
    }

    fn close(&mut self, slot: u32, c: &Conn) {
        self.srv.close(slot, c);
    }
}

impl Responder<'_> {
    /// Answers request `r`: returns the bytes of its head and whether the connection
    /// stays open.
    fn answer(&mut self, r: &Request<'_>, c: &Conn) -> (usize, bool) {
        let keep = r.keep_alive && !self.srv.stopping();
        let head = r.method == Method::Head;
        if self.srv.config.url_cmd {
            if let Some(cmd) = r.path.strip_prefix(urlcmd::PREFIX) {
                let reply = urlcmd::run(self.srv, cmd, r.query, c.loopback.load(Ordering::Relaxed));
                match reply {
                    Ok(text) => respond::text(&mut self.out, Status::Ok, &text, keep, head, &mut self.date),
                    Err(s) => respond::error_page(&mut self.out, s, keep, head, &mut self.date),
                }
                return (r.head_len, keep);
            }
        }
        if r.path == b"/work" {
            if let Some(w) = self.srv.work {
                return (r.head_len, self.work(&w, r, c, keep, head));
            }
        }
        let found = path::resolve(r.path, &mut self.path).and_then(|dir| self.srv.files.get(&self.path, dir));
        match found {
            Ok(e) => respond::file(&mut self.out, &e, keep, head, &mut self.date),
            Err(s) => respond::error_page(&mut self.out, s, keep, head, &mut self.date),
        }
        (r.head_len, keep)
    }

    /// Answers `/work` (`work` module): runs its handler inline or as a timed call.
    /// Returns whether the connection stays open (the server may have begun stopping
    /// while the handler ran).
    fn work(&mut self, w: &Work, r: &Request<'_>, c: &Conn, keep: bool, head: bool) -> bool {
        let srv = self.srv;
        let timing = srv.config.quantum.map(|quantum| Timing { quantum, budget: srv.config.handler_budget });
        let answer = w.parse(r.query, timing.is_some()).and_then(|job| {
            if head {
                return Ok(work::body(job.steps, 0)); // the same length, without the work
            }
            let hash = match timing {
                None => handler::run_inline(job, &srv.handlers),
                Some(t) => {
                    let fd = c.fd.load(Ordering::Relaxed);
                    let shard = c.shard.load(Ordering::Relaxed) as usize;
                    let out = &mut self.out;
                    handler::run_timed(job, t, &srv.handlers, || {
                        // The answers before this one may leave now (`handler` docs, step 2).
                        // A stopping server cancels its long handlers rather than wait.
                        if out.flush(fd).is_err() || srv.stopping() {
                            return false;
                        }
                        // Step 3: the poller first queues what arrived meanwhile.
                        srv.rt.yield_now();
                        srv.shards[shard].queue.wait_turn();
                        true
                    })
                }
            }?;
            Ok(work::body(job.steps, hash))
        });
        let keep = keep && !srv.stopping();
        match answer {
            Ok(body) => respond::text(&mut self.out, Status::Ok, &body, keep, head, &mut self.date),
            Err(s) => respond::error_page(&mut self.out, s, keep, head, &mut self.date),
        }
        keep
    }
}

/// What this turn's read found.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    /// No read yet this turn.
    NotYet,
    /// It filled the buffer: the socket may hold more.
    Full,
    /// It took everything the socket had.
    Drained,
    /// The peer closed its side.
    Eof,
    /// The connection failed.
    Failed,
}
