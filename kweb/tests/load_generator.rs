//! The load generator against a small HTTP server inside the test: counts and order come
//! out right, a misbehaving server is reported (and the run still ends), a non-loopback
//! target is refused, a silent server cannot hang a run.
//!
//! Each test runs in its own child process under a watchdog (`parlib_testkit::isolated!`)
//! so that a hang fails the test with a message instead of stalling CI. All traffic is to
//! 127.0.0.1.

#[path = "common/stub.rs"]
mod stub;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use kweb::load::{run, Spec};
use stub::StubServer;

/// Watchdog bound of each test: far above what any of them needs (well under 2 s).
const WATCHDOG: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// The test server
// ---------------------------------------------------------------------------------------

/// What the test server does wrong, on the first load connection (or, for `Silent`, on
/// every connection after the probes and idle ones).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum Fault {
    #[default]
    None,
    /// Sends the responses to requests `at` and `at + 1` in swapped order.
    SwapPair { at: usize },
    /// Answers request `at` with status 500 (body of the right length).
    WrongStatus { at: usize },
    /// Answers request `at` without a `Content-Length`.
    NoContentLength { at: usize },
    /// Never answers anything.
    Silent,
}

/// How the test server behaves.
#[derive(Clone, Copy, Debug, Default)]
struct Behaviour {
    /// Connections accepted before the first load connection (probes, then idle ones):
    /// always served correctly.
    before_load: usize,
    fault: Fault,
    /// Sends `Connection: close` on the n-th response of every connection, then closes.
    close_after: Option<usize>,
    /// Closes a connection that has sent no request for this long.
    close_idle_after: Option<Duration>,
}

/// A stub HTTP/1.1 server that answers pipelined requests: `GET /N` gets a body of N
/// bytes (status 200); any other path gets 404 with a 9-byte body.
fn start(behaviour: Behaviour) -> StubServer {
    StubServer::start(move |s, id| serve(s, id, behaviour))
}

/// The body length the server gives `path`, and its status.
fn resource(path: &str) -> (u16, usize) {
    let path = path.split('?').next().unwrap_or(path);
    match path.strip_prefix('/').and_then(|n| n.parse().ok()) {
        Some(n) => (200, n),
        None => (404, 9),
    }
}

fn response_head(status: u16, len: Option<usize>, close: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    let mut h = format!("HTTP/1.1 {status} {reason}\r\nServer: test\r\n");
    if let Some(n) = len {
        h += &format!("Content-Length: {n}\r\n");
    }
    if close {
        h += "Connection: close\r\n";
    }
    h += "\r\n";
    h.into_bytes()
}

/// Serves connection number `id` until the client closes it.
fn serve(mut s: TcpStream, id: usize, b: Behaviour) {
    let faulty = id >= b.before_load && (b.fault == Fault::Silent || id == b.before_load);
    let fault = if faulty { b.fault } else { Fault::None };
    let mut inbuf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut served = 0usize;
    let mut held: Option<Vec<u8>> = None;
    if let Some(idle) = b.close_idle_after {
        s.set_read_timeout(Some(idle)).unwrap();
    }
    loop {
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => return, // end of stream, or the idle timeout
            Ok(n) => n,
        };
        s.set_read_timeout(None).unwrap();
        if fault == Fault::Silent {
            continue;
        }
        inbuf.extend_from_slice(&chunk[..n]);
        let mut out = Vec::new();
        let mut closing = false;
        let mut start = 0;
        while let Some(end) = inbuf[start..].windows(4).position(|w| w == b"\r\n\r\n") {
            let req = &inbuf[start..start + end];
            start += end + 4;
            let line = String::from_utf8_lossy(req);
            let mut words = line.split(' ');
            let head_only = words.next() == Some("HEAD");
            let (mut status, len) = resource(words.next().unwrap_or("/"));
            let i = served;
            served += 1;
            if fault == (Fault::WrongStatus { at: i }) {
                status = 500;
            }
            let no_length = fault == (Fault::NoContentLength { at: i });
            let close = b.close_after == Some(served);
            let mut resp = response_head(status, (!no_length).then_some(len), close);
            if !head_only {
                resp.resize(resp.len() + len, b'x');
            }
            match fault {
                Fault::SwapPair { at } if i == at => held = Some(resp),
                Fault::SwapPair { at } if i == at + 1 => {
                    out.extend_from_slice(&resp);
                    out.extend_from_slice(&held.take().unwrap());
                }
                _ => out.extend_from_slice(&resp),
            }
            if close {
                closing = true;
                break;
            }
        }
        inbuf.drain(..start);
        if s.write_all(&out).is_err() || closing {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn urls(paths: &[&str]) -> Vec<String> {
    paths.iter().map(|p| p.to_string()).collect()
}

/// A count-bound spec: `connections x requests` requests, short timeout.
fn counted(addr: SocketAddr, paths: &[&str], connections: usize, in_flight: usize, requests: u64) -> Spec {
    let mut spec = Spec::new(addr, urls(paths));
    spec.connections = connections;
    spec.in_flight = in_flight;
    spec.requests_per_conn = Some(requests);
    spec.duration = None;
    spec.timeout = Duration::from_secs(10);
    spec
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn every_request_is_counted_with_its_bytes() {
    parlib_testkit::isolated!(WATCHDOG, {
        let paths = ["/10", "/3000", "/100000", "/0", "/nope"];
        let server = start(Behaviour { before_load: paths.len() + 2, ..Default::default() });
        let mut spec = counted(server.addr, &paths, 8, 4, 500);
        spec.threads = 2;
        spec.idle_connections = 2;
        let r = run(&spec).expect("run");
        assert_eq!(r.errors, 0, "{r}");
        assert_eq!(r.requests, 8 * 500, "{r}");
        // Each connection sends the 5 URLs in turn, 100 times each.
        let per_round: usize = paths.iter().map(|p| resource(p).1).sum();
        assert_eq!(r.body_bytes, 8 * 100 * per_round as u64, "{r}");
        let heads: usize =
            paths.iter().map(|p| response_head(resource(p).0, Some(resource(p).1), false).len()).sum();
        assert_eq!(r.header_bytes, 8 * 100 * heads as u64, "{r}");
        assert_eq!(r.idle_closed, 0);
        assert!(r.rps > 0.0 && r.p50_us > 0.0 && r.p50_us <= r.p99_us && r.p99_us <= r.p999_us);
        assert!(r.p999_us <= r.max_us && r.cpu_ms > 0.0, "{r}");
        // 5 probes, 2 idle, 8 load connections: no reconnects.
        assert_eq!(server.connections_accepted(), 5 + 2 + 8);
    });
}

#[test]
fn head_requests_are_counted_without_bodies() {
    parlib_testkit::isolated!(WATCHDOG, {
        let server = start(Behaviour { before_load: 2, ..Default::default() });
        let mut spec = counted(server.addr, &["/500", "/7"], 3, 2, 100);
        spec.head = true;
        let r = run(&spec).expect("run");
        assert_eq!((r.requests, r.errors, r.body_bytes), (300, 0, 0), "{r}");
    });
}

#[test]
fn a_duration_bound_run_stops_on_time_and_skips_the_warmup() {
    parlib_testkit::isolated!(WATCHDOG, {
        let server = start(Behaviour { before_load: 1, ..Default::default() });
        let mut spec = Spec::new(server.addr, urls(&["/64"]));
        spec.connections = 4;
        spec.in_flight = 2;
        spec.duration = Some(Duration::from_millis(300));
        spec.warmup = Duration::from_millis(100);
        let start = Instant::now();
        let r = run(&spec).expect("run");
        assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
        assert_eq!(r.errors, 0, "{r}");
        assert!(r.requests > 0, "{r}");
        // Measured from the end of the warm-up to the last counted response.
        assert!(r.elapsed <= Duration::from_millis(290), "{r}");
    });
}

#[test]
fn batches_larger_than_the_socket_buffer_are_sent_in_pieces() {
    parlib_testkit::isolated!(WATCHDOG, {
        // 16384 requests of about 1 KiB in flight: the first batch alone is 16 MiB, more
        // than a socket takes at once (its send buffer tops out at 4 MiB by default), so
        // its tail waits for EPOLLOUT.
        let long = format!("/20?{}", "q".repeat(1000));
        let paths = [long.as_str(), "/7"];
        let server = start(Behaviour { before_load: 2, ..Default::default() });
        let r = run(&counted(server.addr, &paths, 2, 16384, 16384 + 2)).expect("run");
        assert_eq!((r.requests, r.errors), (2 * (16384 + 2), 0), "{r}");
        assert_eq!(r.body_bytes, 2 * (8193 * 20 + 8193 * 7), "{r}");
    });
}

#[test]
fn responses_out_of_order_are_counted_as_errors() {
    parlib_testkit::isolated!(WATCHDOG, {
        let paths = ["/10", "/2000"];
        let server = start(Behaviour {
            before_load: paths.len(),
            fault: Fault::SwapPair { at: 1 },
            ..Default::default()
        });
        let r = run(&counted(server.addr, &paths, 2, 4, 50)).expect("run");
        assert_eq!(r.errors, 2, "{r}");
        assert_eq!(r.requests, 2 * 50 - 2, "{r}");
        assert!(r.error_samples.iter().any(|s| s.contains("wrong order")), "{r}");
    });
}

#[test]
fn a_wrong_status_is_counted_as_an_error() {
    parlib_testkit::isolated!(WATCHDOG, {
        let server =
            start(Behaviour { before_load: 1, fault: Fault::WrongStatus { at: 3 }, ..Default::default() });
        let r = run(&counted(server.addr, &["/100"], 2, 2, 20)).expect("run");
        assert_eq!((r.requests, r.errors), (39, 1), "{r}");
        assert!(r.error_samples[0].contains("status 500"), "{r}");
    });
}

#[test]
fn a_response_without_content_length_is_a_framing_error_and_the_connection_is_reopened() {
    parlib_testkit::isolated!(WATCHDOG, {
        let server = start(Behaviour {
            before_load: 1,
            fault: Fault::NoContentLength { at: 5 },
            ..Default::default()
        });
        // One request in flight: exactly the bad response's request is lost.
        let r = run(&counted(server.addr, &["/100"], 2, 1, 20)).expect("run");
        assert_eq!((r.requests, r.errors), (39, 1), "{r}");
        assert!(r.error_samples[0].contains("Content-Length"), "{r}");
        assert_eq!(server.connections_accepted(), 1 + 2 + 1, "one reconnect");
    });
}

#[test]
fn connection_close_responses_are_retried_not_errors() {
    parlib_testkit::isolated!(WATCHDOG, {
        let paths = ["/10", "/300"];
        let server = start(Behaviour { close_after: Some(7), ..Default::default() });
        let r = run(&counted(server.addr, &paths, 3, 4, 60)).expect("run");
        assert_eq!((r.requests, r.errors), (180, 0), "{r}");
        assert!(server.connections_accepted() > 2 + 3 * 8, "the server closed every 7 responses");
    });
}

#[test]
fn a_server_that_stops_answering_ends_the_run_within_the_timeout() {
    parlib_testkit::isolated!(WATCHDOG, {
        let server = start(Behaviour { before_load: 1, fault: Fault::Silent, ..Default::default() });
        let mut spec = counted(server.addr, &["/10"], 4, 3, 100);
        spec.threads = 2;
        spec.timeout = Duration::from_millis(300);
        let start = Instant::now();
        let r = run(&spec).expect("run");
        assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
        assert_eq!(r.requests, 0, "{r}");
        assert_eq!(r.errors, 4 * 3, "every outstanding request fails: {r}");
        assert!(r.error_samples.iter().any(|s| s.contains("timeout")), "{r}");
    });
}

#[test]
fn a_server_that_never_answers_fails_the_probe_within_the_timeout() {
    parlib_testkit::isolated!(WATCHDOG, {
        let server = start(Behaviour { fault: Fault::Silent, ..Default::default() });
        let mut spec = Spec::new(server.addr, urls(&["/10"]));
        spec.timeout = Duration::from_millis(300);
        let start = Instant::now();
        let e = run(&spec).expect_err("a probe without an answer is a set-up failure");
        assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
        assert!(e.contains("probe of /10") && e.contains("timeout"), "{e}");
    });
}

#[test]
fn idle_connections_closed_by_the_server_are_reported() {
    parlib_testkit::isolated!(WATCHDOG, {
        let server =
            start(Behaviour { close_idle_after: Some(Duration::from_millis(200)), ..Default::default() });
        let mut spec = Spec::new(server.addr, urls(&["/10"]));
        spec.connections = 2;
        spec.idle_connections = 3;
        spec.duration = Some(Duration::from_millis(500));
        let r = run(&spec).expect("run");
        assert_eq!((r.errors, r.idle_closed), (0, 3), "{r}");
    });
}

#[test]
fn non_loopback_targets_are_refused_without_connecting() {
    parlib_testkit::isolated!(WATCHDOG, {
        for addr in ["10.0.0.1:80", "0.0.0.0:8080", "192.168.1.1:80", "[::]:80", "[2001:db8::1]:80"] {
            let start = Instant::now();
            let e = run(&Spec::new(addr.parse().unwrap(), urls(&["/"]))).expect_err(addr);
            assert!(e.contains("loopback"), "{addr}: {e}");
            assert!(start.elapsed() < Duration::from_millis(100), "{addr} took {:?}", start.elapsed());
        }
    });
}

#[test]
fn impossible_specs_are_refused() {
    parlib_testkit::isolated!(WATCHDOG, {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut no_end = Spec::new(addr, urls(&["/"]));
        no_end.duration = None;
        let mut no_conns = Spec::new(addr, urls(&["/"]));
        no_conns.connections = 0;
        let bad_path = Spec::new(addr, urls(&["no-slash"]));
        let no_urls = Spec::new(addr, Vec::new());
        let mut all_warmup = Spec::new(addr, urls(&["/"]));
        all_warmup.warmup = Duration::from_secs(5);
        for spec in [no_end, no_conns, bad_path, no_urls, all_warmup] {
            assert!(run(&spec).is_err(), "{spec:?}");
        }
    });
}
