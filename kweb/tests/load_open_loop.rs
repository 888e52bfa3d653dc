//! The open-loop load generator (`kweb::load::open`) against a small HTTP server inside
//! the test: the mix is drawn by weight, a seed fixes the schedule, latency counts from
//! the scheduled arrival when the server is slow, a wrong body is an error, a closing
//! server costs no request, a silent server cannot hang a run, a bad spec is refused.
//!
//! The counts do not depend on the machine's speed: with a fixed seed, the schedule (how
//! many requests, of which class, when) is the same on every run. Latency bounds are
//! lower bounds that the server's own sleeps guarantee. Each test runs in its own child
//! process under a watchdog (`parlib_testkit::isolated!`); all traffic is to 127.0.0.1.

#[path = "common/stub.rs"]
mod stub;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kweb::load::open::{run, Class, Spec};
use stub::StubServer;

/// Watchdog bound of each test: far above what any of them needs (a few seconds).
const WATCHDOG: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// The test server
// ---------------------------------------------------------------------------------------

/// How the test server behaves. Requests are numbered in the order the server reads
/// them, over all connections, from 0 (the probes come first).
#[derive(Clone, Copy, Debug, Default)]
struct Behaviour {
    /// Serves one request at a time over all connections, each taking this long: a
    /// server on one core with this service time.
    service: Option<Duration>,
    /// Flips the last body byte of this request's answer.
    corrupt: Option<usize>,
    /// Answers no request from this one on.
    silent_from: Option<usize>,
    /// Sends `Connection: close` on every n-th answer of a connection, then closes it.
    close_every: Option<usize>,
}

/// What the connections of one server share.
struct Shared {
    behaviour: Behaviour,
    /// Requests read so far.
    requests: AtomicUsize,
    /// Held while serving, when the server serves one request at a time.
    one_at_a_time: Mutex<()>,
}

/// A stub HTTP/1.1 server (`common/stub.rs`): `GET /N` gets a body of N bytes of a fixed
/// pattern (status 200), anything else 404 with a 9-byte body, served with `behaviour`.
fn start(behaviour: Behaviour) -> StubServer {
    let shared = Arc::new(Shared { behaviour, requests: AtomicUsize::new(0), one_at_a_time: Mutex::new(()) });
    StubServer::start(move |s, _| serve(s, &shared))
}

/// The body of `/N`: N bytes of a pattern that is not constant, so a flipped byte shows.
fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// The answer to request `path`, with `Connection: close` if `close`.
fn answer(path: &str, close: bool) -> Vec<u8> {
    let (status, body) = match path.strip_prefix('/').and_then(|n| n.parse().ok()) {
        Some(n) => ("200 OK", body(n)),
        None => ("404 Not Found", b"not found".to_vec()),
    };
    let close = if close { "Connection: close\r\n" } else { "" };
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n{close}\r\n", body.len()).into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Serves one connection until the client closes it.
fn serve(mut s: TcpStream, shared: &Shared) {
    let b = shared.behaviour;
    let mut inbuf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut served = 0;
    loop {
        while let Some(end) = inbuf.windows(4).position(|w| w == b"\r\n\r\n") {
            let path = String::from_utf8_lossy(&inbuf[..end]).split(' ').nth(1).unwrap_or("/").to_owned();
            inbuf.drain(..end + 4);
            let k = shared.requests.fetch_add(1, Ordering::SeqCst);
            if b.silent_from.is_some_and(|from| k >= from) {
                continue;
            }
            served += 1;
            let close = b.close_every.is_some_and(|n| served % n == 0);
            let mut out = answer(&path, close);
            if b.corrupt == Some(k) {
                *out.last_mut().unwrap() ^= 1;
            }
            let guard = b.service.map(|d| {
                let g = shared.one_at_a_time.lock().unwrap();
                std::thread::sleep(d);
                g
            });
            let sent = s.write_all(&out);
            drop(guard);
            if sent.is_err() || close {
                return;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => inbuf.extend_from_slice(&chunk[..n]),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A spec of `rate` requests/s over `secs` for `classes` (path, weight), with a timeout
/// far above any answer's time and a fixed seed.
fn spec(addr: SocketAddr, rate: f64, secs: f64, classes: &[(&str, f64)]) -> Spec {
    let classes = classes.iter().map(|&(url, w)| Class::new(url, w)).collect();
    let mut spec = Spec::new(addr, rate, classes);
    spec.connections = 8;
    spec.duration = Duration::from_secs_f64(secs);
    spec.timeout = Duration::from_secs(10);
    spec.seed = 42;
    spec
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn the_mix_is_drawn_by_weight() {
    parlib_testkit::isolated!(WATCHDOG, {
        let server = start(Behaviour::default());
        let mut spec = spec(server.addr, 2000.0, 0.5, &[("/10", 3.0), ("/nope", 1.0)]);
        spec.threads = 2;
        let r = run(&spec).expect("run");
        assert_eq!(r.errors, 0, "a 404 like its probe's is a right answer: {r}");
        // About 1000 arrivals (Poisson: sd 32); each is the second class with p = 0.25
        // (binomial: sd 14 of 1000). Bounds of 5 sd.
        let n = r.requests as f64;
        assert!((n - 1000.0).abs() < 160.0, "{n} requests: {r}");
        assert_eq!(r.classes[0].requests + r.classes[1].requests, r.requests);
        let second = r.classes[1].requests as f64;
        let sd = (n * 0.25 * 0.75).sqrt();
        assert!((second - 0.25 * n).abs() < 5.0 * sd, "{second} of {n} for weight 1 of 4: {r}");
        let c = &r.classes[0];
        assert!(c.p50_us > 0.0 && c.p50_us <= c.p99_us && c.p99_us <= c.max_us, "{r}");
        // 1 probe per distinct URL, then the pool.
        assert_eq!(server.connections_accepted(), 2 + 8);
    });
}

#[test]
fn the_same_seed_schedules_the_same_requests_sleeping_or_busy_polling() {
    parlib_testkit::isolated!(WATCHDOG, {
        let server = start(Behaviour::default());
        let counts = |busy_poll| {
            let mut spec = spec(server.addr, 1000.0, 0.3, &[("/10", 1.0), ("/20", 1.0)]);
            spec.busy_poll = busy_poll;
            spec.warmup = Duration::from_millis(100);
            let r = run(&spec).expect("run");
            assert_eq!(r.errors, 0, "{r}");
            (r.classes[0].requests, r.classes[1].requests)
        };
        assert_eq!(counts(false), counts(true));
    });
}

#[test]
fn latency_counts_from_the_scheduled_arrival_when_the_server_is_slow() {
    parlib_testkit::isolated!(WATCHDOG, {
        // One request at a time, 20 ms each: 50 requests a second at most, offered 200.
        // Sent on 2 connections, a request waits for at most 2 x 20 ms once sent, but
        // about 50 arrive in 0.25 s and take 1 s to serve: the later ones are due long
        // before the server gets to them. Request j ends at least (j + 1) x 20 ms after
        // the start and was due at most 250 ms after it, so the later half waits more
        // than 250 ms from its arrival.
        let service = Duration::from_millis(20);
        let server = start(Behaviour { service: Some(service), ..Default::default() });
        let mut spec = spec(server.addr, 200.0, 0.25, &[("/10", 1.0)]);
        spec.connections = 2;
        let r = run(&spec).expect("run");
        assert_eq!(r.errors, 0, "{r}");
        let c = &r.classes[0];
        let service_us = service.as_micros() as f64;
        assert!(c.p50_us >= 5.0 * service_us, "from the send, p50 would be at most 2 services: {r}");
        assert!(c.max_us >= 10.0 * service_us, "{r}");
        assert!(r.queued > 0 && r.lag_p99_us >= 5.0 * service_us, "requests waited for a connection: {r}");
        // The server kept up with less than the offered rate.
        assert!(r.rps < 0.5 * r.offered_rps, "{r}");
    });
}

#[test]
fn a_wrong_body_is_an_error() {
    parlib_testkit::isolated!(WATCHDOG, {
        // 4096 bytes: the longest body compared byte for byte; its last byte flipped in
        // the answer to request 5 (request 0 is the probe).
        let server = start(Behaviour { corrupt: Some(5), ..Default::default() });
        let r = run(&spec(server.addr, 1000.0, 0.2, &[("/4096", 1.0)])).expect("run");
        assert_eq!((r.errors, r.classes[0].errors), (1, 1), "{r}");
        assert!(
            r.error_samples[0].contains("body differs") && r.error_samples[0].contains("byte 4095"),
            "{r}"
        );
    });
}

#[test]
fn closed_connections_are_reopened_without_losing_answered_requests() {
    parlib_testkit::isolated!(WATCHDOG, {
        let server = start(Behaviour { close_every: Some(3), ..Default::default() });
        let r = run(&spec(server.addr, 1000.0, 0.3, &[("/100", 1.0), ("/7", 1.0)])).expect("run");
        assert_eq!(r.errors, 0, "{r}");
        assert!(r.requests > 100, "{r}");
        assert!(server.connections_accepted() > 2 + 8 + 10, "the server closed every third answer");
    });
}

#[test]
fn a_server_that_stops_answering_ends_the_run_within_the_timeout() {
    parlib_testkit::isolated!(WATCHDOG, {
        let server = start(Behaviour { silent_from: Some(1), ..Default::default() });
        let mut spec = spec(server.addr, 200.0, 0.5, &[("/10", 1.0)]);
        spec.timeout = Duration::from_millis(300);
        let start = Instant::now();
        let r = run(&spec).expect("run");
        assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
        assert_eq!(r.requests, 0, "{r}");
        assert!(r.errors > 0 && r.errors == r.classes[0].errors, "every unanswered request fails: {r}");
        assert!(r.error_samples.iter().any(|s| s.contains("timeout")), "{r}");
    });
}

#[test]
fn bad_specs_are_refused_before_connecting() {
    parlib_testkit::isolated!(WATCHDOG, {
        // Nothing listens on port 9: a spec that got as far as connecting would fail
        // there instead, with another message.
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let good = || spec(addr, 100.0, 1.0, &[("/a", 1.0)]);
        let mut cases: Vec<(Spec, &str)> = Vec::new();
        for rate in [0.0, -5.0, f64::NAN, f64::INFINITY, 1e9] {
            cases.push((Spec { rate, ..good() }, "rate"));
        }
        for weight in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            cases.push((Spec { classes: vec![Class::new("/a", weight)], ..good() }, "weight"));
        }
        cases.push((Spec { classes: vec![], ..good() }, "class"));
        cases.push((Spec { classes: vec![Class::new("no-slash", 1.0)], ..good() }, "URL path"));
        cases.push((Spec { connections: 0, ..good() }, "connections"));
        cases.push((Spec { threads: 0, ..good() }, "threads"));
        cases.push((Spec { duration: Duration::ZERO, ..good() }, "duration"));
        cases.push((Spec { warmup: Duration::from_secs(1), ..good() }, "warmup"));
        cases.push((Spec { timeout: Duration::ZERO, ..good() }, "timeout"));
        cases.push((Spec { addr: "10.0.0.1:80".parse().unwrap(), ..good() }, "loopback"));
        cases.push((Spec { cpus: vec![100_000], ..good() }, "CPU"));
        for (spec, says) in cases {
            let e = run(&spec).expect_err(says);
            assert!(e.contains(says), "{says}: {e}");
        }
    });
}
