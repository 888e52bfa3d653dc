//! Bad input gets a status, never a crash or a hang, on every variant: each kind of
//! malformed or refused request gets its status (and the server goes on serving), a
//! seeded fuzz of mutated and truncated requests gets well-formed responses or a clean
//! close, and request bodies are skipped exactly, so the requests behind them stay in
//! sync.

mod common;

use common::{get, get_request, lossy, Client, Server, TempDir};
use parlib_testkit::Rng;

const A: &[u8] = b"file a\n";
const B: &[u8] = b"file b, longer\n";
const C: &[u8] = b"c\n";

fn root() -> TempDir {
    let root = TempDir::new("bad-input");
    root.write("x.html", b"<p>x</p>\n");
    root.write("a.txt", A);
    root.write("b.txt", B);
    root.write("c.txt", C);
    root
}

/// A request head with `lines` between the request line and the empty line.
fn head(request_line: &str, lines: &[&str]) -> Vec<u8> {
    let mut h = format!("{request_line}\r\n");
    for l in lines {
        h += l;
        h += "\r\n";
    }
    h += "\r\n";
    h.into_bytes()
}

/// Each bad request, what it must get, and whether the connection stays open after it.
fn bad_requests() -> Vec<(&'static str, Vec<u8>, u16, bool)> {
    let host = "Host: kweb-test";
    let long_line = format!("GET /{} HTTP/1.1", "a".repeat(9 * 1024));
    let mut big_head = head("GET /x.html HTTP/1.1", &[host]);
    big_head.truncate(big_head.len() - 2);
    while big_head.len() < 20 * 1024 {
        big_head.extend_from_slice(b"X-Padding: 0123456789abcdef0123456789abcdef\r\n");
    }
    big_head.extend_from_slice(b"\r\n");
    vec![
        ("request line without spaces", b"GET/HTTP/1.1\r\n\r\n".to_vec(), 400, false),
        ("bare LF line ends (valid)", b"GET /x.html HTTP/1.1\nHost: h\n\n".to_vec(), 200, true),
        ("non-UTF-8 target without a /", b"GET \xff\xfe HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), 400, false),
        ("NUL in the path, encoded", head("GET /x%00.html HTTP/1.1", &[host]), 400, true),
        ("a bad percent escape", head("GET /x%zz HTTP/1.1", &[host]), 400, true),
        ("asterisk-form target", head("GET * HTTP/1.1", &[host]), 400, false),
        ("Content-Length: -1", head("GET /x.html HTTP/1.1", &[host, "Content-Length: -1"]), 400, false),
        (
            "Content-Length past u64",
            head("GET /x.html HTTP/1.1", &[host, "Content-Length: 99999999999999999999"]),
            413,
            false,
        ),
        (
            "two different Content-Length",
            head("GET /x.html HTTP/1.1", &[host, "Content-Length: 1", "Content-Length: 2"]),
            400,
            false,
        ),
        ("9 KiB request line", head(&long_line, &[host]), 414, false),
        ("20 KiB head", big_head, 431, false),
        ("POST", head("POST /x.html HTTP/1.1", &[host]), 405, true),
        ("HTTP/2.0", head("GET /x.html HTTP/2.0", &[host]), 505, false),
        ("unknown protocol", head("GET /x.html HTTQ/1.1", &[host]), 400, false),
        (
            "Transfer-Encoding: chunked",
            head("GET /x.html HTTP/1.1", &[host, "Transfer-Encoding: chunked"]),
            501,
            false,
        ),
        ("no Host on HTTP/1.1", head("GET /x.html HTTP/1.1", &[]), 400, false),
        ("two Hosts", head("GET /x.html HTTP/1.1", &[host, "Host: other"]), 400, false),
        ("space before the colon", head("GET /x.html HTTP/1.1", &[host, "X-A : 1"]), 400, false),
        ("line folding", head("GET /x.html HTTP/1.1", &[host, "X-A: 1", " folded"]), 400, false),
        ("no Host on HTTP/1.0 (valid)", head("GET /x.html HTTP/1.0", &[]), 200, false),
    ]
}

fn each_bad_request_gets_its_status(variant: &str) {
    let root = root();
    let server = Server::start(variant, root.path(), &[]);
    for (what, bytes, status, stays_open) in bad_requests() {
        let mut c = Client::connect(server.port());
        c.send(&bytes);
        let r = match c.try_response(false) {
            Ok(Some(r)) => r,
            Ok(None) => panic!("{what}: the connection was closed without a response"),
            Err(e) => panic!("{what}: {e}"),
        };
        assert_eq!(r.status, status, "{what}: {}", lossy(&r.head));
        assert_eq!(r.closes(), !stays_open, "{what}: Connection field in\n{}", lossy(&r.head));
        if status == 405 {
            assert_eq!(r.header("Allow"), Some("GET, HEAD"), "{what}:\n{}", lossy(&r.head));
        }
        if stays_open {
            c.send(get_request("/a.txt"));
            let next = c.response();
            assert_eq!((next.status, &next.body[..]), (200, A), "{what}: the request after it");
        } else {
            let rest = c.read_to_close().unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(rest.is_empty(), "{what}: bytes after a closing response: {}", lossy(&rest));
        }
        // The server is still there for everyone else.
        let ok = get(server.port(), "/x.html");
        assert_eq!(ok.status, 200, "{what}: a normal GET afterwards");
    }
    server.stop();
}
variant_tests!(each_bad_request_gets_its_status, 30);

/// A valid request to mutate, of a few shapes.
fn template(rng: &mut Rng) -> Vec<u8> {
    match rng.below(5) {
        0 => head("GET /x.html HTTP/1.1", &["Host: kweb-test", "Accept: */*"]),
        1 => head("HEAD /a.txt?q=1 HTTP/1.1", &["Host: kweb-test", "Connection: close"]),
        2 => {
            let mut r = head("GET /b.txt HTTP/1.1", &["Host: h", "Content-Length: 3"]);
            r.extend_from_slice(b"abc");
            r.extend_from_slice(&get_request("/c.txt").into_bytes());
            r
        }
        3 => head("GET /%2e%2e/sub/../x.html HTTP/1.0", &["Connection: keep-alive"]),
        _ => [get_request("/a.txt"), get_request("/nothing"), get_request("/b.txt")].concat().into_bytes(),
    }
}

/// `t` mutated: cut, bytes changed, bytes inserted, a run repeated, or just noise.
fn mutate(rng: &mut Rng, mut t: Vec<u8>) -> Vec<u8> {
    const ALPHABET: &[u8] = b"GET /HTP1.0\r\n :%2e\x00\xff\t?#Content-Length9";
    let pick = |rng: &mut Rng| ALPHABET[rng.below(ALPHABET.len() as u64) as usize];
    for _ in 0..rng.range(1, 3) {
        let n = t.len();
        match rng.below(6) {
            0 => t.truncate(rng.range(0, n)),
            1 if n > 0 => {
                for _ in 0..rng.range(1, 4) {
                    let i = rng.range(0, n - 1);
                    t[i] = if rng.below(2) == 0 { pick(rng) } else { rng.next() as u8 };
                }
            }
            2 => {
                let i = rng.range(0, n);
                let junk: Vec<u8> = (0..rng.range(1, 8)).map(|_| pick(rng)).collect();
                t.splice(i..i, junk);
            }
            3 if n > 0 => {
                let a = rng.range(0, n - 1);
                let b = rng.range(a, n.min(a + 40));
                let run = t[a..b].to_vec();
                t.splice(b..b, run);
            }
            4 => t = (0..rng.range(0, 300)).map(|_| rng.next() as u8).collect(),
            _ => t.truncate(rng.range(n / 2, n)),
        }
    }
    t
}

/// The statuses of the whole, well-formed responses `out` is made of. A head followed by
/// the end of the stream or by another response has no body (it answered a HEAD).
fn responses(out: &[u8]) -> Result<Vec<u16>, String> {
    let mut codes = Vec::new();
    let mut at = 0;
    while at < out.len() {
        let end = common::find(&out[at..], b"\r\n\r\n").ok_or("a response head cut short")? + 4;
        let (status, headers) = common::parse_head(&out[at..at + end])?;
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .ok_or("a response without Content-Length")?;
        at += end;
        let rest = &out[at..];
        let head_only = rest.is_empty() || rest.starts_with(b"HTTP/1.1 ");
        if !head_only {
            if rest.len() < len {
                return Err(format!("a body cut short: {} of {len} bytes", rest.len()));
            }
            at += len;
        }
        codes.push(status);
    }
    Ok(codes)
}

fn fuzzed_requests_get_a_status_or_a_clean_close(variant: &str) {
    let root = root();
    // The idle timeout closes what a half-closed connection leaves open (see
    // `a_half_closed_connection_is_closed_once_answered`): all 300 inputs are sent at once,
    // then their connections read, so that takes about one timeout in all.
    let mut server = Server::start(variant, root.path(), &["--idle-timeout", "1"]);
    let mut rng = Rng::new(0x6b77_6562);
    let inputs: Vec<Vec<u8>> = (0..300)
        .map(|_| {
            let t = template(&mut rng);
            mutate(&mut rng, t)
        })
        .collect();
    let mut clients: Vec<Client> = inputs
        .iter()
        .map(|input| {
            let mut c = Client::connect(server.port());
            c.send(input);
            c.shutdown_write();
            c
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for (i, (c, input)) in clients.iter_mut().zip(&inputs).enumerate() {
        let output = c.read_to_close().unwrap_or_else(|e| panic!("input {i} {:?}: {e}", lossy(input)));
        match responses(&output) {
            Ok(codes) => codes.into_iter().for_each(|s| *statuses.entry(s).or_insert(0) += 1),
            Err(e) => panic!("input {i} {:?}: {e}; output {:?}", lossy(input), lossy(&output)),
        }
    }
    assert_eq!(server.exited(), None, "the server exited during the fuzz");
    let expected = [200, 400, 403, 404, 405, 408, 413, 414, 431, 501, 505];
    let unexpected: Vec<_> = statuses.keys().filter(|s| !expected.contains(*s)).collect();
    assert!(unexpected.is_empty(), "unexpected statuses {unexpected:?} in {statuses:?}");
    assert!(statuses.get(&400).copied().unwrap_or(0) > 10, "too few refusals to mean much: {statuses:?}");
    assert!(statuses.get(&200).copied().unwrap_or(0) > 10, "too few successes to mean much: {statuses:?}");
    assert_eq!(get(server.port(), "/x.html").status, 200, "a normal GET after the fuzz");
    server.stop();
}
variant_tests!(fuzzed_requests_get_a_status_or_a_clean_close, 40);

fn request_bodies_are_skipped_exactly(variant: &str) {
    let root = root();
    let server = Server::start(variant, root.path(), &[]);
    let h = "Host: kweb-test";

    // A GET with a body "abc", then a pipelined GET.
    let mut c = Client::connect(server.port());
    let mut bytes = head("GET /a.txt HTTP/1.1", &[h, "Content-Length: 3"]);
    bytes.extend_from_slice(b"abc");
    bytes.extend_from_slice(get_request("/b.txt").as_bytes());
    c.send(&bytes);
    assert_eq!(c.response().body, A);
    assert_eq!(c.response().body, B, "the request after a body");

    // The body arrives in pieces, in separate writes (the server may read it across
    // turns); the next request follows the last piece.
    c.send(head("GET /a.txt HTTP/1.1", &[h, "Content-Length: 5"]));
    std::thread::sleep(std::time::Duration::from_millis(30));
    c.send(b"he");
    std::thread::sleep(std::time::Duration::from_millis(30));
    c.send(format!("llo{}", get_request("/c.txt")));
    assert_eq!(c.response().body, A);
    assert_eq!(c.response().body, C, "the request after a body sent in pieces");

    // A body that looks like a request is not one.
    let mut bytes =
        head("GET /a.txt HTTP/1.1", &[h, &format!("Content-Length: {}", get_request("/b.txt").len())]);
    bytes.extend_from_slice(get_request("/b.txt").as_bytes());
    bytes.extend_from_slice(get_request("/c.txt").as_bytes());
    c.send(&bytes);
    assert_eq!(c.response().body, A);
    assert_eq!(c.response().body, C, "a request hidden in a body was answered");

    // A refused method's body is skipped too, and the connection stays open.
    let mut bytes = head("POST /a.txt HTTP/1.1", &[h, "Content-Length: 5"]);
    bytes.extend_from_slice(b"hello");
    bytes.extend_from_slice(get_request("/b.txt").as_bytes());
    c.send(&bytes);
    assert_eq!(c.response().status, 405);
    let r = c.response();
    assert_eq!((r.status, &r.body[..]), (200, B), "the request after a refused POST with a body");
    server.stop();
}
variant_tests!(request_bodies_are_skipped_exactly, 20);

/// A client that sends its requests and closes its side at once (`shutdown(SHUT_WR)`)
/// must see the server close the connection once it has answered, as it would with
/// nginx, not after the idle timeout (75 s by default).
fn a_half_closed_connection_is_closed_once_answered(variant: &str) {
    let root = root();
    let server = Server::start(variant, root.path(), &[]);
    let cases: [(&str, Vec<u8>, usize); 3] = [
        ("a complete keep-alive request", get_request("/a.txt").into_bytes(), 1),
        ("two pipelined requests", [get_request("/a.txt"), get_request("/b.txt")].concat().into_bytes(), 2),
        ("a partial head", b"GET /a.txt HTTP/1.1\r\nHo".to_vec(), 0),
    ];
    for (what, bytes, answers) in cases {
        // Several tries: the end of stream may arrive with the data or after it.
        for attempt in 0..5 {
            let mut c = Client::connect(server.port());
            c.send(&bytes);
            c.shutdown_write();
            let out = c.read_to_close().unwrap_or_else(|e| panic!("{what}, attempt {attempt}: {e}"));
            let codes = responses(&out).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(codes, vec![200; answers], "{what}, attempt {attempt}");
        }
    }
    server.stop();
}
variant_tests!(a_half_closed_connection_is_closed_once_answered, 30);

/// Bytes above 0x7f are not allowed in a request target (RFC 9112 §3.2, RFC 3986): a
/// server should answer 400, not look for a file by that name (nginx 1.22 accepts them).
#[test]
fn raw_non_ascii_bytes_in_the_path_are_a_bad_request() {
    parlib_testkit::isolated!(std::time::Duration::from_secs(20), {
        let root = root();
        root.write("caf\u{e9}.txt", b"cafe\n"); // UTF-8 name: 0xc3 0xa9
        let server = Server::start("linux", root.path(), &[]);
        for bytes in [
            &b"GET /\xff\xfe HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"GET /caf\xc3\xa9.txt HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            let mut c = Client::connect(server.port());
            c.send(bytes);
            let r = c.response();
            assert_eq!(r.status, 400, "{:?}: {}", lossy(bytes), lossy(&r.head));
        }
        server.stop();
    });
}
