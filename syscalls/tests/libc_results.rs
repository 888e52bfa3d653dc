//! Results and signals the layer must share with libc, from uthreads:
//!
//! * writing to a pipe or a socket whose reader is gone is `EPIPE` *and* raises `SIGPIPE`
//!   (the layer's non-blocking socket writes use `sendto(MSG_DONTWAIT)`, which raises it
//!   like `write` does), except for `send` with `MSG_NOSIGNAL`;
//! * a TCP connection reset by its peer reads as `ECONNRESET`, a closed one as EOF;
//! * a plain thread's `sleep` interrupted by a signal returns the seconds left, as
//!   glibc's does.

use parlib_testsched as common;
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use parlib_syscalls::{io, raw};
use parlib_testkit::isolated;
use parlib_uthread::TlsMode;
use support::{errno_of, TIMEOUT};

static SIGPIPES: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_sigpipe(_: libc::c_int) {
    SIGPIPES.fetch_add(1, Ordering::Relaxed);
}

/// Installs `handler` for `sig` (no `SA_RESTART`, so a plain thread's sleep is cut).
fn on_signal(sig: i32, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: a zeroed sigaction with a valid handler and an empty mask.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(sig, &sa, core::ptr::null_mut()), 0);
    }
}

#[test]
fn writes_to_a_closed_reader_are_epipe_and_raise_sigpipe_unless_msg_nosignal() {
    isolated!(TIMEOUT, {
        on_signal(libc::SIGPIPE, count_sigpipe);
        support::init_runtime();
        for tls in [TlsMode::None, TlsMode::Backed] {
            support::spawn(tls, || {
                let before = SIGPIPES.load(Ordering::Relaxed);
                let [r, w] = support::pipe();
                support::close(r);
                assert_eq!(errno_of(io::write(w, b"x")), Err(libc::EPIPE), "write to a pipe without reader");
                assert_eq!(SIGPIPES.load(Ordering::Relaxed), before + 1, "SIGPIPE for the pipe write");
                support::close(w);

                let [a, b] = support::socketpair();
                support::close(b);
                assert_eq!(errno_of(io::write(a, b"x")), Err(libc::EPIPE), "write to a closed peer");
                assert_eq!(SIGPIPES.load(Ordering::Relaxed), before + 2, "SIGPIPE for the socket write");
                assert_eq!(errno_of(io::send(a, b"x", 0)), Err(libc::EPIPE), "send to a closed peer");
                assert_eq!(SIGPIPES.load(Ordering::Relaxed), before + 3, "SIGPIPE for send");
                assert_eq!(
                    errno_of(io::send(a, b"x", libc::MSG_NOSIGNAL)),
                    Err(libc::EPIPE),
                    "send(MSG_NOSIGNAL) to a closed peer"
                );
                assert_eq!(SIGPIPES.load(Ordering::Relaxed), before + 3, "no SIGPIPE with MSG_NOSIGNAL");
                support::close(a);
            });
            common::wait_all();
        }
    });
}

#[test]
fn a_reset_connection_reads_as_econnreset_and_a_closed_one_as_eof() {
    isolated!(TIMEOUT, {
        support::init_runtime();
        let (l, port) = support::bound_loopback_socket(Some(4));
        static CONNECTED: AtomicUsize = AtomicUsize::new(0);
        for (round, reset) in [true, false].into_iter().enumerate() {
            support::spawn(TlsMode::None, move || {
                let s = io::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0).unwrap();
                io::connect(s, &support::loopback_addr(port)).expect("connect");
                CONNECTED.fetch_add(1, Ordering::Release);
                let mut b = [0u8; 8];
                let want = if reset { Err(libc::ECONNRESET) } else { Ok(0) };
                assert_eq!(errno_of(io::read(s, &mut b)), want, "reset {reset}: the blocked read");
                support::close(s);
            });
            let (c, _) = io::accept(l).expect("accept");
            // The client's connect must have returned first: an RST that lands before it
            // does makes connect itself fail with ECONNRESET, in the kernel's blocking
            // connect too. Its read may block before or after the close (either works).
            common::wait_until(|| CONNECTED.load(Ordering::Acquire) > round);
            for _ in 0..50 {
                common::yield_now();
            }
            if reset {
                // Linger 0: close sends RST.
                let lg = libc::linger { l_onoff: 1, l_linger: 0 };
                // SAFETY: a valid option value of the size we pass.
                let r = unsafe {
                    libc::setsockopt(
                        c,
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        &lg as *const libc::linger as *const libc::c_void,
                        core::mem::size_of::<libc::linger>() as libc::socklen_t,
                    )
                };
                assert_eq!(r, 0);
            }
            support::close(c);
            common::wait_all();
        }
        support::close(l);
    });
}

#[test]
fn a_plain_threads_sleep_cut_by_a_signal_returns_the_seconds_left() {
    static SLEEPER: AtomicUsize = AtomicUsize::new(0);
    extern "C" fn nothing(_: libc::c_int) {}
    isolated!(TIMEOUT, {
        on_signal(libc::SIGUSR2, nothing);
        let t = std::thread::spawn(|| {
            // SAFETY: pthread_self has no preconditions.
            SLEEPER.store(unsafe { libc::pthread_self() } as usize, Ordering::Release);
            raw::sleep(1000)
        });
        while SLEEPER.load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
        // A signal that lands before the sleep starts is lost: keep sending until the
        // sleep is cut (each one cuts a sleep in progress).
        while !t.is_finished() {
            // SAFETY: the thread is alive (not finished), and SIGUSR2 has a handler.
            unsafe { libc::pthread_kill(SLEEPER.load(Ordering::Relaxed) as libc::pthread_t, libc::SIGUSR2) };
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let left = t.join().unwrap();
        assert!(left > 0 && left <= 1000, "sleep(1000) cut short returned {left}");
    });
}
