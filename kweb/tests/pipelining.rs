//! Pipelined requests are answered strictly in order with whole bodies, on every variant:
//! files from empty to 1 MiB (either side of the in-memory cache's 64 KiB, so both the
//! `sendmsg` and the `sendfile` paths), GET and HEAD mixed, and under `kweb::load`.

mod common;

use common::{get_request, head_request, random_bytes, Client, Server, TempDir};
use kweb::load::{run, Spec};

/// The sizes served: empty, one byte, small, the cache's limit and one byte past it, large.
const SIZES: [usize; 6] = [0, 1, 1024, 64 * 1024, 64 * 1024 + 1, 1024 * 1024];

/// A root with one file of random content per size: `(url, content)` in order.
fn files(root: &TempDir) -> Vec<(String, Vec<u8>)> {
    SIZES
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let name = format!("f{n}.bin");
            let content = random_bytes(n, i as u64 + 1);
            root.write(&name, &content);
            (format!("/{name}"), content)
        })
        .collect()
}

fn pipelined_gets_come_back_in_order_with_whole_bodies(variant: &str) {
    let root = TempDir::new("pipe");
    let files = files(&root);
    let server = Server::start(variant, root.path(), &[]);
    let mut c = Client::connect(server.port());
    let requests: String = (0..100).map(|i| get_request(&files[i % files.len()].0)).collect();
    c.send(requests); // all 100 in one write
    for i in 0..100 {
        let (url, content) = &files[i % files.len()];
        let r = c.response();
        assert_eq!(r.status, 200, "response {i} ({url})");
        assert_eq!(r.content_length(), Some(content.len() as u64), "response {i} ({url})");
        assert!(r.body == *content, "response {i} ({url}): the body differs from the file");
        assert!(!r.closes(), "response {i} ({url}) closes a keep-alive connection");
    }
    server.stop();
}
variant_tests!(pipelined_gets_come_back_in_order_with_whole_bodies, 40);

fn pipelined_heads_mixed_with_gets_carry_no_body(variant: &str) {
    let root = TempDir::new("pipe-head");
    let files = files(&root);
    let server = Server::start(variant, root.path(), &[]);
    let mut c = Client::connect(server.port());
    // Every third request is a HEAD: its response must have the file's length, and the
    // next response must start right after its head.
    let is_head = |i: usize| i % 3 == 1;
    let requests: String = (0..60)
        .map(|i| {
            let url = &files[i % files.len()].0;
            if is_head(i) {
                head_request(url)
            } else {
                get_request(url)
            }
        })
        .collect();
    c.send(requests);
    for i in 0..60 {
        let (url, content) = &files[i % files.len()];
        let r = if is_head(i) { c.head_response() } else { c.response() };
        assert_eq!(r.status, 200, "response {i} ({url})");
        assert_eq!(r.content_length(), Some(content.len() as u64), "response {i} ({url})");
        if !is_head(i) {
            assert!(r.body == *content, "response {i} ({url}): the body differs from the file");
        }
    }
    // Nothing may follow the last response (a HEAD body would show up here).
    c.send(get_request(&files[0].0));
    let r = c.response();
    assert_eq!((r.status, r.body.len()), (200, 0), "the request after the pipeline");
    server.stop();
}
variant_tests!(pipelined_heads_mixed_with_gets_carry_no_body, 40);

fn load_generator_sees_no_errors_with_deep_pipelines(variant: &str) {
    let root = TempDir::new("pipe-load");
    let files = files(&root);
    let server = Server::start(variant, root.path(), &[]);
    let mut spec = Spec::new(server.addr(), files.iter().map(|(u, _)| u.clone()).collect());
    spec.connections = 4;
    spec.in_flight = 100;
    spec.requests_per_conn = Some(300);
    spec.duration = None;
    spec.timeout = std::time::Duration::from_secs(20);
    let report = run(&spec).expect("load set-up");
    assert_eq!(report.errors, 0, "{report}");
    assert_eq!(report.requests, 1200, "{report}");
    server.stop();
}
variant_tests!(load_generator_sees_no_errors_with_deep_pipelines, 45);
