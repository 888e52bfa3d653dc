//! A loopback TCP echo server on uthreads serves 200 concurrent clients correctly
//! (DESIGN §7: `accept`, `connect`, `read`, `write` block only the calling uthread).
//!
//! The server listens on 127.0.0.1 with plain libc calls; an acceptor uthread loops on
//! `io::accept` and starts one handler uthread per connection, which echoes until EOF.
//! Half the clients are uthreads (`io::socket`, `io::connect`, `io::write`, `io::read`),
//! half are plain Linux threads using `std::net::TcpStream`. Every client first connects,
//! then waits until all 200 are connected (so the server really holds 200 connections at
//! once), then sends chunks of varying size, each read back and compared before the next,
//! half-closes, and expects EOF with nothing more.

use parlib_testsched as common;
mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parlib_syscalls::io;
use parlib_testkit::isolated;
use parlib_uthread::TlsMode;
use support::{fill_pattern, Rng};

const UTHREAD_CLIENTS: usize = 100;
const THREAD_CLIENTS: usize = 100;
const CLIENTS: usize = UTHREAD_CLIENTS + THREAD_CLIENTS;
/// Chunks each client sends; each is echoed before the next is sent.
const ROUNDS: usize = 20;
/// Largest chunk: one chunk at a time fits the loopback socket buffers many times over.
const MAX_CHUNK: usize = 16 * 1024;
/// How long a client waits for the others to connect before giving up (a bound for the
/// loop, far beyond what connecting takes even on a loaded machine).
const CONNECT_BARRIER_LIMIT: Duration = Duration::from_secs(100);

static LISTEN_FD: AtomicI32 = AtomicI32::new(-1);
static ACCEPTED: AtomicUsize = AtomicUsize::new(0);
static HANDLERS_DONE: AtomicUsize = AtomicUsize::new(0);
static CONNECTED: AtomicUsize = AtomicUsize::new(0);
static CLIENTS_DONE: AtomicUsize = AtomicUsize::new(0);
static BYTES_SENT: AtomicU64 = AtomicU64::new(0);
static BYTES_ECHOED: AtomicU64 = AtomicU64::new(0);

/// The chunk sizes of client `id`.
fn chunk_lens(id: usize) -> Vec<usize> {
    let mut r = Rng::new(0xC11E_0000 + id as u64);
    (0..ROUNDS).map(|_| r.range(1, MAX_CHUNK)).collect()
}

/// The acceptor: `CLIENTS` connections, a handler uthread each.
fn acceptor() {
    let lfd = LISTEN_FD.load(Ordering::Relaxed);
    for _ in 0..CLIENTS {
        let (fd, peer) = io::accept(lfd).unwrap_or_else(|e| panic!("accept: {e}"));
        assert_eq!(peer.len() as usize, core::mem::size_of::<libc::sockaddr_in>(), "accept's address length");
        assert_eq!(peer.family(), libc::AF_INET as libc::sa_family_t, "accept's address family");
        assert_eq!(
            peer.as_std().map(|a| a.ip()),
            Some(std::net::Ipv4Addr::LOCALHOST.into()),
            "a peer that is not 127.0.0.1"
        );
        ACCEPTED.fetch_add(1, Ordering::Relaxed);
        support::spawn(TlsMode::None, move || handler(fd));
    }
    support::close(lfd);
}

/// Echoes until EOF, then closes.
fn handler(fd: i32) {
    let mut buf = vec![0u8; 8192];
    loop {
        match io::read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                support::write_all(fd, &buf[..n]);
                BYTES_ECHOED.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => panic!("server read on fd {fd}: {e}"),
        }
    }
    support::close(fd);
    HANDLERS_DONE.fetch_add(1, Ordering::Relaxed);
}

/// Waits (with `pause`) until every client is connected.
fn connect_barrier(pause: impl Fn()) {
    CONNECTED.fetch_add(1, Ordering::AcqRel);
    let start = Instant::now();
    while CONNECTED.load(Ordering::Acquire) < CLIENTS {
        assert!(start.elapsed() < CONNECT_BARRIER_LIMIT, "the other clients never connected");
        pause();
    }
}

/// A client on a uthread, through the layer.
fn uthread_client(id: usize, port: u16) {
    let fd = io::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)
        .unwrap_or_else(|e| panic!("socket: {e}"));
    io::connect(fd, &support::loopback_addr(port)).unwrap_or_else(|e| panic!("client {id}: connect: {e}"));
    connect_barrier(|| io::nanosleep(Duration::from_millis(1)).expect("nanosleep"));
    let (mut out, mut back) = (vec![0u8; MAX_CHUNK], vec![0u8; MAX_CHUNK]);
    for (round, len) in chunk_lens(id).into_iter().enumerate() {
        fill_pattern(&mut out[..len], id as u64, round as u64);
        support::write_all(fd, &out[..len]);
        support::read_exact(fd, &mut back[..len]);
        assert!(out[..len] == back[..len], "client {id}, chunk {round} ({len} bytes) came back altered");
        BYTES_SENT.fetch_add(len as u64, Ordering::Relaxed);
    }
    // SAFETY: shutdown takes no pointer.
    assert_eq!(unsafe { libc::shutdown(fd, libc::SHUT_WR) }, 0, "shutdown");
    let rest = support::read_to_end(fd);
    assert!(rest.is_empty(), "client {id}: {} stray bytes after the last echo", rest.len());
    support::close(fd);
    CLIENTS_DONE.fetch_add(1, Ordering::Relaxed);
}

/// A client on a plain thread, with std's blocking sockets.
fn thread_client(id: usize, port: u16) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("client {id}: {e}"));
    connect_barrier(|| std::thread::sleep(Duration::from_millis(1)));
    let (mut out, mut back) = (vec![0u8; MAX_CHUNK], vec![0u8; MAX_CHUNK]);
    for (round, len) in chunk_lens(id).into_iter().enumerate() {
        fill_pattern(&mut out[..len], id as u64, round as u64);
        s.write_all(&out[..len]).expect("write");
        s.read_exact(&mut back[..len]).expect("read");
        assert!(out[..len] == back[..len], "client {id}, chunk {round} ({len} bytes) came back altered");
        BYTES_SENT.fetch_add(len as u64, Ordering::Relaxed);
    }
    s.shutdown(Shutdown::Write).expect("shutdown");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("read to EOF");
    assert!(rest.is_empty(), "client {id}: {} stray bytes after the last echo", rest.len());
    CLIENTS_DONE.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn a_uthread_echo_server_serves_200_concurrent_loopback_clients_exactly() {
    isolated!(support::TIMEOUT, {
        support::init_runtime();
        let (lfd, port) = support::bound_loopback_socket(Some(512));
        LISTEN_FD.store(lfd, Ordering::Relaxed);
        support::spawn(TlsMode::None, acceptor);
        for id in 0..UTHREAD_CLIENTS {
            support::spawn(TlsMode::None, move || uthread_client(id, port));
        }
        let threads: Vec<_> = (UTHREAD_CLIENTS..CLIENTS)
            .map(|id| support::plain_thread(move || thread_client(id, port)))
            .collect();
        common::wait_until(|| threads.iter().all(|t| t.is_finished()));
        for t in threads {
            t.join().expect("a plain-thread client failed (message above)");
        }
        common::wait_all();

        let total: u64 = (0..CLIENTS).flat_map(chunk_lens).map(|l| l as u64).sum();
        assert_eq!(ACCEPTED.load(Ordering::Relaxed), CLIENTS, "connections accepted");
        assert_eq!(CONNECTED.load(Ordering::Relaxed), CLIENTS, "clients connected");
        assert_eq!(CLIENTS_DONE.load(Ordering::Relaxed), CLIENTS, "clients finished");
        assert_eq!(HANDLERS_DONE.load(Ordering::Relaxed), CLIENTS, "handlers that saw EOF");
        assert_eq!(BYTES_SENT.load(Ordering::Relaxed), total, "bytes the clients checked");
        assert_eq!(BYTES_ECHOED.load(Ordering::Relaxed), total, "bytes the server echoed");
    });
}
