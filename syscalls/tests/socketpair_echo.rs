//! 1000 echo conversations over their own socketpairs on every vcore: every byte arrives
//! intact and in order (DESIGN §7: socket I/O blocks only the calling uthread, readiness
//! through the vcores' epoll instances).
//!
//! Each conversation has an *echoer* uthread that reads whatever arrives on its end and
//! writes it back until EOF. Messages vary in size (1 to `MAX_MESSAGE` bytes, so stream
//! reads split and merge them) and their bytes depend on the conversation, the message
//! number and the position ([`support::fill_pattern`]), so a lost, duplicated, reordered,
//! truncated or crossed message shows up as a mismatch.
//!
//! * request/reply: a client uthread writes one message and reads its echo back before
//!   the next, so every message is a blocking round trip;
//! * full duplex: a sender uthread streams every message while a receiver uthread on the
//!   same descriptor reads the echoes, so writers fill the socket buffers and wait for
//!   room (`EPOLLOUT`) while readers on the same descriptor wait for data (`EPOLLIN`),
//!   often from another vcore.

use parlib_testsched as common;
mod support;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parlib_syscalls::io;
use parlib_testkit::isolated;
use parlib_uthread::TlsMode;
use support::fill_pattern;

/// Conversations, each on its own socketpair.
const PAIRS: usize = 1000;
/// Messages per conversation. Release builds do the full 1000 × 1000. Debug builds keep
/// all 1000 conversations but send a quarter of the messages each: unoptimised, the full
/// run took about 80 s per test on the shared two-CPU machine (load 11), and the suite
/// runs both tests at once next to other crates' tests.
const MESSAGES: usize = if cfg!(debug_assertions) { 250 } else { 1000 };
/// Largest message. Request/reply sends one at a time, far below the socket buffer.
const MAX_MESSAGE: usize = 1024;
/// Generous: up to 2M round trips on a loaded machine.
const ECHO_TIMEOUT: Duration = Duration::from_secs(600);

static BYTES_CHECKED: AtomicU64 = AtomicU64::new(0);
static BYTES_ECHOED: AtomicU64 = AtomicU64::new(0);
static CONVERSATIONS_DONE: AtomicUsize = AtomicUsize::new(0);

/// The size of message `seq` of conversation `pair`.
fn message_len(pair: usize, seq: usize) -> usize {
    support::Rng::new((pair as u64) << 32 | seq as u64).range(1, MAX_MESSAGE)
}

/// Reads whatever arrives on `fd` and writes it back, until EOF; then closes `fd`.
fn echo(fd: i32) {
    let mut buf = vec![0u8; 4096];
    loop {
        match io::read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                support::write_all(fd, &buf[..n]);
                BYTES_ECHOED.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => panic!("echoer read on fd {fd}: {e}"),
        }
    }
    support::close(fd);
}

/// Starts an echoer per conversation; returns the client ends. With `small_buffers`, both
/// ends get the smallest send buffer the kernel allows, so writers fill it after a few
/// messages and must wait for room.
fn spawn_echoers(small_buffers: bool) -> Vec<i32> {
    let mut clients = Vec::with_capacity(PAIRS);
    for _ in 0..PAIRS {
        let [a, b] = support::socketpair();
        if small_buffers {
            support::set_send_buffer(a, 4096);
            support::set_send_buffer(b, 4096);
        }
        support::spawn(TlsMode::None, move || echo(b));
        clients.push(a);
    }
    clients
}

fn check_totals() {
    let total: u64 = (0..PAIRS).flat_map(|p| (0..MESSAGES).map(move |s| message_len(p, s) as u64)).sum();
    assert_eq!(CONVERSATIONS_DONE.load(Ordering::Relaxed), PAIRS, "not every conversation finished");
    assert_eq!(BYTES_CHECKED.load(Ordering::Relaxed), total, "clients checked a different byte count");
    assert_eq!(BYTES_ECHOED.load(Ordering::Relaxed), total, "echoers echoed a different byte count");
}

#[test]
fn a_thousand_request_reply_conversations_over_socketpairs_echo_every_byte_in_order() {
    isolated!(ECHO_TIMEOUT, {
        support::init_runtime();
        let clients = spawn_echoers(false);
        for (pair, fd) in clients.into_iter().enumerate() {
            support::spawn(TlsMode::None, move || {
                let (mut out, mut back) = (vec![0u8; MAX_MESSAGE], vec![0u8; MAX_MESSAGE]);
                for seq in 0..MESSAGES {
                    let len = message_len(pair, seq);
                    fill_pattern(&mut out[..len], pair as u64, seq as u64);
                    support::write_all(fd, &out[..len]);
                    support::read_exact(fd, &mut back[..len]);
                    assert!(
                        out[..len] == back[..len],
                        "conversation {pair}, message {seq} ({len} bytes) came back altered"
                    );
                    BYTES_CHECKED.fetch_add(len as u64, Ordering::Relaxed);
                }
                // EOF for the echoer, which then closes its end; ours must then read EOF.
                // SAFETY: shutdown takes no pointer.
                assert_eq!(unsafe { libc::shutdown(fd, libc::SHUT_WR) }, 0, "shutdown");
                let rest = support::read_to_end(fd);
                assert!(
                    rest.is_empty(),
                    "conversation {pair}: {} stray bytes after the last echo",
                    rest.len()
                );
                support::close(fd);
                CONVERSATIONS_DONE.fetch_add(1, Ordering::Relaxed);
            });
        }
        common::wait_all();
        check_totals();
    });
}

#[test]
fn a_thousand_full_duplex_conversations_over_socketpairs_echo_every_byte_in_order() {
    static SENDERS_DONE: AtomicUsize = AtomicUsize::new(0);
    isolated!(ECHO_TIMEOUT, {
        support::init_runtime();
        let clients = spawn_echoers(true);
        for (pair, fd) in clients.into_iter().enumerate() {
            support::spawn(TlsMode::None, move || {
                let mut out = vec![0u8; MAX_MESSAGE];
                for seq in 0..MESSAGES {
                    let len = message_len(pair, seq);
                    fill_pattern(&mut out[..len], pair as u64, seq as u64);
                    support::write_all(fd, &out[..len]);
                }
                // SAFETY: shutdown takes no pointer.
                assert_eq!(unsafe { libc::shutdown(fd, libc::SHUT_WR) }, 0, "shutdown");
                SENDERS_DONE.fetch_add(1, Ordering::Release);
            });
            support::spawn(TlsMode::None, move || {
                // The stream of echoes, checked message by message as bytes arrive.
                let mut want = vec![0u8; MAX_MESSAGE];
                let mut buf = vec![0u8; 8192];
                let (mut seq, mut len, mut at) = (0, message_len(pair, 0), 0);
                fill_pattern(&mut want[..len], pair as u64, 0);
                loop {
                    let n = match io::read(fd, &mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) => panic!("receiver read on fd {fd}: {e}"),
                    };
                    for &b in &buf[..n] {
                        assert!(seq < MESSAGES, "conversation {pair}: more bytes came back than were sent");
                        assert!(
                            b == want[at],
                            "conversation {pair}, message {seq}: byte {at} of {len} came back altered"
                        );
                        at += 1;
                        if at == len {
                            BYTES_CHECKED.fetch_add(len as u64, Ordering::Relaxed);
                            seq += 1;
                            at = 0;
                            if seq < MESSAGES {
                                len = message_len(pair, seq);
                                fill_pattern(&mut want[..len], pair as u64, seq as u64);
                            }
                        }
                    }
                }
                assert_eq!(seq, MESSAGES, "conversation {pair}: EOF after {seq} messages (+{at} bytes)");
                // EOF means the echoer saw the sender's shutdown: the sender is done with `fd`.
                support::close(fd);
                CONVERSATIONS_DONE.fetch_add(1, Ordering::Relaxed);
            });
        }
        common::wait_all();
        assert_eq!(SENDERS_DONE.load(Ordering::Relaxed), PAIRS, "not every sender finished");
        check_totals();
    });
}
