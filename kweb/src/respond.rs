//! Response heads and bodies, appended to an [`Output`].
//!
//! A file's head has nginx's fields, in nginx's order, so that for the same file it is
//! exactly as long as nginx 1.22's (234 bytes for an empty `.html` file): the benchmark
//! compares servers by requests/s, and a shorter head would be less work per request.
//! The server token, `kweb(parlib)`, has the length of `nginx/1.22.1` for that reason.
//! Everything but the date and the `Connection` line is formatted once per file (see
//! `files`).

use std::sync::Arc;

use crate::date::DateCache;
use crate::files::FileEntry;
use crate::output::Output;
use crate::status::Status;

/// The `Server` token.
pub const SERVER: &str = "kweb(parlib)";

const KEEP: &[u8] = b"Connection: keep-alive\r\n";
const CLOSE: &[u8] = b"Connection: close\r\n";

/// Status line, `Server` and `Date`.
fn start(out: &mut Output, status: Status, date: &mut DateCache) {
    out.push_bytes(b"HTTP/1.1 ");
    out.push_bytes(status.line().as_bytes());
    out.push_bytes(b"\r\nServer: ");
    out.push_bytes(SERVER.as_bytes());
    out.push_bytes(b"\r\nDate: ");
    out.push_bytes(date.now());
    out.push_bytes(b"\r\n");
}

/// A 200 response with file `e` (its head only for HEAD).
pub fn file(out: &mut Output, e: &Arc<FileEntry>, keep_alive: bool, head: bool, date: &mut DateCache) {
    start(out, Status::Ok, date);
    out.push_bytes(&e.fields);
    out.push_bytes(if keep_alive { KEEP } else { CLOSE });
    out.push_bytes(&e.tail);
    if !head {
        out.push_body(e);
    }
}

/// A response with a plain-text body (`url_cmd`'s replies).
pub fn text(
    out: &mut Output,
    status: Status,
    body: &str,
    keep_alive: bool,
    head: bool,
    date: &mut DateCache,
) {
    start(out, status, date);
    let fields = format!("Content-Type: text/plain\r\nContent-Length: {}\r\n", body.len());
    out.push_bytes(fields.as_bytes());
    out.push_bytes(if keep_alive { KEEP } else { CLOSE });
    out.push_bytes(b"\r\n");
    if !head {
        out.push_bytes(body.as_bytes());
    }
}

/// An error response with a small HTML page naming the status. A 405 says which
/// methods are allowed.
pub fn error_page(out: &mut Output, status: Status, keep_alive: bool, head: bool, date: &mut DateCache) {
    let line = status.line();
    let body = format!("<html><head><title>{line}</title></head><body><h1>{line}</h1></body></html>\n");
    start(out, status, date);
    let fields = format!("Content-Type: text/html\r\nContent-Length: {}\r\n", body.len());
    out.push_bytes(fields.as_bytes());
    out.push_bytes(if keep_alive { KEEP } else { CLOSE });
    if status == Status::MethodNotAllowed {
        out.push_bytes(b"Allow: GET, HEAD\r\n");
    }
    out.push_bytes(b"\r\n");
    if !head {
        out.push_bytes(body.as_bytes());
    }
}
