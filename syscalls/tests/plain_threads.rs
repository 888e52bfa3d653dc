//! Outside a uthread the wrappers keep the system calls' blocking semantics (DESIGN §7:
//! "Outside a uthread every wrapper is the plain syscall"; `raw.rs`: "on a descriptor we
//! made non-blocking, a plain thread's call still blocks"):
//!
//! * a plain thread's `io::read` of an empty pipe that the layer made non-blocking
//!   (because a uthread used it first) blocks until data arrives, never `EAGAIN`; so do
//!   `io::write` to such a pipe when it is full, `io::read` of an empty socket and
//!   `io::accept` on a listener the layer made non-blocking, and `io::connect` of a socket
//!   the layer made non-blocking to a Unix listener whose backlog is full;
//! * a descriptor the *user* made non-blocking gives `EAGAIN` to uthreads and plain
//!   threads alike: the layer must not wait on it (on one vcore, a wait would hang the
//!   test), nor clear the user's flag.

use parlib_testsched as common;
mod support;

use std::io::IoSliceMut;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_syscalls::io;
use parlib_testkit::isolated;
use parlib_uthread::TlsMode;
use support::{errno_of, ONE_VCORE, TIMEOUT};

/// How long the data source waits after the plain thread announced its call, so that the
/// call is (almost surely) blocked in the kernel when the data comes. Only makes the test
/// sharper; a reader that got there late reads the data at once and passes all the same.
const LATE: Duration = Duration::from_millis(100);

static WRITTEN: AtomicBool = AtomicBool::new(false);
static CALLING: AtomicBool = AtomicBool::new(false);

/// A uthread blocks on and reads from `r`, then writes to `w` (so the layer classifies
/// both ends, and registers `r`). For a pipe, checks the layer set `O_NONBLOCK` on both,
/// the precondition of these tests; sockets keep their flags (the layer passes
/// `MSG_DONTWAIT` per call instead), so a plain call on them would block anyway unless the
/// layer's own `MSG_DONTWAIT` leaked out.
fn used_by_a_uthread_first(r: i32, w: i32, is_pipe: bool) {
    static DONE: AtomicBool = AtomicBool::new(false);
    DONE.store(false, Ordering::Relaxed);
    support::spawn(TlsMode::None, move || {
        let mut b = [0u8; 5];
        support::read_exact(r, &mut b);
        assert_eq!(&b, b"first");
        support::write_all(w, b"again");
        DONE.store(true, Ordering::Release);
    });
    common::yield_now();
    support::write_all(w, b"first");
    common::wait_until(|| DONE.load(Ordering::Acquire));
    let mut b = [0u8; 5];
    support::read_exact(r, &mut b);
    assert_eq!(&b, b"again");
    for fd in [r, w] {
        let nb = support::fd_flags(fd) & libc::O_NONBLOCK != 0;
        if is_pipe {
            assert!(nb, "precondition: the layer made pipe end {fd} non-blocking");
        } else {
            assert!(!nb, "the layer changed socket {fd}'s flags");
        }
    }
}

/// On a plain thread: announces the call, then reads `want.len()` bytes from `fd` in one
/// `io::read`, which must block until the data is written rather than fail.
fn plain_read_blocks_until_written(fd: i32, want: &'static [u8]) -> std::thread::JoinHandle<()> {
    support::plain_thread(move || {
        assert!(!support::on_uthread());
        let mut buf = vec![0u8; want.len()];
        CALLING.store(true, Ordering::Release);
        let r = io::read(fd, &mut buf);
        let written = WRITTEN.load(Ordering::Acquire);
        let n = r.unwrap_or_else(|e| panic!("a plain thread's read of an empty descriptor failed: {e}"));
        assert!(written, "the read returned before anything was written");
        assert_eq!(&buf[..n], &want[..n], "the read got other bytes");
        assert!(n > 0, "the read returned 0 (EOF) from an open, empty descriptor");
    })
}

/// From a uthread: waits until the plain thread is calling, then `LATE`, then writes.
fn write_late(fd: i32, data: &[u8]) {
    common::wait_until(|| CALLING.load(Ordering::Acquire));
    io::nanosleep(LATE).expect("nanosleep");
    WRITTEN.store(true, Ordering::Release);
    support::write_all(fd, data);
}

#[test]
fn a_plain_threads_read_of_a_pipe_the_layer_made_non_blocking_still_blocks() {
    isolated!(TIMEOUT, {
        support::init_runtime();
        let [r, w] = support::pipe();
        used_by_a_uthread_first(r, w, true);
        let t = plain_read_blocks_until_written(r, b"late data");
        write_late(w, b"late data");
        common::wait_until(|| t.is_finished());
        t.join().expect("the plain reader failed (message above)");
        support::close(r);
        support::close(w);
    });
}

#[test]
fn a_plain_threads_read_of_an_empty_socket_blocks() {
    isolated!(TIMEOUT, {
        support::init_runtime();
        let [a, b] = support::socketpair();
        used_by_a_uthread_first(a, b, false);
        let t = plain_read_blocks_until_written(a, b"late data");
        write_late(b, b"late data");
        common::wait_until(|| t.is_finished());
        t.join().expect("the plain reader failed (message above)");
        support::close(a);
        support::close(b);
    });
}

/// A plain thread writes 1 MiB into a pipe the layer made non-blocking, call after call
/// (each may be short); the pipe holds 64 KiB, so most calls find it full and must block
/// until a uthread, reading slowly, makes room. None may fail with EAGAIN.
#[test]
fn a_plain_threads_write_to_a_full_pipe_the_layer_made_non_blocking_blocks_for_room() {
    const TOTAL: usize = 1 << 20;
    static WRITE_FD: AtomicI32 = AtomicI32::new(-1);
    isolated!(TIMEOUT, {
        support::init_runtime();
        let [r, w] = support::pipe();
        used_by_a_uthread_first(r, w, true);
        WRITE_FD.store(w, Ordering::Relaxed);
        let t = support::plain_thread(move || {
            let mut data = vec![0u8; TOTAL];
            support::fill_pattern(&mut data, 1, 2);
            let mut at = 0;
            while at < TOTAL {
                match io::write(WRITE_FD.load(Ordering::Relaxed), &data[at..]) {
                    Ok(n) => at += n,
                    Err(e) => panic!("a plain thread's write to a full pipe failed: {e}"),
                }
            }
        });
        let mut want = vec![0u8; TOTAL];
        support::fill_pattern(&mut want, 1, 2);
        let mut got = vec![0u8; TOTAL];
        let mut at = 0;
        while at < TOTAL {
            let n = io::read(r, &mut got[at..(at + 16 * 1024).min(TOTAL)]).expect("read");
            assert!(n > 0, "EOF before the writer finished");
            at += n;
            // Read slowly: the writer keeps finding the pipe full.
            io::nanosleep(Duration::from_micros(200)).expect("nanosleep");
        }
        assert!(got == want, "the bytes through the pipe were altered");
        common::wait_until(|| t.is_finished());
        t.join().expect("the plain writer failed (message above)");
        support::close(r);
        support::close(w);
    });
}

/// The listening socket becomes non-blocking when a uthread accepts on it; a plain
/// thread's `io::accept` must still wait for a connection.
#[test]
fn a_plain_threads_accept_on_a_listener_the_layer_made_non_blocking_blocks() {
    static LFD: AtomicI32 = AtomicI32::new(-1);
    static ACCEPTED: AtomicUsize = AtomicUsize::new(0);
    isolated!(TIMEOUT, {
        support::init_runtime();
        let (lfd, port) = support::bound_loopback_socket(Some(16));
        LFD.store(lfd, Ordering::Relaxed);
        support::spawn(TlsMode::None, || {
            let (fd, _) = io::accept(LFD.load(Ordering::Relaxed)).expect("accept on a uthread");
            support::close(fd);
            ACCEPTED.fetch_add(1, Ordering::Release);
        });
        let c1 = support::on_plain_thread(move || {
            std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect")
        });
        common::wait_until(|| ACCEPTED.load(Ordering::Acquire) == 1);
        drop(c1);
        assert_ne!(
            support::fd_flags(lfd) & libc::O_NONBLOCK,
            0,
            "precondition: the layer made the listener non-blocking"
        );

        let t = support::plain_thread(move || {
            CALLING.store(true, Ordering::Release);
            let r = io::accept(LFD.load(Ordering::Relaxed));
            let written = WRITTEN.load(Ordering::Acquire);
            let (fd, _) = r.unwrap_or_else(|e| panic!("a plain thread's accept failed: {e}"));
            assert!(written, "accept returned before anyone connected");
            support::close(fd);
        });
        common::wait_until(|| CALLING.load(Ordering::Acquire));
        io::nanosleep(LATE).expect("nanosleep");
        WRITTEN.store(true, Ordering::Release);
        let c2 = support::on_plain_thread(move || {
            std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect")
        });
        common::wait_until(|| t.is_finished());
        t.join().expect("the plain acceptor failed (message above)");
        drop(c2);
        support::close(lfd);
    });
}

/// A uthread's `connect` makes its socket non-blocking (ours) before the call, so even one
/// that fails leaves the flag set. A plain thread's `io::connect` of that socket to a Unix
/// listener whose backlog is full must then wait until the server accepts, as libc's
/// blocking `connect` does, not fail with the non-blocking call's EAGAIN.
#[test]
fn a_plain_threads_connect_on_a_socket_the_layer_made_non_blocking_waits_for_a_full_backlog() {
    static ACCEPTED: AtomicBool = AtomicBool::new(false);
    isolated!(TIMEOUT, {
        support::init_runtime();
        let new_socket =
            || io::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0).expect("socket");
        let (lfd, addr) = support::unix_listener("plain-connect", 0);
        let first = new_socket();
        io::connect(first, &addr).expect("the first connect fills the backlog");
        // SAFETY: plain socket calls on our own descriptor with a valid, sized address.
        let nb_connect = unsafe {
            let fd =
                libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0);
            let e = if libc::connect(fd, addr.as_ptr(), addr.len()) == 0 { 0 } else { support::errno() };
            libc::close(fd);
            e
        };
        assert_eq!(nb_connect, libc::EAGAIN, "precondition: a non-blocking connect finds the backlog full");

        // The test body is the uthread `main`: its connect to an unbound address fails.
        assert!(support::on_uthread());
        let fd = new_socket();
        let nowhere = support::unix_addr("plain-connect-nowhere");
        assert_eq!(errno_of(io::connect(fd, &nowhere)), Err(libc::ECONNREFUSED), "a uthread's connect");
        assert_ne!(
            support::fd_flags(fd) & libc::O_NONBLOCK,
            0,
            "precondition: the layer made the socket non-blocking"
        );

        let t = support::plain_thread(move || {
            CALLING.store(true, Ordering::Release);
            let r = io::connect(fd, &addr);
            let accepted = ACCEPTED.load(Ordering::Acquire);
            r.unwrap_or_else(|e| panic!("a plain thread's connect to a full backlog failed: {e}"));
            assert!(accepted, "connect returned before the server accepted");
        });
        common::wait_until(|| CALLING.load(Ordering::Acquire));
        io::nanosleep(LATE).expect("nanosleep");
        ACCEPTED.store(true, Ordering::Release);
        let (a, _) = io::accept(lfd).expect("accept");
        common::wait_until(|| t.is_finished());
        t.join().expect("the plain connector failed (message above)");
        assert_ne!(
            support::fd_flags(fd) & libc::O_NONBLOCK,
            0,
            "the layer did not restore its O_NONBLOCK after the blocking connect"
        );
        let (b, _) = io::accept(lfd).expect("accept");
        support::write_all(fd, b"hello");
        let mut got = [0u8; 5];
        support::read_exact(b, &mut got);
        assert_eq!(&got, b"hello", "the plain thread's connection carries data");
        for s in [a, b, fd, first, lfd] {
            support::close(s);
        }
    });
}

/// The calls a case makes on a user-non-blocking descriptor, each of which would block.
fn would_block_calls(r: i32, w: i32) -> Vec<(&'static str, Result<usize, i32>)> {
    let mut buf = [0u8; 64];
    vec![
        ("read", errno_of(io::read(r, &mut buf))),
        ("readv", errno_of(io::readv(r, &mut [IoSliceMut::new(&mut buf)]))),
        ("write to a full descriptor", {
            // Fill it (the user's non-blocking writes stop short), then one more.
            let chunk = [1u8; 4096];
            while io::write(w, &chunk).is_ok() {}
            errno_of(io::write(w, &chunk))
        }),
    ]
}

/// Every would-block call gave EAGAIN, and the user's flag is still set.
fn check_eagain(calls: &[(&'static str, Result<usize, i32>)], fds: [i32; 2], on: &str) {
    for (what, r) in calls {
        assert_eq!(*r, Err(libc::EAGAIN), "{what} on a user-non-blocking descriptor on {on}");
    }
    for fd in fds {
        assert_ne!(support::fd_flags(fd) & libc::O_NONBLOCK, 0, "the layer cleared the user's O_NONBLOCK");
    }
}

/// A full round of would-block calls on a fresh user-non-blocking pair from `make`, on a
/// uthread (one vcore: had the layer waited, nothing would ever wake it) and on a plain
/// thread.
fn user_nonblocking_gives_eagain(make: fn() -> [i32; 2]) {
    support::init_runtime();
    static DONE: AtomicBool = AtomicBool::new(false);
    let fds = make();
    support::spawn(TlsMode::None, move || {
        check_eagain(&would_block_calls(fds[0], fds[1]), fds, "a uthread");
        DONE.store(true, Ordering::Release);
    });
    common::wait_all();
    assert!(DONE.load(Ordering::Acquire));
    let fds2 = make();
    let calls = support::on_plain_thread(move || would_block_calls(fds2[0], fds2[1]));
    check_eagain(&calls, fds2, "a plain thread");
    for fd in fds.into_iter().chain(fds2) {
        support::close(fd);
    }
}

#[test]
fn a_pipe_the_user_made_non_blocking_gives_eagain_to_uthreads_and_plain_threads() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        user_nonblocking_gives_eagain(|| io::pipe2(libc::O_NONBLOCK | libc::O_CLOEXEC).expect("pipe2"));
    });
}

#[test]
fn a_socket_the_user_made_non_blocking_gives_eagain_to_uthreads_and_plain_threads() {
    isolated!(TIMEOUT, env = ONE_VCORE, {
        user_nonblocking_gives_eagain(|| {
            let fds = support::socketpair();
            for fd in fds {
                // SAFETY: F_SETFL takes an integer.
                assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK | libc::O_RDWR) }, 0);
            }
            fds
        });
    });
}

/// A listener the user made non-blocking, with no connection pending: `accept` gives
/// EAGAIN on a uthread (one vcore: a wait would hang) and on a plain thread.
#[test]
fn accept_on_a_user_non_blocking_listener_gives_eagain() {
    static RESULT: AtomicI32 = AtomicI32::new(0);
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        let (lfd, _port) = support::bound_loopback_socket(Some(16));
        // SAFETY: F_SETFL takes an integer.
        assert_eq!(unsafe { libc::fcntl(lfd, libc::F_SETFL, libc::O_NONBLOCK | libc::O_RDWR) }, 0);
        support::spawn(TlsMode::None, move || {
            let r = errno_of(io::accept(lfd));
            RESULT.store(r.err().unwrap_or(0), Ordering::Relaxed);
        });
        common::wait_all();
        assert_eq!(RESULT.load(Ordering::Relaxed), libc::EAGAIN, "accept on a uthread");
        let r = support::on_plain_thread(move || errno_of(io::accept(lfd)).map(|(fd, _)| fd));
        assert_eq!(r, Err(libc::EAGAIN), "accept on a plain thread");
        support::close(lfd);
    });
}

/// `MSG_DONTWAIT` is a per-call request for non-blocking behaviour: the layer passes the
/// EAGAIN back instead of waiting, on a uthread and a plain thread.
#[test]
fn recv_with_msg_dontwait_gives_eagain_on_an_empty_blocking_socket() {
    static RESULT: AtomicI32 = AtomicI32::new(0);
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        let [a, b] = support::socketpair();
        support::spawn(TlsMode::None, move || {
            let mut buf = [0u8; 8];
            let r = errno_of(io::recv(a, &mut buf, libc::MSG_DONTWAIT));
            RESULT.store(r.err().unwrap_or(0), Ordering::Relaxed);
        });
        common::wait_all();
        assert_eq!(RESULT.load(Ordering::Relaxed), libc::EAGAIN, "recv(MSG_DONTWAIT) on a uthread");
        let r = support::on_plain_thread(move || {
            let mut buf = [0u8; 8];
            errno_of(io::recv(a, &mut buf, libc::MSG_DONTWAIT))
        });
        assert_eq!(r, Err(libc::EAGAIN), "recv(MSG_DONTWAIT) on a plain thread");
        assert_eq!(support::fd_flags(a) & libc::O_NONBLOCK, 0, "the layer changed a socket's flags for recv");
        support::close(a);
        support::close(b);
    });
}

/// A user-non-blocking TCP socket's `connect` gives `EINPROGRESS`, as plain libc's does,
/// instead of waiting for the handshake.
#[test]
fn connect_on_a_user_non_blocking_socket_gives_einprogress_like_libc() {
    static RESULT: AtomicI32 = AtomicI32::new(0);
    fn nb_connect(port: u16, via_libc: bool) -> i32 {
        let fd = io::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0)
            .expect("socket");
        let addr = support::loopback_addr(port);
        let e = if via_libc {
            // SAFETY: a valid address of the length given.
            match unsafe { libc::connect(fd, addr.as_ptr(), addr.len()) } {
                0 => 0,
                _ => support::errno(),
            }
        } else {
            errno_of(io::connect(fd, &addr)).err().unwrap_or(0)
        };
        support::close(fd);
        e
    }
    isolated!(TIMEOUT, env = ONE_VCORE, {
        support::init_runtime();
        let (lfd, port) = support::bound_loopback_socket(Some(16));
        let libc_says = support::on_plain_thread(move || nb_connect(port, true));
        assert_eq!(libc_says, libc::EINPROGRESS, "plain libc's non-blocking connect");
        support::spawn(TlsMode::None, move || RESULT.store(nb_connect(port, false), Ordering::Relaxed));
        common::wait_all();
        assert_eq!(RESULT.load(Ordering::Relaxed), libc_says, "io::connect on a uthread");
        assert_eq!(support::on_plain_thread(move || nb_connect(port, false)), libc_says, "on a plain thread");
        // SAFETY: our own descriptor, never used through the layer.
        unsafe { libc::close(lfd) };
    });
}

// ---------------------------------------------------------------------------------------
// Regressions: library bugs found earlier, now fixed.

/// One blocking `write(2)` to a pipe returns only when everything is written (POSIX: "If
/// O_NONBLOCK is clear, a write request may cause the thread to block, but on normal
/// completion it shall return nbyte"; Linux's `pipe_write` does so). The layer's `write`
/// on a pipe it made non-blocking once returned after the first partial write, on a
/// plain thread and on a uthread alike, so code that relied on full writes to blocking
/// pipes lost data.
#[test]
fn one_write_to_a_blocking_pipe_writes_everything_as_libc_does() {
    const TOTAL: usize = 256 * 1024; // four times a pipe's default capacity
    static RESULTS: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];
    /// Drains `r` on a plain thread until EOF; returns the byte count.
    fn drain(r: i32) -> std::thread::JoinHandle<usize> {
        support::plain_thread(move || {
            let mut buf = vec![0u8; 8192];
            let mut total = 0;
            loop {
                match io::read(r, &mut buf) {
                    Ok(0) => return total,
                    Ok(n) => total += n,
                    Err(e) => panic!("drain: {e}"),
                }
            }
        })
    }
    /// One write of TOTAL bytes by `how` (0: libc on a plain thread, 1: io on a plain
    /// thread, 2: io on a uthread) to a fresh pipe; stores what it returned.
    fn one_write(how: usize) {
        let [r, w] = support::pipe();
        if how > 0 {
            used_by_a_uthread_first(r, w, true);
        }
        let reader = drain(r);
        let data = vec![3u8; TOTAL];
        let n = match how {
            // SAFETY: `data` is valid for TOTAL bytes.
            0 => support::on_plain_thread(
                move || unsafe { libc::write(w, data.as_ptr().cast(), TOTAL) } as usize
            ),
            1 => support::on_plain_thread(move || io::write(w, &data).expect("write")),
            _ => io::write(w, &data).expect("write"),
        };
        RESULTS[how].store(n, Ordering::Relaxed);
        support::close(w);
        common::wait_until(|| reader.is_finished());
        assert_eq!(reader.join().unwrap(), n, "the reader got a different count than was written");
        support::close(r);
    }
    parlib_testkit::isolated!(TIMEOUT, {
        support::init_runtime();
        one_write(0);
        assert_eq!(RESULTS[0].load(Ordering::Relaxed), TOTAL, "plain libc's blocking write");
        one_write(1);
        support::spawn(TlsMode::Backed, || one_write(2));
        common::wait_all();
        assert_eq!(
            (RESULTS[1].load(Ordering::Relaxed), RESULTS[2].load(Ordering::Relaxed)),
            (TOTAL, TOTAL),
            "io::write's results (plain thread, uthread) on a blocking pipe differ from libc's ({TOTAL})"
        );
    });
}

/// "Outside a uthread every wrapper is the plain syscall" (DESIGN §7), but a plain
/// thread's `io::read` of a pipe the layer has not seen before classifies it and sets
/// `O_NONBLOCK` on the open file description, which every other user of it (plain libc
/// calls in this process, other processes sharing an inherited pipe or terminal) sees:
/// their reads of the empty pipe now fail with EAGAIN instead of blocking.
#[test]
fn a_plain_threads_wrapper_call_leaves_the_descriptors_flags_alone() {
    parlib_testkit::isolated!(TIMEOUT, {
        support::init_runtime();
        let (before, after, libc_read) = support::on_plain_thread(|| {
            let fds = io::pipe2(libc::O_CLOEXEC).expect("pipe2");
            let before = support::fd_flags(fds[0]);
            // SAFETY: a one-byte write from a valid buffer.
            assert_eq!(unsafe { libc::write(fds[1], b"x".as_ptr().cast(), 1) }, 1);
            let mut b = [0u8; 1];
            assert_eq!(errno_of(io::read(fds[0], &mut b)), Ok(1), "a plain io::read of a pipe with data");
            let after = support::fd_flags(fds[0]);
            // What a plain libc reader of the (now empty) pipe gets, without blocking forever.
            let libc_read = if after & libc::O_NONBLOCK != 0 {
                // SAFETY: a one-byte read into a valid buffer.
                let r = unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) };
                (r, support::errno())
            } else {
                (0, 0)
            };
            for fd in fds {
                io::close(fd).expect("close");
            }
            (before, after, libc_read)
        });
        assert_eq!(
            after & libc::O_NONBLOCK,
            before & libc::O_NONBLOCK,
            "a plain thread's io::read set O_NONBLOCK on the pipe; a plain libc read of it then gave {libc_read:?} \
             (-1, EAGAIN) instead of blocking"
        );
    });
}
