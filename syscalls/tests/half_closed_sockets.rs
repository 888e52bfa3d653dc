//! A uthread waiting for room to write on a socket whose peer has shut down its own
//! sending side (a half-closed connection: the peer still reads, as an HTTP client does
//! after sending its request) must really wait, not spin.
//!
//! The peer's shutdown makes our socket report `EPOLLRDHUP`. The layer remembers
//! `EPOLLERR | EPOLLHUP | EPOLLRDHUP` as "sticky" readiness that concerns every waiter
//! (`poll.rs`, `STICKY`), so once it is remembered every later wait on the descriptor,
//! for any direction, returns at once. A writer whose socket buffer is full then retries,
//! gets `EAGAIN` and "waits" again, over and over: a busy loop through the scheduler for
//! as long as the peer does not read.
//!
//! How it is observed: the test scheduler's `sched_entry` hook counts entries into the
//! scheduler. On one vcore, with the writer blocked and `main` asleep, a correct wait
//! costs a handful of entries over the window; a spinning writer enters the scheduler on
//! every retry. The same measurement without the peer's shutdown is the control.

use parlib_testsched as common;
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_syscalls::io;
use parlib_testkit::isolated;
use parlib_uthread::TlsMode;
use support::{ONE_VCORE, TIMEOUT};

/// How long `main` sleeps while the writer is blocked.
const WINDOW: Duration = Duration::from_millis(200);
/// Entries into the scheduler a blocked writer may cause over the window: a real wait
/// causes none after it blocked (the idle vcore polls inside `sched_entry`), so this only
/// leaves room for `main`'s own sleep and wake-up. A spinning writer enters thousands of
/// times, even on a slow machine (each retry is a few system calls).
const MAX_ENTRIES: u64 = 50;

static ENTRIES: AtomicU64 = AtomicU64::new(0);
fn count_entry() {
    ENTRIES.fetch_add(1, Ordering::Relaxed);
}

static WRITTEN: AtomicUsize = AtomicUsize::new(0);
static WRITER_DONE: AtomicBool = AtomicBool::new(false);

/// Writes `total` bytes to `fd`, counting progress.
fn writer(fd: i32, total: usize) {
    let chunk = vec![9u8; 4096];
    while WRITTEN.load(Ordering::Relaxed) < total {
        let n = (total - WRITTEN.load(Ordering::Relaxed)).min(chunk.len());
        match io::write(fd, &chunk[..n]) {
            Ok(k) => WRITTEN.fetch_add(k, Ordering::Relaxed),
            Err(e) => panic!("write: {e}"),
        };
    }
    WRITER_DONE.store(true, Ordering::Release);
}

/// Entries into the scheduler while a writer is blocked on a full socket whose peer has
/// (if `half_closed`) shut down its sending side; then the peer drains and the writer
/// finishes.
fn entries_while_a_writer_waits(half_closed: bool) -> u64 {
    common::on_sched_entry(count_entry);
    support::init_runtime();
    let [a, b] = support::socketpair();
    support::set_send_buffer(a, 4096);
    if half_closed {
        // SAFETY: shutdown takes no pointer.
        assert_eq!(unsafe { libc::shutdown(b, libc::SHUT_WR) }, 0);
    }
    let total = 1 << 20; // far more than the socket buffers hold
    support::spawn(TlsMode::None, move || writer(a, total));
    // One vcore, FIFO: the writer runs until the buffer is full and it blocks.
    common::yield_now();
    assert!(!WRITER_DONE.load(Ordering::Acquire), "precondition: the writer filled the buffer and blocked");
    let stalled = WRITTEN.load(Ordering::Relaxed);
    let before = ENTRIES.load(Ordering::Relaxed);
    io::nanosleep(WINDOW).expect("nanosleep");
    let entries = ENTRIES.load(Ordering::Relaxed) - before;
    assert_eq!(WRITTEN.load(Ordering::Relaxed), stalled, "the writer made progress with nobody reading");
    // Now read everything; the writer must finish.
    let got = support::read_to_end_of(b, total);
    assert_eq!(got, total, "bytes the peer received");
    common::wait_all();
    assert!(WRITER_DONE.load(Ordering::Acquire));
    support::close(a);
    support::close(b);
    entries
}

#[test]
fn a_writer_blocked_on_a_full_socket_waits_without_spinning() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        let entries = entries_while_a_writer_waits(false);
        assert!(entries <= MAX_ENTRIES, "{entries} entries into the scheduler while the writer waited");
    });
}

#[test]
fn a_writer_blocked_on_a_half_closed_socket_waits_without_spinning() {
    parlib_testkit::isolated!(TIMEOUT, env = ONE_VCORE, {
        let entries = entries_while_a_writer_waits(true);
        assert!(
            entries <= MAX_ENTRIES,
            "{entries} entries into the scheduler in {WINDOW:?} while the writer waited for room on a \
             half-closed socket: it is spinning"
        );
    });
}
