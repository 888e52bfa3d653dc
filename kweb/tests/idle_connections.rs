//! Connections that send slowly or nothing at all hold no worker: with a pool of two or
//! four workers, slow clients and a thousand idle connections do not stop other clients
//! from being served (the thesis' kweb blocked a worker in `read` on each), and the idle
//! timeout closes them.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{get, get_request, lossy, stat, stats, Client, Server, TempDir};
use kweb::load::{run, Spec};

const PAGE: &[u8] = b"<p>x</p>\n";

fn root() -> TempDir {
    let root = TempDir::new("idle");
    root.write("x.html", PAGE);
    root
}

/// What happened to a slow client.
struct Slow {
    /// Bytes of its request head it had sent when the server closed the connection.
    sent: usize,
    /// What the server sent before closing (nothing, or a 408).
    received: Vec<u8>,
    /// Whether the server closed the connection (end of stream, or a failed write).
    closed: bool,
}

/// Sends one byte of a request head that would take half a minute to complete every
/// 200 ms, until the server closes the connection or `give_up` passes. `sent` counts the
/// bytes sent; `closed` is raised when the server closes the connection.
fn slow_client(port: u16, sent: Arc<AtomicUsize>, closed: Arc<AtomicUsize>, give_up: Instant) -> Slow {
    let request = format!("GET /x.html HTTP/1.1\r\nHost: kweb-test\r\nX-Slow: {}\r\n\r\n", "s".repeat(100));
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect a slow client");
    s.set_nodelay(true).unwrap();
    // The read timeout is the pause between bytes.
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut result = Slow { sent: 0, received: Vec::new(), closed: false };
    let mut buf = [0u8; 4096];
    'bytes: for &b in request.as_bytes() {
        if Instant::now() > give_up {
            break;
        }
        if s.write_all(&[b]).is_err() {
            result.closed = true;
            break;
        }
        result.sent += 1;
        sent.fetch_add(1, Ordering::SeqCst);
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    result.closed = true;
                    break 'bytes;
                }
                Ok(n) => result.received.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    result.closed = true;
                    break 'bytes;
                }
            }
        }
    }
    if result.closed {
        closed.fetch_add(1, Ordering::SeqCst);
    }
    result
}

fn slow_clients_hold_no_worker(variant: &str) {
    let root = root();
    // Two seconds of idle timeout: normal requests take milliseconds, so they are done
    // long before it could have freed anything.
    let server = Server::start(variant, root.path(), &["--workers", "2", "--idle-timeout", "2", "--url-cmd"]);
    let port = server.port();
    let (sent, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let give_up = Instant::now() + Duration::from_secs(12);
    let slow: Vec<_> = (0..5)
        .map(|_| {
            let (sent, closed) = (sent.clone(), closed.clone());
            std::thread::spawn(move || slow_client(port, sent, closed, give_up))
        })
        .collect();
    // Every slow client is accepted and has sent part of its head...
    common::wait_until(Duration::from_secs(5), "5 slow clients sending", || {
        sent.load(Ordering::SeqCst) >= 10 && stat(&stats(port), "connections_open") >= 6
    });
    // ...and meanwhile, more clients than workers are served.
    for i in 0..10 {
        let r = get(port, "/x.html");
        assert_eq!((r.status, &r.body[..]), (200, PAGE), "normal GET {i}");
    }
    assert_eq!(
        closed.load(Ordering::SeqCst),
        0,
        "slow clients were closed before the normal requests were served: did they wait for them?"
    );
    // Then the idle timeout closes the slow ones, with a 408 or without a word.
    for (i, h) in slow.into_iter().enumerate() {
        let s = h.join().expect("slow client thread");
        assert!(s.closed, "slow client {i} still open after {} bytes and 12 s", s.sent);
        if !s.received.is_empty() {
            let r = common::parse_head(&s.received);
            assert!(
                matches!(r, Ok((408, _))),
                "slow client {i}: the server sent {:?} before closing",
                lossy(&s.received)
            );
        }
    }
    assert!(stat(&stats(port), "connections_timed_out") >= 5);
    server.stop();
}
variant_tests!(slow_clients_hold_no_worker, 30);

fn a_thousand_idle_connections_do_not_stop_ten_active_ones(variant: &str) {
    let root = root();
    assert!(common::raise_fd_limit(1300) >= 1300, "this test needs 1300 descriptors");
    let server = Server::start(variant, root.path(), &["--workers", "4", "--url-cmd"]);
    let port = server.port();
    let idle: Vec<TcpStream> = (0..1000)
        .map(|i| {
            TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("idle connection {i}: {e}"))
        })
        .collect();
    // The server holds them all (the stats connection is one more)...
    common::wait_until(Duration::from_secs(10), "1000 idle connections accepted", || {
        stat(&stats(port), "connections_open") > 1000
    });
    // ...and serves ten busy clients as if they were not there.
    let mut spec = Spec::new(server.addr(), vec!["/x.html".into()]);
    spec.connections = 10;
    spec.in_flight = 1;
    spec.requests_per_conn = Some(200);
    spec.duration = None;
    spec.timeout = Duration::from_secs(20);
    let report = run(&spec).expect("load set-up");
    assert_eq!(report.errors, 0, "{report}");
    assert_eq!(report.requests, 2000, "{report}");
    let after = stats(port);
    assert!(stat(&after, "connections_open") > 1000, "idle connections were dropped:\n{after}");
    drop(idle);
    server.stop();
}
variant_tests!(a_thousand_idle_connections_do_not_stop_ten_active_ones, 40);

fn an_idle_keep_alive_connection_is_closed_after_the_timeout(variant: &str) {
    let root = root();
    let server = Server::start(variant, root.path(), &["--idle-timeout", "1", "--url-cmd"]);
    let mut c = Client::connect(server.port());
    c.send(get_request("/x.html"));
    let r = c.response();
    assert_eq!((r.status, r.closes()), (200, false), "a keep-alive response");
    // Within the client's read timeout (10 s), the server closes it without a word.
    let rest = c.read_to_close().unwrap_or_else(|e| panic!("the idle connection: {e}"));
    assert!(rest.is_empty(), "the server sent {:?} on an idle connection", lossy(&rest));
    assert!(stat(&stats(server.port()), "connections_timed_out") >= 1);
    server.stop();
}
variant_tests!(an_idle_keep_alive_connection_is_closed_after_the_timeout, 20);
