//! A descriptor closed through the layer (`io::close`) while uthreads wait on it wakes
//! them with `EBADF` instead of leaving them blocked forever (`poll.rs`, `wake_closed`):
//! readers of an empty pipe or socket, a writer of a full pipe, several waiters at once,
//! waiters on another vcore, and closes made by a plain thread. Closing an unrelated
//! descriptor wakes nobody, and a descriptor number reused after the close works.
//!
//! Single-vcore tests are exact: the waiter runs first and blocks before the closer runs
//! (FIFO run queue). Multi-vcore tests give the waiter time to block first; had it not
//! blocked yet, its call would meet the closed descriptor and fail with `EBADF` all the
//! same, so the assertions hold either way.

use parlib_testsched as common;
mod support;

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

use std::time::Duration;

use parlib_syscalls::io;
use parlib_testkit::isolated;
use parlib_uthread::TlsMode;
use support::{errno_of, ONE_VCORE, TIMEOUT};

static FD: AtomicI32 = AtomicI32::new(-1);
static STARTED: AtomicUsize = AtomicUsize::new(0);
static WOKEN: AtomicUsize = AtomicUsize::new(0);

/// Reads `FD`, which must fail with EBADF.
fn read_expecting_ebadf() {
    let mut buf = [0u8; 16];
    STARTED.fetch_add(1, Ordering::AcqRel);
    let r = errno_of(io::read(FD.load(Ordering::Relaxed), &mut buf));
    assert_eq!(r, Err(libc::EBADF), "a reader of a descriptor closed under it");
    WOKEN.fetch_add(1, Ordering::AcqRel);
}

/// `readers` uthreads block reading `fd`; then a uthread closes it; all must wake.
fn readers_then_close(fd: i32, readers: usize) {
    FD.store(fd, Ordering::Relaxed);
    for _ in 0..readers {
        support::spawn(TlsMode::None, read_expecting_ebadf);
    }
    support::spawn(TlsMode::None, move || {
        assert_eq!(STARTED.load(Ordering::Acquire), readers, "the readers ran first (one vcore, FIFO)");
        assert_eq!(WOKEN.load(Ordering::Acquire), 0, "a reader returned from an empty descriptor");
        assert_eq!(errno_of(io::close(fd)), Ok(()), "close");
    });
    common::wait_all();
    assert_eq!(WOKEN.load(Ordering::Relaxed), readers, "not every waiter woke");
}

#[test]
fn closing_an_empty_pipe_wakes_its_blocked_reader_with_ebadf() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        let [r, w] = support::pipe();
        readers_then_close(r, 1);
        support::close(w);
    });
}

#[test]
fn closing_a_socket_wakes_its_blocked_reader_with_ebadf() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        let [a, b] = support::socketpair();
        readers_then_close(a, 1);
        support::close(b);
    });
}

#[test]
fn closing_a_descriptor_wakes_every_uthread_waiting_on_it() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        let [a, b] = support::socketpair();
        readers_then_close(a, 20);
        support::close(b);
    });
}

#[test]
fn closing_a_full_pipes_write_end_wakes_its_blocked_writer_with_ebadf() {
    static WRITER_DONE: AtomicBool = AtomicBool::new(false);
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        let [r, w] = support::pipe();
        support::spawn(TlsMode::None, move || {
            let chunk = vec![7u8; 4096];
            let mut written = 0usize;
            // Fill the pipe; the write that finds no room blocks until the close.
            let e = loop {
                match io::write(w, &chunk) {
                    Ok(n) => written += n,
                    Err(e) => break e,
                }
            };
            assert!(written > 0, "nothing was written before the pipe filled");
            assert_eq!(e.raw_os_error(), Some(libc::EBADF), "a writer of a descriptor closed under it: {e}");
            WRITER_DONE.store(true, Ordering::Release);
        });
        support::spawn(TlsMode::None, move || {
            assert!(!WRITER_DONE.load(Ordering::Acquire), "the writer returned from a full pipe");
            assert_eq!(errno_of(io::close(w)), Ok(()), "close");
        });
        common::wait_all();
        assert!(WRITER_DONE.load(Ordering::Relaxed));
        support::close(r);
    });
}

/// The registration lives on the waiter's vcore (1); the close comes from vcore 0.
#[test]
fn a_close_on_another_vcore_wakes_the_waiter() {
    isolated!(TIMEOUT, {
        support::init_runtime_across_vcores();
        let [r, w] = support::pipe();
        FD.store(r, Ordering::Relaxed);
        support::spawn_on(1, TlsMode::None, read_expecting_ebadf);
        support::spawn_on(0, TlsMode::None, move || {
            common::wait_until(|| STARTED.load(Ordering::Acquire) == 1);
            io::nanosleep(Duration::from_millis(50)).expect("nanosleep"); // let it block
            assert_eq!(errno_of(io::close(r)), Ok(()), "close");
        });
        common::wait_all();
        assert_eq!(WOKEN.load(Ordering::Relaxed), 1);
        support::close(w);
    });
}

/// A plain thread's `io::close` wakes the uthread waiting on the descriptor.
#[test]
fn a_close_by_a_plain_thread_wakes_the_waiting_uthread() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        let [a, b] = support::socketpair();
        FD.store(a, Ordering::Relaxed);
        support::spawn(TlsMode::None, read_expecting_ebadf);
        common::yield_now(); // one vcore, FIFO: the reader has blocked when we are back
        assert_eq!((STARTED.load(Ordering::Relaxed), WOKEN.load(Ordering::Relaxed)), (1, 0));
        let r = support::on_plain_thread(move || errno_of(io::close(a)));
        assert_eq!(r, Ok(()), "close on a plain thread");
        common::wait_all();
        assert_eq!(WOKEN.load(Ordering::Relaxed), 1);
        support::close(b);
    });
}

/// Closing one descriptor leaves the waiters of others blocked; the closed number, reused
/// by the next pipe, works (blocks, then gets its data).
#[test]
fn closing_another_descriptor_wakes_nobody_and_a_reused_number_works() {
    static DONE: AtomicUsize = AtomicUsize::new(0);
    static READ_FD: AtomicI32 = AtomicI32::new(-1);
    fn reader(expect: &'static [u8]) {
        let mut buf = [0u8; 32];
        let n = io::read(READ_FD.load(Ordering::Relaxed), &mut buf).unwrap_or_else(|e| panic!("read: {e}"));
        assert_eq!(&buf[..n], expect, "the reader got other bytes");
        DONE.fetch_add(1, Ordering::Release);
    }
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        let [r1, w1] = support::pipe();
        let [r2, w2] = support::pipe();
        READ_FD.store(r1, Ordering::Relaxed);
        support::spawn(TlsMode::None, || reader(b"first"));
        common::yield_now(); // the reader blocks on r1
                             // r2 gets registered too: a uthread waits on it and is woken by the close.
        FD.store(r2, Ordering::Relaxed);
        support::spawn(TlsMode::None, read_expecting_ebadf);
        common::yield_now();
        assert_eq!(errno_of(io::close(r2)), Ok(()));
        for _ in 0..100 {
            common::yield_now();
        }
        assert_eq!(WOKEN.load(Ordering::Acquire), 1, "the waiter of the closed descriptor did not wake");
        assert_eq!(DONE.load(Ordering::Acquire), 0, "closing another descriptor woke the reader");
        support::close(w2);
        // Nothing else in this child opens descriptors: the next pipe gets the lowest free
        // numbers, r2's and w2's.
        let [r3, w3] = support::pipe();
        assert_eq!(r3, r2, "precondition: the new pipe's read end reuses the closed number");
        READ_FD.store(r3, Ordering::Relaxed);
        support::spawn(TlsMode::None, || reader(b"third"));
        common::yield_now();
        assert_eq!(DONE.load(Ordering::Acquire), 0, "a reader returned from an empty pipe");
        support::write_all(w3, b"third");
        common::wait_until(|| DONE.load(Ordering::Acquire) == 1);
        support::write_all(w1, b"first");
        common::wait_all();
        assert_eq!(DONE.load(Ordering::Relaxed), 2);
        for fd in [r1, w1, r3, w3] {
            support::close(fd);
        }
    });
}
