//! One connection of the open loop's pool: at most one request outstanding, the response
//! it is reading, and that response's checks.
//!
//! | state | means | leaves when |
//! |---|---|---|
//! | `Connecting(since)` | a non-blocking (re)connect is under way | writable: `Idle`; the connect failed: `Finished` |
//! | `Idle` | open, nothing outstanding; in the worker's idle FIFO | a request is handed to it: `Busy`; the server closes it: `Connecting` |
//! | `Busy` | one request outstanding (its tail perhaps not sent yet) | its response ends: `Idle`; an error or `Connection: close`: `Connecting` |
//! | `Finished` | no socket (a reconnect failed, or the run stopped) | never |
//!
//! A response must carry the status and `Content-Length` of its URL's probe and, when
//! the probe's body was short ([`BODY_CHECK_MAX`](super::plan::BODY_CHECK_MAX)), the
//! same body byte for byte, compared as it arrives (nothing is buffered). A wrong
//! response is one failed request; since it is framed by its own `Content-Length`, the
//! connection goes on. Bytes that answer no request (a second response, anything on an
//! idle connection) cannot be framed: the connection is closed, as in the closed loop.

use std::os::fd::{AsRawFd, OwnedFd};

use super::plan::Plan;
use super::tally::Tally;
use crate::load::conn::Close;
use crate::load::response::{parse_head, Head, Parse, MAX_HEAD};
use crate::load::sys;

/// Where a connection is (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Connect under way since this time (`now_ns` clock).
    Connecting(u64),
    /// Open, nothing outstanding.
    Idle,
    /// One request outstanding.
    Busy,
    /// No socket, for good.
    Finished,
}

/// The request a `Busy` connection carries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Request {
    /// Its class.
    pub class: u32,
    /// When it was due: its latency counts from here (`now_ns` clock).
    pub scheduled_ns: u64,
    /// When it was handed to this connection.
    pub handed_ns: u64,
}

/// The measured window of a run: requests scheduled from `warm_end_ns` on are counted,
/// answers completed in `warm_end_ns..send_end_ns` make the achieved rate.
#[derive(Clone, Copy)]
pub(crate) struct Window {
    pub warm_end_ns: u64,
    pub send_end_ns: u64,
}

/// The response being read.
#[derive(Clone, Copy, Default)]
struct Current {
    status: u16,
    content_length: u64,
    /// Status and `Content-Length` are the probe's.
    head_ok: bool,
    /// Body bytes left to read.
    body_left: u64,
    /// Body bytes read so far.
    body_seen: u64,
    /// Where the body first differed from the probe's, if it did.
    body_diff: Option<u64>,
    /// `Connection: close`.
    close: bool,
}

/// One pool connection.
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
    /// The outstanding request, when `Busy`.
    req: Option<Request>,
    /// A response has completed since [`Conn::take_completed`] last looked.
    completed: bool,
    /// Bytes of the request already sent.
    sent_bytes: usize,
    /// A head is complete and its body is being read.
    in_body: bool,
    current: Current,
    /// The start of a response head that a read ended in the middle of.
    partial: Vec<u8>,
}

impl Conn {
    /// An idle connection on `fd`.
    pub(crate) fn new(fd: OwnedFd) -> Conn {
        Conn {
            fd: Some(fd),
            state: State::Idle,
            generation: 0,
            watching_out: false,
            req: None,
            completed: false,
            sent_bytes: 0,
            in_body: false,
            current: Current::default(),
            partial: Vec::new(),
        }
    }

    /// The raw descriptor (-1 without a socket).
    pub(crate) fn raw_fd(&self) -> i32 {
        self.fd.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    /// The outstanding request, if any.
    pub(crate) fn request(&self) -> Option<Request> {
        self.req
    }

    /// Whether a response has completed since the last call (then the connection is
    /// `Idle`, unless its socket has been dropped since).
    pub(crate) fn take_completed(&mut self) -> bool {
        std::mem::take(&mut self.completed)
    }

    /// Part of the request waits for the socket to become writable.
    pub(crate) fn pending(&self, plan: &Plan) -> bool {
        self.req.is_some_and(|r| self.sent_bytes < plan.classes[r.class as usize].request.len())
    }

    /// Hands `req` to this idle connection at time `now` and sends it (what the socket
    /// does not take waits for [`Conn::flush`]).
    pub(crate) fn send(
        &mut self,
        req: Request,
        plan: &Plan,
        win: Window,
        tally: &mut Tally,
    ) -> Result<(), Close> {
        debug_assert_eq!(self.state, State::Idle);
        self.state = State::Busy;
        self.req = Some(req);
        self.sent_bytes = 0;
        self.flush(plan, win, tally)
    }

    /// Sends more of the outstanding request. When its last byte goes, the time since it
    /// was due is its lag.
    pub(crate) fn flush(&mut self, plan: &Plan, win: Window, tally: &mut Tally) -> Result<(), Close> {
        let Some(req) = self.req else { return Ok(()) };
        let bytes = &plan.classes[req.class as usize].request;
        if self.sent_bytes == bytes.len() {
            return Ok(());
        }
        match sys::send(self.raw_fd(), &bytes[self.sent_bytes..]) {
            Ok(n) => self.sent_bytes += n,
            Err(libc::EAGAIN | libc::EINTR) => return Ok(()),
            Err(e) => return Err(Close::Io(e)),
        }
        if self.sent_bytes == bytes.len() && req.scheduled_ns >= win.warm_end_ns {
            tally.lag.record(sys::now_ns().saturating_sub(req.scheduled_ns));
        }
        Ok(())
    }

    /// Takes in bytes read at time `t`; counts the response if they complete it (see
    /// [`Conn::take_completed`]).
    pub(crate) fn consume(
        &mut self,
        mut data: &[u8],
        t: u64,
        plan: &Plan,
        win: Window,
        tally: &mut Tally,
    ) -> Result<(), Close> {
        if self.state != State::Busy {
            return if data.is_empty() { Ok(()) } else { Err(Close::Unsolicited) };
        }
        loop {
            if self.in_body {
                let take = self.current.body_left.min(data.len() as u64) as usize;
                self.check_body(&data[..take], plan);
                self.current.body_left -= take as u64;
                self.current.body_seen += take as u64;
                data = &data[take..];
                if self.current.body_left > 0 {
                    return Ok(());
                }
                self.complete(t, plan, win, tally);
                return if !data.is_empty() {
                    Err(Close::Unsolicited)
                } else if self.current.close {
                    Err(Close::Graceful)
                } else {
                    Ok(())
                };
            }
            if data.is_empty() {
                return Ok(());
            }
            let head = if self.partial.is_empty() {
                match parse_head(data) {
                    Parse::Complete(h) => {
                        data = &data[h.len..];
                        h
                    }
                    Parse::Partial => {
                        self.partial.extend_from_slice(data);
                        return Ok(());
                    }
                    Parse::Invalid(why) => return Err(Close::Framing(why)),
                }
            } else {
                // A head split across reads: gather it (bounded by MAX_HEAD), parse the
                // whole, then skip what of `data` it used.
                let old = self.partial.len();
                let take = data.len().min(MAX_HEAD.saturating_sub(old).max(1));
                self.partial.extend_from_slice(&data[..take]);
                match parse_head(&self.partial) {
                    Parse::Complete(h) => {
                        self.partial.clear();
                        data = &data[h.len - old..];
                        h
                    }
                    Parse::Partial => return Ok(()),
                    Parse::Invalid(why) => return Err(Close::Framing(why)),
                }
            };
            self.head(head, plan)?;
        }
    }

    /// A response head has been read: check it against the outstanding request's probe.
    fn head(&mut self, h: Head, plan: &Plan) -> Result<(), Close> {
        let req = self.req.expect("a busy connection has its request");
        if h.transfer_encoding {
            return Err(Close::Framing(
                "Transfer-Encoding in a response (kweb-load frames by Content-Length only)",
            ));
        }
        let Some(len) = h.content_length else {
            return Err(Close::Framing("response without Content-Length"));
        };
        let want = plan.classes[req.class as usize].expect;
        self.current = Current {
            status: h.status,
            content_length: len,
            head_ok: h.status == want.status && len == want.content_length,
            body_left: len,
            body_seen: 0,
            body_diff: None,
            close: h.close,
        };
        self.in_body = true;
        Ok(())
    }

    /// Compares `chunk`, the next body bytes, with the probe's body.
    fn check_body(&mut self, chunk: &[u8], plan: &Plan) {
        let cur = &mut self.current;
        let class = self.req.expect("a busy connection has its request").class;
        let Some(want) = &plan.classes[class as usize].body else { return };
        if !cur.head_ok || cur.body_diff.is_some() {
            return;
        }
        let at = cur.body_seen as usize;
        let want = &want[at..at + chunk.len()];
        if let Some(i) = chunk.iter().zip(want).position(|(a, b)| a != b) {
            cur.body_diff = Some(cur.body_seen + i as u64);
        }
    }

    /// The response has ended at time `t`: count it for the outstanding request.
    fn complete(&mut self, t: u64, plan: &Plan, win: Window, tally: &mut Tally) {
        let req = self.req.take().expect("a busy connection has its request");
        self.state = State::Idle;
        self.completed = true;
        self.in_body = false;
        let cur = self.current;
        let class = &plan.classes[req.class as usize];
        if cur.head_ok && cur.body_diff.is_none() {
            if req.scheduled_ns >= win.warm_end_ns {
                let c = &mut tally.classes[req.class as usize];
                c.requests += 1;
                c.latency.record(t.saturating_sub(req.scheduled_ns));
            }
            if (win.warm_end_ns..win.send_end_ns).contains(&t) {
                tally.completed_in_window += 1;
            }
        } else if !cur.head_ok {
            tally.errors(Some(req.class), 1, || {
                format!(
                    "{}: status {} with Content-Length {}, expected {} with {}",
                    class.line,
                    cur.status,
                    cur.content_length,
                    class.expect.status,
                    class.expect.content_length
                )
            });
        } else {
            tally.errors(Some(req.class), 1, || {
                format!(
                    "{}: the body differs from the probe's from byte {} on",
                    class.line,
                    cur.body_diff.unwrap_or(0)
                )
            });
        }
    }

    /// Forgets the socket, closed for `why`, and counts the outstanding request, if any,
    /// as failed. Returns whether there was one. The caller reconnects or finishes the
    /// connection.
    pub(crate) fn drop_socket(&mut self, why: Close, plan: &Plan, tally: &mut Tally) -> bool {
        let req = self.req.take();
        let lost = req.is_some() || matches!(why, Close::Framing(_) | Close::Unsolicited);
        if lost {
            tally.errors(req.map(|r| r.class), 1, || {
                let on = req.map_or(String::new(), |r| format!("{}: ", plan.classes[r.class as usize].line));
                let what = match why {
                    Close::Graceful | Close::Eof => "server closed the connection".to_owned(),
                    Close::Io(e) => format!("connection error: {}", std::io::Error::from_raw_os_error(e)),
                    Close::Framing(w) => format!("framing error: {w}"),
                    Close::Unsolicited => "bytes that answer no request".to_owned(),
                };
                format!("{on}{what}")
            });
        }
        self.in_body = false;
        self.partial.clear();
        self.sent_bytes = 0;
        self.fd = None;
        self.watching_out = false;
        req.is_some()
    }
}
