//! Descriptors at or above `MAX_CACHED_FD` (65536) behave like low ones. Their kind used to
//! be forgotten between calls, so a pipe the layer had made non-blocking looked like the
//! user's own non-blocking pipe on the next call (its `EAGAIN` went back to the caller),
//! a plain thread's read of it did not wait, and a listener's second `accept` failed the
//! same way. Now they live in a map (`fdkind.rs`).
//!
//! Each test moves its descriptors above the limit with `dup2`, raising the child's soft
//! `RLIMIT_NOFILE` first (the hard limit too, where it is lower and the test may:
//! `CAP_SYS_RESOURCE`); where it cannot, the test fails, saying why. Both are `#[ignore]`d
//! (the reason says where they can run): the CI sandbox's hard limit is 20000.

use parlib_testsched as common;
mod support;

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use parlib_syscalls::{io, MAX_CACHED_FD};
use parlib_testkit::isolated;
use parlib_uthread::TlsMode;
use support::{errno_of, ONE_VCORE, TIMEOUT};

/// The first high descriptor number the tests use.
const HIGH: i32 = MAX_CACHED_FD as i32 + 4464; // 70000

/// The descriptor limits.
fn nofile() -> libc::rlimit {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct we pass.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim
}

/// In the child: raises the descriptor limit above `HIGH + 16`, the hard one too if it
/// is lower (a privileged process may: `CAP_SYS_RESOURCE`, up to `fs.nr_open`). Fails
/// the test, saying why, where that is not allowed: the test would check nothing. (The
/// map itself is also tested without descriptors, by the unit tests in `fdkind.rs`.)
fn allow_high_descriptors() {
    let want = HIGH as libc::rlim_t + 16;
    let mut lim = nofile();
    if lim.rlim_cur >= want {
        return;
    }
    let hard = lim.rlim_max;
    lim.rlim_cur = want;
    lim.rlim_max = lim.rlim_max.max(want);
    // SAFETY: setrlimit reads the struct we pass.
    let r = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(
        r,
        0,
        "cannot raise RLIMIT_NOFILE to {want} (hard limit {hard}: {}): no descriptor >= {HIGH} can \
         exist here, so this test would check nothing; run it with a higher hard limit or as root",
        std::io::Error::last_os_error()
    );
}

/// Moves `fd` to `to` (plain `dup2`, then the old number closed through the layer).
fn move_fd(fd: i32, to: i32) -> i32 {
    // SAFETY: dup2 on descriptors we own.
    assert_eq!(unsafe { libc::dup2(fd, to) }, to, "dup2: {}", std::io::Error::last_os_error());
    support::close(fd);
    to
}

/// On one vcore, round after round, a uthread reads a high pipe that is empty (it must
/// wait, not get `EAGAIN`) while another uthread yields, then writes; after the rounds a
/// plain thread reads the same pipe (the layer made it non-blocking: it must still block
/// for the plain thread) until a uthread writes.
#[test]
#[ignore = "needs descriptors above 65536 (RLIMIT_NOFILE hard limit above 70016); sandboxes like CI's allow 20000 without CAP_SYS_RESOURCE: run with --ignored where the limit allows"]
fn a_pipe_above_the_cached_range_blocks_only_the_uthread_round_after_round() {
    const ROUNDS: u32 = 5;
    static WANTED: AtomicI32 = AtomicI32::new(-1);
    isolated!(TIMEOUT, env = ONE_VCORE, {
        allow_high_descriptors();
        support::init_runtime();
        let [r, w] = support::pipe();
        let (r, w) = (move_fd(r, HIGH), move_fd(w, HIGH + 1));
        support::spawn(TlsMode::None, move || {
            for i in 0..ROUNDS {
                WANTED.store(i as i32, Ordering::Release);
                let mut b = [0u8; 4];
                match errno_of(io::read(r, &mut b)) {
                    Ok(4) => assert_eq!(u32::from_le_bytes(b), i, "round {i}"),
                    other => panic!("round {i}: read of high fd {r}: {other:?}"),
                }
            }
        });
        support::spawn(TlsMode::None, move || {
            for i in 0..ROUNDS {
                // The reader is waiting for round i (its read found the pipe empty).
                common::wait_until(|| WANTED.load(Ordering::Acquire) == i as i32);
                for _ in 0..10 {
                    common::yield_now();
                }
                support::write_all(w, &i.to_le_bytes());
            }
        });
        common::wait_all();

        static PLAIN_READING: AtomicBool = AtomicBool::new(false);
        let plain = support::plain_thread(move || {
            PLAIN_READING.store(true, Ordering::Release);
            let mut b = [0u8; 4];
            let got = errno_of(io::read(r, &mut b));
            (got, b)
        });
        common::wait_until(|| PLAIN_READING.load(Ordering::Acquire));
        for _ in 0..100 {
            common::yield_now();
        }
        support::write_all(w, b"late");
        common::wait_until(|| plain.is_finished());
        let (got, b) = plain.join().unwrap();
        assert_eq!(got, Ok(4), "a plain thread's read of a high pipe the layer made non-blocking");
        assert_eq!(&b, b"late");
        support::close(r);
        support::close(w);
    });
}

/// A listener moved above the cached range: every `accept` on it waits for its client
/// (clients connect only after the server is waiting), not just the first.
#[test]
#[ignore = "needs descriptors above 65536 (RLIMIT_NOFILE hard limit above 70016); sandboxes like CI's allow 20000 without CAP_SYS_RESOURCE: run with --ignored where the limit allows"]
fn a_listener_above_the_cached_range_accepts_every_connection() {
    const CLIENTS: i32 = 4;
    static WAITING_FOR: AtomicI32 = AtomicI32::new(-1);
    isolated!(TIMEOUT, env = ONE_VCORE, {
        allow_high_descriptors();
        support::init_runtime();
        let (l, port) = support::bound_loopback_socket(Some(16));
        let l = move_fd(l, HIGH + 2);
        support::spawn(TlsMode::None, move || {
            for i in 0..CLIENTS {
                WAITING_FOR.store(i, Ordering::Release);
                let (c, _) = io::accept(l).unwrap_or_else(|e| panic!("accept {i} on high fd {l}: {e}"));
                let c = move_fd(c, HIGH + 3);
                let mut b = [0u8; 4];
                support::read_exact(c, &mut b);
                assert_eq!(i32::from_le_bytes(b), i);
                support::close(c);
            }
        });
        for i in 0..CLIENTS {
            common::wait_until(|| WAITING_FOR.load(Ordering::Acquire) == i);
            for _ in 0..10 {
                common::yield_now();
            }
            let s = io::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0).expect("socket");
            let s = move_fd(s, HIGH + 4);
            io::connect(s, &support::loopback_addr(port)).expect("connect");
            support::write_all(s, &i.to_le_bytes());
            support::close(s);
        }
        common::wait_all();
        support::close(l);
    });
}
