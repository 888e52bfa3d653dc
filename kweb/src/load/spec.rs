//! [`Spec`]: what a run does, and the checks that refuse a bad one before any socket is
//! opened.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The most requests a connection may keep outstanding: the pre-rendered request bytes
/// grow with it (about 40 bytes a request), and no server pipelines deeper usefully.
pub(crate) const MAX_IN_FLIGHT: usize = 1 << 16;

/// What a load run does. Build one with [`Spec::new`] and change the fields you need.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The server. Must be a loopback address (127.0.0.0/8 or ::1): the generator is for
    /// measuring a server on this machine, never for loading someone else's.
    pub addr: SocketAddr,
    /// Connections that carry the load (at least 1).
    pub connections: usize,
    /// Requests each connection keeps outstanding: its pipelining depth (at least 1).
    pub in_flight: usize,
    /// Each connection stops after this many responses; `None`: until `duration` ends.
    pub requests_per_conn: Option<u64>,
    /// Stop sending after this long, then wait for the outstanding responses. At least
    /// one of `requests_per_conn` and `duration` must be `Some`.
    pub duration: Option<Duration>,
    /// Responses completed in the first `warmup` of the load are checked but not counted
    /// in the figures (zero: none).
    pub warmup: Duration,
    /// Request paths, each starting with `/`. Connection `i` sends them in turn, starting
    /// at index `i % urls.len()`.
    pub urls: Vec<String>,
    /// Send `HEAD` instead of `GET`.
    pub head: bool,
    /// Extra connections opened before the load starts and held open, sending nothing,
    /// until the end.
    pub idle_connections: usize,
    /// Load threads (at least 1), each with its own epoll; the connections are split
    /// evenly between them (so no more threads are started than there are connections).
    pub threads: usize,
    /// If not empty, load thread `k` pins itself to CPU `cpus[k % cpus.len()]`.
    pub cpus: Vec<usize>,
    /// Hard bound on the run: a request outstanding this long, or a load phase longer
    /// than `duration + timeout` (just `timeout` when `duration` is `None`), stops the
    /// run and is reported as errors. It also bounds each probe and each connect.
    pub timeout: Duration,
}

impl Spec {
    /// A spec for `urls` on `addr` with the defaults: 100 connections, 1 request in
    /// flight each, for 5 s, no warm-up, `GET`, no idle connections, 1 load thread, no
    /// pinning, a 30 s timeout.
    pub fn new(addr: SocketAddr, urls: Vec<String>) -> Spec {
        Spec {
            addr,
            connections: 100,
            in_flight: 1,
            requests_per_conn: None,
            duration: Some(Duration::from_secs(5)),
            warmup: Duration::ZERO,
            urls,
            head: false,
            idle_connections: 0,
            threads: 1,
            cpus: Vec::new(),
            timeout: Duration::from_secs(30),
        }
    }

    /// Refuses a spec that cannot be run, with a message that says why.
    pub(crate) fn validate(&self) -> Result<(), String> {
        check_target(self.addr)?;
        if self.connections == 0 {
            return Err("connections must be at least 1".into());
        }
        if self.in_flight == 0 || self.in_flight > MAX_IN_FLIGHT {
            return Err(format!("in_flight must be between 1 and {MAX_IN_FLIGHT}"));
        }
        if self.threads == 0 {
            return Err("threads must be at least 1".into());
        }
        match (self.requests_per_conn, self.duration) {
            (None, None) => return Err("set requests_per_conn, duration or both: the run must end".into()),
            (Some(0), _) => return Err("requests_per_conn must be at least 1".into()),
            (_, Some(d)) if d.is_zero() => return Err("duration must be more than zero".into()),
            _ => {}
        }
        if self.duration.is_some_and(|d| self.warmup >= d) {
            return Err("warmup must be shorter than duration: nothing would be counted".into());
        }
        if self.timeout.is_zero() {
            return Err("timeout must be more than zero".into());
        }
        if self.urls.is_empty() {
            return Err("give at least one URL path".into());
        }
        self.urls.iter().try_for_each(|url| check_path(url))
    }
}

/// Refuses a target that is not a loopback address (checked before any socket is
/// opened), or port 0.
pub(crate) fn check_target(addr: SocketAddr) -> Result<(), String> {
    if !is_loopback(addr.ip()) {
        return Err(format!(
            "refusing to load {addr}: kweb-load only targets loopback addresses (127.0.0.0/8 or ::1)"
        ));
    }
    if addr.port() == 0 {
        return Err("the target port must not be 0".into());
    }
    Ok(())
}

/// Refuses a URL path that does not start with `/` or that holds a space or a control
/// character (it would break the request line).
pub(crate) fn check_path(url: &str) -> Result<(), String> {
    if !url.starts_with('/') || url.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "bad URL path {url:?}: it must start with '/' and hold no spaces or control characters"
        ));
    }
    Ok(())
}

/// 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. `0.0.0.0` and `::` are refused: connecting
/// to them reaches this host, but they say "any address", not "this machine only".
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}
