//! `url_cmd`: off unless `--url-cmd` (then `/_kweb/` is an ordinary path); on, loopback
//! peers get the commands, with 400 for bad arguments, 404 for unknown commands and 501
//! for what the variant cannot do; `stop` stops the server cleanly; a peer that is not on
//! the loopback network gets 403.

mod common;

use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};

use common::{get, get_request, head_request, lossy, Client, Server, TempDir};

fn root() -> TempDir {
    let root = TempDir::new("url-cmd");
    root.write("x.html", b"<p>x</p>\n");
    root.write("_kweb/readme.txt", b"an ordinary file\n");
    root
}

fn url_cmd_is_off_unless_asked_for(variant: &str) {
    let root = root();
    let server = Server::start(variant, root.path(), &[]);
    for path in ["/_kweb/stats", "/_kweb/stop", "/_kweb/request_vcores?n=1"] {
        let r = get(server.port(), path);
        assert_eq!(r.status, 404, "GET {path} without --url-cmd: {}", lossy(&r.body));
    }
    let r = get(server.port(), "/_kweb/readme.txt");
    assert_eq!((r.status, &r.body[..]), (200, &b"an ordinary file\n"[..]), "/_kweb/ is an ordinary path");
    server.stop(); // still running: `stop` did nothing
}
variant_tests!(url_cmd_is_off_unless_asked_for, 20);

fn url_cmd_answers_loopback_peers(variant: &str) {
    let root = root();
    let mut server = Server::start(variant, root.path(), &["--url-cmd"]);
    let port = server.port();

    let r = get(port, "/_kweb/stats");
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 200, "{text}");
    assert!(text.contains("requests "), "{text}");
    assert!(text.contains(&format!("variant {variant}\n")), "{text}");
    assert_eq!(r.header("Content-Type"), Some("text/plain"));

    let mut c = Client::connect(port);
    c.send(head_request("/_kweb/stats"));
    let h = c.head_response();
    assert_eq!(h.status, 200);
    c.send(get_request("/x.html"));
    assert_eq!(c.response().status, 200, "the request after a HEAD of stats");

    let bad = [
        "/_kweb/request_vcores",
        "/_kweb/request_vcores?n=0",
        "/_kweb/request_vcores?n=abc",
        "/_kweb/request_vcores?n=1&x=2",
        "/_kweb/request_vcores?x=1",
        "/_kweb/request_vcores?n=99999",
        "/_kweb/stop?now=1",
        "/_kweb/yield_vcore?n=1",
    ];
    for path in bad {
        let r = get(port, path);
        assert_eq!(r.status, 400, "GET {path}: {}", lossy(&r.body));
    }
    for path in ["/_kweb/frobnicate", "/_kweb/", "/_kweb/stats/more", "/_kweb/STATS"] {
        let r = get(port, path);
        assert_eq!(r.status, 404, "GET {path}: {}", lossy(&r.body));
    }

    let r = get(port, "/_kweb/request_vcores?n=1");
    let y = get(port, "/_kweb/yield_vcore");
    if variant == "linux" {
        assert_eq!(r.status, 501, "request_vcores on Linux threads: {}", lossy(&r.body));
        assert_eq!(y.status, 501, "yield_vcore on Linux threads: {}", lossy(&y.body));
    } else {
        assert_eq!(r.status, 200, "request_vcores?n=1: {}", lossy(&r.body));
        assert!(r.body.starts_with(b"vcores 1"), "request_vcores?n=1: {}", lossy(&r.body));
        assert_eq!(y.status, 400, "yield_vcore of the last vcore: {}", lossy(&y.body));
    }
    // Still serving after all that.
    assert_eq!(get(port, "/x.html").status, 200);

    let r = get(port, "/_kweb/stop");
    assert_eq!((r.status, &r.body[..]), (200, &b"stopping\n"[..]));
    server.expect_clean_exit("after url_cmd stop");
}
variant_tests!(url_cmd_answers_loopback_peers, 20);

/// An IPv4 address of this machine outside 127.0.0.0/8, if it has one.
fn non_loopback_ipv4() -> Option<Ipv4Addr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `list` is valid for a write; on success it must be freed with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return None;
    }
    let mut found = None;
    let mut p = list;
    while !p.is_null() {
        // SAFETY: `p` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*p };
        // SAFETY: a non-null `ifa_addr` points to a sockaddr whose family says its type.
        if !ifa.ifa_addr.is_null() && i32::from(unsafe { (*ifa.ifa_addr).sa_family }) == libc::AF_INET {
            // SAFETY: the family is AF_INET, so it is a sockaddr_in.
            let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            if !ip.is_loopback() && !ip.is_unspecified() {
                found = Some(ip);
                break;
            }
        }
        p = ifa.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    found
}

/// A connection to 127.0.0.1:`port` whose own end is `local` (the traffic stays on this
/// machine; the server sees a peer outside the loopback network).
fn connect_from(local: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let sin = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let (me, server) = (sin(local, 0), sin(Ipv4Addr::LOCALHOST, port));
    // SAFETY: both addresses are valid sockaddr_in of `len` bytes for the calls.
    unsafe {
        if libc::bind(fd, (&me as *const libc::sockaddr_in).cast(), len) != 0
            || libc::connect(fd, (&server as *const libc::sockaddr_in).cast(), len) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(TcpStream::from(sock))
}

fn url_cmd_refuses_peers_off_the_loopback_network(variant: &str) {
    let Some(ip) = non_loopback_ipv4() else {
        eprintln!("note: skipped: this machine has no IPv4 address outside 127.0.0.0/8");
        return;
    };
    let root = root();
    let server = Server::start(variant, root.path(), &["--url-cmd"]);
    let stream = match connect_from(ip, server.port()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("note: skipped: cannot connect to 127.0.0.1 from {ip}: {e}");
            return;
        }
    };
    let mut c = Client::from_stream(stream);
    for path in ["/_kweb/stats", "/_kweb/stop", "/_kweb/request_vcores?n=1"] {
        c.send(get_request(path));
        let r = c.response();
        assert_eq!(r.status, 403, "GET {path} from {ip}: {}", lossy(&r.body));
    }
    // Files are for everyone.
    c.send(get_request("/x.html"));
    assert_eq!(c.response().status, 200, "GET /x.html from {ip}");
    // The same commands from 127.0.0.1 still work: the peer, not the path, was refused.
    assert_eq!(get(server.port(), "/_kweb/stats").status, 200);
    server.stop(); // `stop` from the other peer did nothing
}
variant_tests!(url_cmd_refuses_peers_off_the_loopback_network, 20);
