//! A file's response head is as long as nginx 1.22's for the same file (234 bytes for an
//! empty `.html` file), with nginx's fields in nginx's order: the benchmark compares
//! servers by requests/s, and a shorter head would be less work per request.

mod common;

use std::time::{Duration, SystemTime};

use common::{get_request, head_request, Client, Server, TempDir};

/// nginx 1.22.1's head for an empty `x.html` (a 29-byte `Date`, an 8-hex-digit mtime in
/// the `ETag`): 17 + 22 + 37 + 25 + 19 + 46 + 24 + 20 + 22 + 2 bytes.
const NGINX_HEAD_LEN: usize = 234;

/// The modification time given to the file: 2023-11-14 22:13:20 UTC, `6553f100` in hex.
const MTIME: u64 = 1_700_000_000;

fn empty_html_file_head_is_as_long_as_nginx(variant: &str) {
    let root = TempDir::new("head");
    let f = root.write("x.html", b"");
    std::fs::File::options()
        .write(true)
        .open(&f)
        .and_then(|f| f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(MTIME)))
        .expect("set the file's mtime");
    let server = Server::start(variant, root.path(), &[]);
    let mut c = Client::connect(server.port());
    c.send(get_request("/x.html"));
    let r = c.response();
    c.send(head_request("/x.html"));
    let h = c.head_response();
    for (what, r) in [("GET", &r), ("HEAD", &h)] {
        let text = String::from_utf8_lossy(&r.head);
        assert_eq!(r.head.len(), NGINX_HEAD_LEN, "{what}: head of {} bytes:\n{text}", r.head.len());
        assert_eq!(r.header("Server"), Some("kweb(parlib)"), "{what}:\n{text}");
        let date = r.header("Date").unwrap_or_default();
        assert!(date.len() == 29 && date.ends_with(" GMT"), "{what}: Date {date:?}");
        // Everything but the date is fixed, field by field, in nginx's order.
        let expected = format!(
            "HTTP/1.1 200 OK\r\nServer: kweb(parlib)\r\nDate: {date}\r\nContent-Type: text/html\r\n\
             Content-Length: 0\r\nLast-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\n\
             Connection: keep-alive\r\nETag: \"6553f100-0\"\r\nAccept-Ranges: bytes\r\n\r\n"
        );
        assert_eq!(text, expected, "{what}");
    }
    server.stop();
}
variant_tests!(empty_html_file_head_is_as_long_as_nginx, 20);
