//! A uthread blocked reading an empty pipe blocks only itself (DESIGN §7: "A uthread's
//! blocking syscall must not block its vcore"): on a single vcore another uthread keeps
//! running while the reader waits, and a write wakes the reader with exactly the bytes
//! written. Checked through the Rust face (`io::read` / `io::write`) and the C face
//! (`parlib_read` / `parlib_write`).
//!
//! Everything runs on one vcore with the test scheduler's FIFO run queue, so the order is
//! exact: the reader runs first and blocks on the empty pipe (nothing else could have
//! written yet), then the counter runs; the reader can only return once the counter has
//! written, which it does after counting `SPINS` yields.

use parlib_testsched as common;
mod support;

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};

use parlib_syscalls::{cabi, io};
use parlib_testkit::isolated;
use parlib_uthread::TlsMode;
use parlib_vcore as vcore;
use support::{ONE_VCORE, TIMEOUT};

/// Yields the counter makes while the reader is blocked, before it writes.
const SPINS: u64 = 10_000;
const MESSAGE: &[u8] = b"the reader gets exactly these bytes, no more, no fewer";

static COUNTER: AtomicU64 = AtomicU64::new(0);
static READER_DONE: AtomicBool = AtomicBool::new(false);
static READ_FD: AtomicI32 = AtomicI32::new(-1);
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

/// How the reader and counter do their I/O.
#[derive(Clone, Copy)]
enum Face {
    Rust,
    C,
}

fn read(face: Face, fd: i32, buf: &mut [u8]) -> Result<usize, i32> {
    match face {
        Face::Rust => support::errno_of(io::read(fd, buf)),
        Face::C => {
            // SAFETY: `buf` is valid for writes of its length.
            let r = unsafe { cabi::parlib_read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if r < 0 {
                Err(support::errno())
            } else {
                Ok(r as usize)
            }
        }
    }
}

fn write(face: Face, fd: i32, buf: &[u8]) -> Result<usize, i32> {
    match face {
        Face::Rust => support::errno_of(io::write(fd, buf)),
        Face::C => {
            // SAFETY: `buf` is valid for reads of its length.
            let r = unsafe { cabi::parlib_write(fd, buf.as_ptr().cast(), buf.len()) };
            if r < 0 {
                Err(support::errno())
            } else {
                Ok(r as usize)
            }
        }
    }
}

/// The shared body of both faces' tests.
fn reader_blocks_only_itself(face: Face) {
    support::init_runtime();
    assert_eq!(vcore::max_vcores(), 1, "VCORE_LIMIT=1 should leave one vcore");
    let [r, w] = support::pipe();
    READ_FD.store(r, Ordering::Relaxed);
    WRITE_FD.store(w, Ordering::Relaxed);

    // Backed TLS: the C face's errno is then the reader's own.
    support::spawn(TlsMode::Backed, move || {
        let before = COUNTER.load(Ordering::Relaxed);
        const SENTINEL: i32 = 0x5eed;
        support::set_errno(SENTINEL);
        let mut buf = [0u8; 256];
        let got = read(face, READ_FD.load(Ordering::Relaxed), &mut buf);
        let after = COUNTER.load(Ordering::Relaxed);
        READER_DONE.store(true, Ordering::Release);
        let n = got.unwrap_or_else(|e| panic!("read on the pipe failed: {}", support::errno_name(e)));
        assert_eq!(&buf[..n], MESSAGE, "the reader got other bytes than were written");
        assert!(
            after - before >= SPINS,
            "the counter advanced only {} times while the reader was blocked (expected {SPINS}): \
             the blocked read stopped the vcore",
            after - before
        );
        if let Face::C = face {
            assert_eq!(support::errno(), SENTINEL, "a successful parlib_read changed errno");
        }
    });
    support::spawn(TlsMode::Backed, move || {
        while COUNTER.load(Ordering::Relaxed) < SPINS {
            assert!(!READER_DONE.load(Ordering::Acquire), "the reader returned from an empty pipe");
            COUNTER.fetch_add(1, Ordering::Relaxed);
            common::yield_now();
        }
        assert!(!READER_DONE.load(Ordering::Acquire), "the reader returned before anything was written");
        let n = write(face, WRITE_FD.load(Ordering::Relaxed), MESSAGE).expect("write to the pipe");
        assert_eq!(n, MESSAGE.len(), "a short write of a small message to an empty pipe");
        // Keep running until the reader has its data: it must come back while we count.
        while !READER_DONE.load(Ordering::Acquire) {
            COUNTER.fetch_add(1, Ordering::Relaxed);
            common::yield_now();
        }
    });
    common::wait_all();
    assert!(READER_DONE.load(Ordering::Acquire), "the reader never returned");
    support::close(r);
    support::close(w);
}

#[test]
fn a_uthread_blocked_on_an_empty_pipe_lets_others_run_and_gets_exactly_the_written_bytes() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        reader_blocks_only_itself(Face::Rust);
    });
}

#[test]
fn the_c_face_blocks_only_the_reading_uthread_and_leaves_errno_alone_on_success() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        reader_blocks_only_itself(Face::C);
    });
}

/// Many readers, each blocked on its own pipe, are each woken by their own pipe's data
/// (written in the reverse order of their blocking) and by nothing else.
#[test]
fn many_blocked_readers_each_wake_with_their_own_pipes_data() {
    const READERS: usize = 64;
    static FDS: [[AtomicI32; 2]; READERS] = [const { [AtomicI32::new(-1), AtomicI32::new(-1)] }; READERS];
    static DONE: AtomicUsize = AtomicUsize::new(0);
    static BLOCKED: AtomicUsize = AtomicUsize::new(0);
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        for f in &FDS {
            let [r, w] = support::pipe();
            f[0].store(r, Ordering::Relaxed);
            f[1].store(w, Ordering::Relaxed);
        }
        for (k, f) in FDS.iter().enumerate() {
            support::spawn(TlsMode::None, move || {
                let mut buf = [0u8; 64];
                BLOCKED.fetch_add(1, Ordering::Relaxed);
                let n = io::read(f[0].load(Ordering::Relaxed), &mut buf).expect("read");
                let want = format!("message for reader {k}");
                assert_eq!(&buf[..n], want.as_bytes(), "reader {k} got another pipe's data");
                DONE.fetch_add(1, Ordering::Release);
            });
        }
        // One vcore, FIFO: every reader has run (and blocked) before we run again.
        common::yield_now();
        assert_eq!(BLOCKED.load(Ordering::Relaxed), READERS, "not every reader started");
        assert_eq!(DONE.load(Ordering::Acquire), 0, "a reader returned from an empty pipe");
        for (k, f) in FDS.iter().enumerate().rev() {
            let msg = format!("message for reader {k}");
            support::write_all(f[1].load(Ordering::Relaxed), msg.as_bytes());
            let done = DONE.load(Ordering::Acquire);
            // Wait for this reader only; the ones whose pipes are still empty must stay put.
            common::wait_until(|| DONE.load(Ordering::Acquire) > done);
            assert_eq!(DONE.load(Ordering::Acquire), READERS - k, "a reader woke without its data");
        }
        common::wait_all();
        for f in &FDS {
            support::close(f[0].load(Ordering::Relaxed));
            support::close(f[1].load(Ordering::Relaxed));
        }
    });
}
