//! Ctrl-C (SIGINT) and SIGTERM stop the server cleanly, on every variant, whatever its
//! connections are doing: idle after a request, in the middle of a request head, or with
//! a large response the client is not reading. It exits successfully, prints its
//! summary, and every connection sees the end of its stream.

mod common;

use common::{get_request, random_bytes, Client, Server, TempDir};

const PAGE: &[u8] = b"<p>x</p>\n";

fn stops_cleanly_with_connections_open(variant: &str, signal: libc::c_int) {
    let root = TempDir::new("shutdown");
    root.write("x.html", PAGE);
    root.write("big.bin", &random_bytes(4 << 20, 7));
    let server = Server::start(variant, root.path(), &[]);
    // 50 keep-alive connections, each after one request.
    let mut idle: Vec<Client> = (0..50)
        .map(|i| {
            let mut c = Client::connect(server.port());
            c.send(get_request("/x.html"));
            let r = c.response();
            assert_eq!((r.status, &r.body[..], r.closes()), (200, PAGE, false), "connection {i}");
            c
        })
        .collect();
    // Five in the middle of a request head.
    let mut partial: Vec<Client> = (0..5)
        .map(|_| {
            let mut c = Client::connect(server.port());
            c.send("GET /x.html HTTP/1.1\r\nHost: kweb-te");
            c
        })
        .collect();
    // Three with 4 MiB responses they do not read: the server has output pending.
    let mut stalled: Vec<Client> = (0..3)
        .map(|_| {
            let mut c = Client::connect(server.port());
            c.send(get_request("/big.bin"));
            c
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(100)); // let the server take them all in
    let out = server.stop_with(signal);
    assert!(out.contains("requests on"), "{out}");
    for (i, c) in idle.iter_mut().enumerate() {
        let rest = c.read_to_close().unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
        assert!(rest.is_empty(), "idle connection {i} got {} bytes at the stop", rest.len());
    }
    for (i, c) in partial.iter_mut().enumerate() {
        c.read_to_close().unwrap_or_else(|e| panic!("connection {i} with a partial head: {e}"));
    }
    for (i, c) in stalled.iter_mut().enumerate() {
        // What was sent before the stop may be cut short: a reset is fine, a hang is not.
        if let Err(e) = c.read_to_close() {
            assert!(!e.contains("no progress"), "connection {i} with a pending response: {e}");
        }
    }
}

fn ctrl_c_stops_cleanly_with_connections_open(variant: &str) {
    stops_cleanly_with_connections_open(variant, libc::SIGINT);
}
variant_tests!(ctrl_c_stops_cleanly_with_connections_open, 30);

fn sigterm_stops_cleanly_with_connections_open(variant: &str) {
    stops_cleanly_with_connections_open(variant, libc::SIGTERM);
}
variant_tests!(sigterm_stops_cleanly_with_connections_open, 30);
