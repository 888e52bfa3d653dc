//! `connect` on a blocking Unix stream socket, from a uthread: it completes (or waits, as
//! a blocking `connect(2)` does) and never hands the layer's own non-blocking `EAGAIN`
//! back to the caller.
//!
//! A non-blocking `connect` to a Unix listener whose backlog is full fails with `EAGAIN`
//! (not `EINPROGRESS`, as TCP would), and there is no readiness to wait for (the blocking
//! call sleeps on the listener's queue); a blocking one sleeps until the server accepts.
//! The layer makes the socket non-blocking for the call, and on `EAGAIN` offloads a
//! blocking `connect` (its own flag cleared for the call), so the uthread waits as
//! libc's caller would and its vcore does not. (Until that fix, the `EAGAIN` reached a
//! caller who never asked for non-blocking behaviour.)

use parlib_testsched as common;
mod support;

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_syscalls::io::{self, SockAddr};
use parlib_testkit::isolated;
use parlib_uthread::TlsMode;
use support::{errno_name, errno_of, TIMEOUT};

/// `io::connect` of a fresh blocking Unix socket to `addr`; the socket, or the errno.
fn connect_unix(addr: &SockAddr) -> Result<i32, i32> {
    let fd = io::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0).expect("socket");
    match errno_of(io::connect(fd, addr)) {
        Ok(()) => Ok(fd),
        Err(e) => {
            support::close(fd);
            Err(e)
        }
    }
}

#[test]
fn uthreads_connect_to_a_unix_listener_and_talk() {
    const CLIENTS: usize = 50;
    static SERVED: AtomicUsize = AtomicUsize::new(0);
    static LFD: AtomicI32 = AtomicI32::new(-1);
    isolated!(TIMEOUT, {
        support::init_runtime();
        let (lfd, addr) = support::unix_listener("talk", 128);
        LFD.store(lfd, Ordering::Relaxed);
        support::spawn(TlsMode::None, || {
            for _ in 0..CLIENTS {
                let (fd, _) = io::accept(LFD.load(Ordering::Relaxed)).expect("accept");
                support::spawn(TlsMode::None, move || {
                    let mut b = [0u8; 8];
                    support::read_exact(fd, &mut b);
                    support::write_all(fd, &(u64::from_le_bytes(b) * 2).to_le_bytes());
                    support::close(fd);
                    SERVED.fetch_add(1, Ordering::Relaxed);
                });
            }
        });
        for k in 0..CLIENTS as u64 {
            support::spawn(TlsMode::None, move || {
                let fd = connect_unix(&addr).unwrap_or_else(|e| panic!("connect: {}", errno_name(e)));
                support::write_all(fd, &k.to_le_bytes());
                let mut b = [0u8; 8];
                support::read_exact(fd, &mut b);
                assert_eq!(u64::from_le_bytes(b), k * 2, "client {k}'s reply");
                support::close(fd);
            });
        }
        common::wait_all();
        assert_eq!(SERVED.load(Ordering::Relaxed), CLIENTS);
        support::close(lfd);
    });
}

/// The listener's backlog holds one pending connection and nobody accepts yet: the second
/// client's `connect` must wait (as plain libc's blocking `connect` does) and succeed once
/// the server accepts.
#[test]
fn connect_to_a_unix_listener_with_a_full_backlog_waits_for_the_server_to_accept() {
    static SECOND: AtomicI32 = AtomicI32::new(0);
    static SECOND_DONE: AtomicBool = AtomicBool::new(false);
    isolated!(TIMEOUT, {
        support::init_runtime();
        let (lfd, addr) = support::unix_listener("backlog", 0);
        // What plain libc does: a blocking connect on a plain thread waits for an accept.
        let first = connect_unix(&addr).expect("the first connect fills the backlog");
        let libc_client = support::plain_thread(move || {
            // SAFETY: plain socket calls with a valid, sized address.
            unsafe {
                let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
                let r = libc::connect(fd, addr.as_ptr(), addr.len());
                let e = if r == 0 { 0 } else { support::errno() };
                libc::close(fd);
                e
            }
        });
        io::nanosleep(Duration::from_millis(100)).expect("nanosleep");
        assert!(
            !libc_client.is_finished(),
            "precondition: plain libc's blocking connect waits on a full backlog"
        );
        let (a, _) = io::accept(lfd).expect("accept");
        common::wait_until(|| libc_client.is_finished());
        assert_eq!(libc_client.join().unwrap(), 0, "plain libc's connect after the accept");
        let (b, _) = io::accept(lfd).expect("accept");
        support::close(a);
        support::close(b);
        support::close(first);

        // Now the same through the layer, on a uthread.
        let first = connect_unix(&addr).expect("the first connect fills the backlog");
        support::spawn(TlsMode::None, move || {
            let r = connect_unix(&addr);
            SECOND.store(r.err().unwrap_or(0), Ordering::Relaxed);
            if let Ok(fd) = r {
                support::close(fd);
            }
            SECOND_DONE.store(true, Ordering::Release);
        });
        io::nanosleep(Duration::from_millis(100)).expect("nanosleep");
        let early = SECOND_DONE.load(Ordering::Acquire);
        let (a, _) = io::accept(lfd).expect("accept");
        common::wait_until(|| SECOND_DONE.load(Ordering::Acquire));
        let e = SECOND.load(Ordering::Relaxed);
        assert_eq!(
            (early, e),
            (false, 0),
            "io::connect with a full backlog: returned early {early}, with {}",
            errno_name(e)
        );
        support::close(a);
        support::close(first);
        support::close(lfd);
    });
}
