//! A server out of descriptors keeps serving the connections it has and takes the others
//! from the listen backlog as descriptors come free: it neither exits nor spins on
//! `accept` (`EMFILE`), and it counts the back-offs.
//!
//! The strict test also asks that no request be answered 500: the server stops accepting
//! while it still has descriptors left to open files with.

mod common;

use std::time::{Duration, Instant};

use common::{get_request, stat, stats, Client, Server, TempDir};

const PAGE: &[u8] = b"<p>limited</p>\n";
/// The server's `RLIMIT_NOFILE`, soft and hard: well below the clients.
const SERVER_FDS: libc::rlim_t = 64;
const CLIENTS: usize = 100;

/// 100 clients send a GET each at once to a server with 64 descriptors; `strict`: every
/// answer must be the file (200), else a 500 for a file the server could not open passes.
fn beyond_the_descriptor_limit(variant: &str, strict: bool) {
    let root = TempDir::new("fd-limit");
    root.write("x.html", PAGE);
    let mut server = Server::start_with_fd_limit(variant, root.path(), &["--url-cmd"], SERVER_FDS);
    let mut clients: Vec<Option<Client>> = (0..CLIENTS)
        .map(|_| {
            let mut c = Client::connect(server.port());
            c.send(get_request("/x.html"));
            Some(c)
        })
        .collect();
    let check = |i: usize, r: common::Response| {
        if strict || r.status != 500 {
            assert_eq!(r.status, 200, "client {i}: {}", common::lossy(&r.body));
            assert_eq!(r.body, PAGE, "client {i}");
        }
    };

    // 1. The server answers the connections it could accept; the clients keep them open,
    //    so it cannot accept the rest (it has fewer than 64 descriptors for them).
    let mut answered = [false; CLIENTS];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last_progress = Instant::now();
    loop {
        for (i, c) in clients.iter_mut().enumerate() {
            if !answered[i] {
                if let Some(r) = c.as_mut().expect("open").poll_response() {
                    check(i, r);
                    answered[i] = true;
                    last_progress = Instant::now();
                }
            }
        }
        let n = answered.iter().filter(|&&a| a).count();
        // Settled: answers have stopped coming for a while (this only ends the phase).
        if n > 0 && last_progress.elapsed() > Duration::from_millis(500) {
            break;
        }
        assert!(Instant::now() < deadline, "no connection answered within 10 s (answered: {n})");
        std::thread::sleep(Duration::from_millis(10));
    }
    let first = answered.iter().filter(|&&a| a).count();
    assert!(first < CLIENTS, "all {CLIENTS} answered at once: the descriptor limit did not apply");
    assert_eq!(server.exited(), None, "the server exited when it ran out of descriptors");

    // 2. Closing the answered connections frees descriptors; every other connection is
    //    then accepted and answered.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        for (i, slot) in clients.iter_mut().enumerate() {
            if answered[i] {
                *slot = None;
            } else if let Some(r) = slot.as_mut().expect("open").poll_response() {
                check(i, r);
                answered[i] = true;
            }
        }
        let n = answered.iter().filter(|&&a| a).count();
        if n == CLIENTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} of {CLIENTS} connections answered 15 s after descriptors came free ({first} at first)"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    clients.clear();

    assert_eq!(server.exited(), None, "the server exited");
    let s = stats(server.port());
    assert!(stat(&s, "accept_backoffs") >= 1, "no accept back-off counted:\n{s}");
    assert!(stat(&s, "connections_accepted") > CLIENTS as u64, "{s}");
    server.stop();
}
fn connections_beyond_the_descriptor_limit_wait_and_are_answered(variant: &str) {
    beyond_the_descriptor_limit(variant, false);
}
variant_tests!(connections_beyond_the_descriptor_limit_wait_and_are_answered, 45);

fn connections_at_the_descriptor_limit_are_served_not_refused_with_500(variant: &str) {
    beyond_the_descriptor_limit(variant, true);
}
variant_tests!(connections_at_the_descriptor_limit_are_served_not_refused_with_500, 45);
