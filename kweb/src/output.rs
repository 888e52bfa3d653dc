//! A connection's pending output: response heads and bodies in request order, and how
//! they reach the socket in as few system calls as the kernel allows.
//!
//! Heads and small bodies are copied into one buffer; cached bodies are referenced,
//! not copied; large files are sent from their descriptor. [`Output::flush`] gathers
//! every piece in memory, up to [`MAX_IOV`], into one `sendmsg`, so the responses to
//! a burst of pipelined requests usually leave in one call; a file part goes out with
//! `sendfile`, the `sendmsg` before it flagged `MSG_MORE` so the head and the start of
//! the file share packets. Order is kept by construction: one queue, flushed front to
//! back.

use std::io::IoSlice;
use std::sync::Arc;

use crate::files::FileEntry;
use crate::sys;

/// Bodies up to this size are copied next to their head rather than referenced: a copy
/// of a few hundred bytes costs less than an `iovec` entry's handling in the kernel.
pub const INLINE_BODY: usize = 2048;
/// Most pieces one `sendmsg` gathers (the kernel's `UIO_MAXIOV` is 1024; 64 covers a
/// burst of responses with referenced bodies).
pub const MAX_IOV: usize = 64;
/// Most bytes one `sendfile` call is asked for; the socket takes what fits anyway.
const SENDFILE_CHUNK: usize = 1 << 20;

enum Part {
    /// `buf[start..end]`.
    Buf { start: usize, end: usize },
    /// A cached body.
    Body(Arc<FileEntry>),
    /// A file sent with `sendfile`, from `off`.
    File { entry: Arc<FileEntry>, off: i64 },
}

impl Part {
    fn len(&self) -> usize {
        match self {
            Part::Buf { start, end } => end - start,
            Part::Body(e) => e.body.as_ref().map_or(0, |b| b.len()),
            Part::File { entry, .. } => entry.len as usize,
        }
    }
}

/// How far a flush got.
#[derive(Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Everything is written.
    Done,
    /// The socket is full; the rest waits for it to drain (`EPOLLOUT`).
    Blocked,
}

/// Responses waiting to be written, in order.
#[derive(Default)]
pub struct Output {
    buf: Vec<u8>,
    parts: Vec<Part>,
    /// First part not completely written, and bytes of it already written.
    next: usize,
    done_in_next: usize,
}

impl Output {
    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.next == self.parts.len()
    }

    /// Appends bytes of a head (or a small body).
    pub fn push_bytes(&mut self, b: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(b);
        let unwritten = self.parts.len() > self.next;
        match self.parts.last_mut() {
            Some(Part::Buf { end, .. }) if *end == start && unwritten => *end = self.buf.len(),
            _ => self.parts.push(Part::Buf { start, end: self.buf.len() }),
        }
    }

    /// Appends the body of `e`: copied if small, referenced if cached, else from its file.
    pub fn push_body(&mut self, e: &Arc<FileEntry>) {
        match &e.body {
            Some(b) if b.len() <= INLINE_BODY => self.push_bytes(b),
            Some(_) => self.parts.push(Part::Body(e.clone())),
            None => self.parts.push(Part::File { entry: e.clone(), off: 0 }),
        }
    }

    /// Writes as much as the socket takes. `Err(errno)` for a failed connection.
    pub fn flush(&mut self, fd: i32) -> Result<Flushed, i32> {
        while self.next < self.parts.len() {
            if let Part::File { entry, off } = &mut self.parts[self.next] {
                let left = entry.len as i64 - *off;
                match sys::sendfile(fd, entry.fd(), off, (left as usize).min(SENDFILE_CHUNK)) {
                    Ok(0) => return Err(libc::EIO), // the file shrank under us
                    Ok(_) if *off >= entry.len as i64 => self.next += 1,
                    Ok(_) => {}
                    Err(libc::EAGAIN) => return Ok(Flushed::Blocked),
                    Err(e) => return Err(e),
                }
                continue;
            }
            let mut iov: [IoSlice<'_>; MAX_IOV] = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            let mut i = self.next;
            while i < self.parts.len() && n < MAX_IOV {
                let skip = if i == self.next { self.done_in_next } else { 0 };
                let bytes: &[u8] = match &self.parts[i] {
                    Part::Buf { start, end } => &self.buf[*start..*end],
                    Part::Body(e) => e.body.as_deref().unwrap_or(&[]),
                    Part::File { .. } => break,
                };
                iov[n] = IoSlice::new(&bytes[skip..]);
                n += 1;
                i += 1;
            }
            let more = i < self.parts.len();
            match sys::send_vectored(fd, &iov[..n], more) {
                Ok(k) => self.advance(k),
                Err(libc::EAGAIN) => return Ok(Flushed::Blocked),
                Err(e) => return Err(e),
            }
        }
        self.clear();
        Ok(Flushed::Done)
    }

    /// Marks `k` more bytes of the in-memory parts as written.
    fn advance(&mut self, mut k: usize) {
        while k > 0 {
            let left = self.parts[self.next].len() - self.done_in_next;
            if k < left {
                self.done_in_next += k;
                return;
            }
            k -= left;
            self.next += 1;
            self.done_in_next = 0;
        }
        // Zero-length parts (empty bodies) are done as soon as they are reached.
        while self.next < self.parts.len() && self.parts[self.next].len() == 0 {
            self.next += 1;
        }
    }

    /// Forgets everything (kept capacity is reused).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.parts.clear();
        self.next = 0;
        self.done_in_next = 0;
    }
}
