//! `url_cmd`: controlling a running server over HTTP, after the thesis' kweb.
//!
//! Off unless `--url-cmd`; then `GET /_kweb/<command>` from a peer on the loopback
//! network runs a command, and any other peer gets 403 (the original answered anyone,
//! `terminate` included). Off, the prefix is an ordinary path.
//!
//! | command | does | reply |
//! |---|---|---|
//! | `stats` | nothing | requests, connections, per-vcore request counts; with `--work`, its calibration and what timed handlers did |
//! | `request_vcores?n=N` | serve on N vcores (1 to the process's) | the new count; 501 on Linux threads |
//! | `yield_vcore` | serve on one vcore fewer (never below 1) | the new count; 501 on Linux threads |
//! | `stop` | stops the server, as Ctrl-C | `stopping` |
//!
//! Unknown commands are 404; bad or missing arguments 400.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::server::Server;
use crate::status::Status;

/// The path prefix of commands.
pub const PREFIX: &[u8] = b"/_kweb/";

/// Runs `cmd` (the path after [`PREFIX`]) with `query` for a peer; the reply text.
pub fn run(srv: &Server, cmd: &[u8], query: &[u8], loopback: bool) -> Result<String, Status> {
    if !loopback {
        return Err(Status::Forbidden);
    }
    match cmd {
        b"stats" => Ok(stats(srv)),
        b"request_vcores" => srv.rt.request_vcores(count_arg(query)?),
        b"yield_vcore" if query.is_empty() => srv.rt.yield_vcore(),
        b"stop" if query.is_empty() => {
            srv.stop();
            Ok("stopping\n".into())
        }
        b"yield_vcore" | b"stop" => Err(Status::BadRequest),
        _ => Err(Status::NotFound),
    }
}

/// The `n=N` argument: exactly one, a number from 1 to 1024.
fn count_arg(query: &[u8]) -> Result<usize, Status> {
    let v = query.strip_prefix(b"n=").ok_or(Status::BadRequest)?;
    if v.is_empty() || v.len() > 4 || !v.iter().all(u8::is_ascii_digit) {
        return Err(Status::BadRequest);
    }
    let n: usize =
        std::str::from_utf8(v).map_err(|_| Status::BadRequest)?.parse().map_err(|_| Status::BadRequest)?;
    if !(1..=1024).contains(&n) {
        return Err(Status::BadRequest);
    }
    Ok(n)
}

fn stats(srv: &Server) -> String {
    let s = &srv.stats;
    let mut t = String::new();
    let _ = writeln!(t, "variant {}", srv.rt.name());
    let _ = writeln!(t, "requests {}", s.requests());
    let _ = writeln!(t, "connections_open {}", srv.conns.open());
    let _ = writeln!(t, "connections_accepted {}", s.accepted.load(Ordering::Relaxed));
    let _ = writeln!(t, "connections_timed_out {}", s.timed_out.load(Ordering::Relaxed));
    let _ = writeln!(t, "accept_backoffs {}", s.accept_backoffs.load(Ordering::Relaxed));
    if let Some(w) = srv.work {
        let h = &srv.handlers;
        let _ = writeln!(t, "work_steps_per_us {:.1}", w.steps_per_us());
        let _ = writeln!(t, "handler_timeouts {}", h.timeouts.load(Ordering::Relaxed));
        let _ = writeln!(t, "handler_cancelled {}", h.cancelled.load(Ordering::Relaxed));
        let _ = writeln!(t, "handler_panicked {}", h.panicked.load(Ordering::Relaxed));
    }
    for (v, n) in s.per_vcore.iter().enumerate() {
        let n = n.load(Ordering::Relaxed);
        if n > 0 {
            let _ = writeln!(t, "vcore{v}_requests {n}");
        }
    }
    t
}

/// Whether a peer address is on the loopback network: 127.0.0.0/8, `::1`, or an
/// IPv4-mapped 127.0.0.0/8.
pub fn is_loopback(ss: &libc::sockaddr_storage) -> bool {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in, which fits in the storage.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)).is_loopback()
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it is a sockaddr_in6, which fits in the storage.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(ip: [u8; 4]) -> libc::sockaddr_storage {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut ss: libc::sockaddr_storage = unsafe { core::mem::zeroed() };
        // SAFETY: a sockaddr_in fits in the storage.
        let a = unsafe { &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
        a.sin_family = libc::AF_INET as libc::sa_family_t;
        a.sin_addr.s_addr = u32::from_be_bytes(ip).to_be();
        ss
    }

    fn v6(ip: std::net::Ipv6Addr) -> libc::sockaddr_storage {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut ss: libc::sockaddr_storage = unsafe { core::mem::zeroed() };
        // SAFETY: a sockaddr_in6 fits in the storage.
        let a = unsafe { &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
        a.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        a.sin6_addr.s6_addr = ip.octets();
        ss
    }

    #[test]
    fn only_loopback_peers_count_as_local() {
        assert!(is_loopback(&v4([127, 0, 0, 1])));
        assert!(is_loopback(&v4([127, 9, 8, 7])));
        assert!(!is_loopback(&v4([10, 0, 0, 1])));
        assert!(!is_loopback(&v4([0, 0, 0, 0])));
        assert!(!is_loopback(&v4([128, 0, 0, 1])));
        assert!(is_loopback(&v6(std::net::Ipv6Addr::LOCALHOST)));
        assert!(is_loopback(&v6(std::net::Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped())));
        assert!(!is_loopback(&v6(std::net::Ipv4Addr::new(192, 168, 1, 1).to_ipv6_mapped())));
        assert!(!is_loopback(&v6("2001:db8::1".parse().unwrap())));
        // SAFETY: all-zero is a valid sockaddr_storage (family AF_UNSPEC).
        assert!(!is_loopback(&unsafe { core::mem::zeroed() }));
    }

    #[test]
    fn counts_must_be_small_positive_numbers() {
        assert_eq!(count_arg(b"n=2"), Ok(2));
        for bad in [&b""[..], b"n=", b"n=0", b"n=-1", b"n=99999", b"n=1&x=2", b"m=1", b"n=1 "] {
            assert_eq!(count_arg(bad), Err(Status::BadRequest), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
