//! One load connection: its queue of outstanding requests, the response it is in the
//! middle of, and the tail of a batch the socket did not take yet.
//!
//! A connection is a small state machine:
//!
//! | state | means | leaves when |
//! |---|---|---|
//! | `Connecting` | a non-blocking (re)connect is under way | the socket is writable: `Open`, or the connect failed: `Finished` |
//! | `Open` | requests go out, responses come in | its work is done, or the socket closes (then `Connecting` again or `Finished`) |
//! | `Finished` | done (or dead); its socket is closed | never |
//!
//! Within `Open`, responses are matched to requests in FIFO order: the oldest
//! outstanding request owns the next response, which must carry the status and
//! `Content-Length` the probe saw for that request's URL.
//!
//! Accounting: `sent` counts requests put on the wire, `answered` requests whose fate is
//! known (a response, right or wrong, or lost with the connection). A connection with a
//! budget (`requests_per_conn`) is done when `answered` reaches it; requests lost with a
//! failed connection count as answered (and as errors), so a server that keeps failing
//! cannot keep the run going. Requests the server declined to answer after a
//! `Connection: close` response are not errors: they are sent again on a new connection.

use std::os::fd::{AsRawFd, OwnedFd};

use super::plan::Plan;
use super::response::{parse_head, Head, Parse, MAX_HEAD};
use super::stats::Tally;
use super::sys;

/// One outstanding request.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Entry {
    /// Its URL index.
    pub url: u32,
    /// When the `send` that carried its last byte was made (`now_ns` clock).
    pub sent_ns: u64,
}

/// The outstanding requests of a connection, oldest first: a ring of fixed capacity
/// (`in_flight`), allocated once.
pub(crate) struct Fifo {
    slots: Box<[Entry]>,
    head: usize,
    len: usize,
}

impl Fifo {
    fn new(capacity: usize) -> Fifo {
        Fifo { slots: vec![Entry::default(); capacity].into_boxed_slice(), head: 0, len: 0 }
    }

    #[inline]
    fn slot(&self, i: usize) -> usize {
        let j = self.head + i;
        if j >= self.slots.len() {
            j - self.slots.len()
        } else {
            j
        }
    }

    #[inline]
    fn push(&mut self, e: Entry) {
        debug_assert!(self.len < self.slots.len());
        let s = self.slot(self.len);
        self.slots[s] = e;
        self.len += 1;
    }

    #[inline]
    pub(crate) fn front(&self) -> Option<Entry> {
        (self.len > 0).then(|| self.slots[self.head])
    }

    #[inline]
    fn pop(&mut self) -> Option<Entry> {
        let e = self.front()?;
        self.head = self.slot(1);
        self.len -= 1;
        Some(e)
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

/// Why a connection's socket is being closed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Close {
    /// The server ended the connection cleanly: `Connection: close` on a response, or
    /// end of stream with nothing outstanding. Unanswered requests are sent again.
    Graceful,
    /// End of stream with requests outstanding.
    Eof,
    /// A socket error (errno).
    Io(i32),
    /// A response that cannot be framed, and why.
    Framing(&'static str),
    /// A response with no request outstanding.
    Unsolicited,
}

/// Where a connection is (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Connect under way since this time (`now_ns` clock).
    Connecting(u64),
    /// Exchanging requests and responses.
    Open,
    /// Done; no socket.
    Finished,
}

/// What every connection of a thread works by.
pub(crate) struct Ctx<'a> {
    /// The request cycle and expectations.
    pub plan: &'a Plan,
    /// Requests to keep outstanding.
    pub in_flight: usize,
    /// Responses per connection, if limited.
    pub budget: Option<u64>,
    /// Responses completed before this time are not counted.
    pub warm_end_ns: u64,
    /// New requests may still be sent (false once `duration` has passed).
    pub sending: bool,
}

/// The response whose head has been read and whose body has not ended yet.
#[derive(Clone, Copy, Default)]
struct Current {
    status: u16,
    content_length: u64,
    head_len: u32,
    matches: bool,
    close: bool,
}

/// One load connection.
pub(crate) struct Conn {
    /// Its socket, while it has one.
    pub fd: Option<OwnedFd>,
    /// Where it is.
    pub state: State,
    /// Bumped at every reconnect; part of the epoll token, so that events of an old
    /// socket reported in the same batch are recognised as stale.
    pub generation: u32,
    /// `EPOLLOUT` is being watched for (an unsent tail, or a connect).
    pub watching_out: bool,
    fifo: Fifo,
    next_url: usize,
    sent: u64,
    answered: u64,
    body_left: u64,
    current: Current,
    /// The start of a response head that a read ended in the middle of.
    partial: Vec<u8>,
    /// Bytes `pend_at..pend_end` of the request cycle are still to be sent.
    pend_at: usize,
    pend_end: usize,
    /// The cycle position of the first request of the tail not wholly sent, and how many
    /// requests (at the back of the FIFO) are not wholly sent.
    pend_pos: usize,
    unsent: usize,
}

impl Conn {
    /// A connection whose first request is for URL `first_url`, open on `fd`.
    pub(crate) fn new(fd: OwnedFd, first_url: usize, in_flight: usize) -> Conn {
        Conn {
            fd: Some(fd),
            state: State::Open,
            generation: 0,
            watching_out: false,
            fifo: Fifo::new(in_flight),
            next_url: first_url,
            sent: 0,
            answered: 0,
            body_left: 0,
            current: Current::default(),
            partial: Vec::new(),
            pend_at: 0,
            pend_end: 0,
            pend_pos: 0,
            unsent: 0,
        }
    }

    /// The outstanding requests, oldest first.
    pub(crate) fn outstanding(&self) -> &Fifo {
        &self.fifo
    }

    /// A tail of requests waits for the socket to become writable.
    pub(crate) fn pending(&self) -> bool {
        self.pend_at < self.pend_end
    }

    /// The raw descriptor (-1 without a socket).
    pub(crate) fn raw_fd(&self) -> i32 {
        self.fd.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    /// Whether this connection has nothing more to do.
    pub(crate) fn is_done(&self, ctx: &Ctx<'_>) -> bool {
        ctx.budget.is_some_and(|b| self.answered >= b) || (!ctx.sending && self.fifo.len() == 0)
    }

    /// Sends as many new requests as the in-flight depth, the budget and the clock allow,
    /// in one `send`. A tail the socket does not take is kept for [`Conn::flush`].
    pub(crate) fn fill(&mut self, ctx: &Ctx<'_>) -> Result<(), Close> {
        if !ctx.sending || self.pending() || self.state != State::Open {
            return Ok(());
        }
        let mut k = ctx.in_flight - self.fifo.len();
        if let Some(b) = ctx.budget {
            k = k.min(b.saturating_sub(self.sent) as usize);
        }
        if k == 0 {
            return Ok(());
        }
        let plan = ctx.plan;
        let p = self.next_url;
        let (start, end) = (plan.offsets[p], plan.offsets[p + k]);
        let t = sys::now_ns();
        for &url in &plan.url_of[p..p + k] {
            self.fifo.push(Entry { url, sent_ns: t });
        }
        self.sent += k as u64;
        self.next_url = (p + k) % plan.urls();
        let wrote = match sys::send(self.raw_fd(), &plan.bytes[start..end]) {
            Ok(n) => n,
            Err(libc::EAGAIN | libc::EINTR) => 0,
            Err(e) => return Err(Close::Io(e)),
        };
        if start + wrote < end {
            // Rare: the socket buffer is full. The requests not wholly sent get their
            // send time when their last byte goes (`flush`).
            let first_unsent = (p..p + k).find(|&q| plan.offsets[q + 1] > start + wrote).unwrap_or(p + k);
            self.pend_at = start + wrote;
            self.pend_end = end;
            self.pend_pos = first_unsent;
            self.unsent = p + k - first_unsent;
        }
        Ok(())
    }

    /// Sends more of the tail [`Conn::fill`] left; when it is all gone, sends new requests.
    pub(crate) fn flush(&mut self, ctx: &Ctx<'_>) -> Result<(), Close> {
        if !self.pending() {
            return self.fill(ctx);
        }
        let plan = ctx.plan;
        let t = sys::now_ns();
        let wrote = match sys::send(self.raw_fd(), &plan.bytes[self.pend_at..self.pend_end]) {
            Ok(n) => n,
            Err(libc::EAGAIN | libc::EINTR) => return Ok(()),
            Err(e) => return Err(Close::Io(e)),
        };
        self.pend_at += wrote;
        while self.unsent > 0 && plan.offsets[self.pend_pos + 1] <= self.pend_at {
            let i = self.fifo.len() - self.unsent;
            let s = self.fifo.slot(i);
            self.fifo.slots[s].sent_ns = t;
            self.pend_pos += 1;
            self.unsent -= 1;
        }
        if self.pending() {
            Ok(())
        } else {
            self.pend_at = 0;
            self.pend_end = 0;
            self.fill(ctx)
        }
    }

    /// Takes in bytes read from the socket at time `t`: completes the responses they
    /// finish, keeps what is left of a head for the next read.
    pub(crate) fn consume(
        &mut self,
        mut data: &[u8],
        t: u64,
        ctx: &Ctx<'_>,
        tally: &mut Tally,
    ) -> Result<(), Close> {
        loop {
            if self.body_left > 0 {
                let take = self.body_left.min(data.len() as u64);
                self.body_left -= take;
                data = &data[take as usize..];
                if self.body_left > 0 {
                    return Ok(());
                }
                self.complete(t, ctx, tally)?;
            }
            if data.is_empty() {
                return Ok(());
            }
            let parsed = if self.partial.is_empty() {
                parse_head(data)
            } else {
                // A head split across reads: gather it (bounded by MAX_HEAD) and parse
                // the whole, then skip what of `data` it used.
                let old = self.partial.len();
                let take = data.len().min(MAX_HEAD.saturating_sub(old).max(1));
                self.partial.extend_from_slice(&data[..take]);
                match parse_head(&self.partial) {
                    Parse::Complete(h) => {
                        self.partial.clear();
                        data = &data[h.len - old..];
                        self.head(h, t, ctx, tally)?;
                        continue;
                    }
                    Parse::Partial => return Ok(()),
                    Parse::Invalid(why) => return Err(Close::Framing(why)),
                }
            };
            match parsed {
                Parse::Complete(h) => {
                    data = &data[h.len..];
                    self.head(h, t, ctx, tally)?;
                }
                Parse::Partial => {
                    self.partial.extend_from_slice(data);
                    return Ok(());
                }
                Parse::Invalid(why) => return Err(Close::Framing(why)),
            }
        }
    }

    /// A response head has been read: match it against the oldest outstanding request.
    #[inline]
    fn head(&mut self, h: Head, t: u64, ctx: &Ctx<'_>, tally: &mut Tally) -> Result<(), Close> {
        let Some(req) = self.fifo.front() else {
            return Err(Close::Unsolicited);
        };
        if h.transfer_encoding {
            return Err(Close::Framing(
                "Transfer-Encoding in a response (kweb-load frames by Content-Length only)",
            ));
        }
        let Some(len) = h.content_length else {
            return Err(Close::Framing("response without Content-Length"));
        };
        let want = ctx.plan.expect[req.url as usize];
        self.current = Current {
            status: h.status,
            content_length: len,
            head_len: h.len as u32,
            matches: h.status == want.status && len == want.content_length,
            close: h.close,
        };
        self.body_left = if ctx.plan.head { 0 } else { len };
        if self.body_left == 0 {
            self.complete(t, ctx, tally)?;
        }
        Ok(())
    }

    /// The current response has ended at time `t`: count it for the oldest request.
    #[inline]
    fn complete(&mut self, t: u64, ctx: &Ctx<'_>, tally: &mut Tally) -> Result<(), Close> {
        let req = self.fifo.pop().expect("a response in progress has its request");
        self.unsent = self.unsent.min(self.fifo.len());
        self.answered += 1;
        let cur = self.current;
        if cur.matches {
            if t >= ctx.warm_end_ns {
                tally.requests += 1;
                tally.latency.record(t.saturating_sub(req.sent_ns));
                tally.body_bytes += if ctx.plan.head { 0 } else { cur.content_length };
                tally.header_bytes += u64::from(cur.head_len);
                tally.last_ns = t;
            }
        } else {
            let want = ctx.plan.expect[req.url as usize];
            tally.errors(1, || {
                format!(
                    "{}: status {} with Content-Length {}, expected {} with {} (wrong response or wrong order)",
                    ctx.plan.request_line(req.url),
                    cur.status,
                    cur.content_length,
                    want.status,
                    want.content_length
                )
            });
        }
        if cur.close {
            return Err(Close::Graceful);
        }
        Ok(())
    }

    /// Settles the outstanding requests of a socket being closed for `why` and forgets
    /// the socket: requests declined with `Graceful` are queued again, lost ones are
    /// errors. The caller reconnects or finishes the connection.
    pub(crate) fn drop_socket(&mut self, why: Close, ctx: &Ctx<'_>, tally: &mut Tally) {
        let outstanding = self.fifo.len();
        match why {
            Close::Graceful => {
                if let Some(oldest) = self.fifo.front() {
                    self.next_url = oldest.url as usize;
                }
                self.sent -= outstanding as u64;
            }
            Close::Eof | Close::Io(_) | Close::Framing(_) | Close::Unsolicited => {
                let lost = match why {
                    Close::Framing(_) | Close::Unsolicited => outstanding.max(1),
                    _ => outstanding,
                };
                self.answered += outstanding as u64;
                let oldest = self.fifo.front().map(|e| e.url);
                let plan = ctx.plan;
                tally.errors(lost as u64, || {
                    let on = oldest.map_or(String::new(), |u| format!("{}: ", plan.request_line(u)));
                    let what = match why {
                        Close::Eof => "server closed the connection".to_owned(),
                        Close::Io(e) => format!("connection error: {}", std::io::Error::from_raw_os_error(e)),
                        Close::Framing(w) => format!("framing error: {w}"),
                        _ => "response with no request outstanding".to_owned(),
                    };
                    format!("{on}{what}; {outstanding} request(s) outstanding lost")
                });
            }
        }
        self.fifo.clear();
        self.body_left = 0;
        self.partial.clear();
        (self.pend_at, self.pend_end, self.pend_pos, self.unsent) = (0, 0, 0, 0);
        self.fd = None;
        self.watching_out = false;
    }

    /// Counts every outstanding request as failed (the run is stopping); returns how many.
    pub(crate) fn abandon(&mut self) -> usize {
        let n = self.fifo.len();
        self.answered += n as u64;
        self.fifo.clear();
        n
    }
}
