//! Parsing one HTTP/1.1 request head out of the bytes a connection has received.
//!
//! The parser only ever looks at bytes it has: it finds the end of the head (an empty
//! line) before it reads any field, so a request cut anywhere is `Partial`, never a
//! string read past its end (the original kweb parsed unterminated buffers). It works
//! on bytes, not `str`: a request need not be UTF-8, and whatever it holds gets a status.
//!
//! Lines end in CRLF or a bare LF (RFC 9112 §2.2 lets a server accept LF alone, as
//! nginx does). What it refuses, and with which status:
//!
//! | input | status | connection |
//! |---|---|---|
//! | request line longer than [`MAX_REQUEST_LINE`] | 414 | closed |
//! | head longer than [`MAX_HEAD`] | 431 | closed |
//! | malformed request line, header line, `Host` missing (1.1) or repeated, bad `Content-Length`, line folding | 400 | closed |
//! | `Content-Length` above [`MAX_BODY`] | 413 | closed |
//! | `Transfer-Encoding` on a request | 501 | closed |
//! | a version other than 1.0 or 1.1 | 505 | closed |
//! | a method other than GET or HEAD | 405 | kept (its body, if any, is skipped) |
//!
//! A refused head that says nothing trustworthy about where the next request starts
//! closes the connection after its response; nothing else does.

use crate::status::Status;

/// Longest request line accepted, CRLF included (nginx's default header buffer, 8 KiB).
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Longest request head accepted, the empty line included.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body kweb reads past (GET and HEAD bodies are discarded). Larger
/// ones are refused with 413 rather than read.
pub const MAX_BODY: u64 = 64 * 1024;

/// The request methods kweb serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: the same head, no body.
    Head,
}

/// A complete, valid request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// GET or HEAD.
    pub method: Method,
    /// The path part of the target, still percent-encoded, without the query.
    pub path: &'a [u8],
    /// The query (after `?`), if any.
    pub query: &'a [u8],
    /// `HTTP/1.1` (true) or `HTTP/1.0`.
    pub http11: bool,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// Bytes of the head, the empty line included.
    pub head_len: usize,
    /// Length of the body that follows the head (skipped).
    pub body_len: u64,
}

/// What the bytes at the start of a buffer hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A complete request head.
    Request(Request<'a>),
    /// Not yet a complete head; read more.
    Partial,
    /// A head that gets an error response.
    Refused {
        /// The response's status.
        status: Status,
        /// Bytes of the head, to skip if the connection stays open.
        consumed: usize,
        /// Body bytes after the head, to skip as well.
        body_len: u64,
        /// Whether the connection stays open after the response.
        keep_alive: bool,
        /// Whether the request was a HEAD (the response has no body).
        head: bool,
    },
}

fn refuse(status: Status) -> Parsed<'static> {
    Parsed::Refused { status, consumed: 0, body_len: 0, keep_alive: false, head: false }
}

/// Index of the first `\n` in `buf`, if any.
#[inline]
fn find_lf(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

/// Parses the request head at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    // 1. The request line, and the end of the head, before looking at any field.
    let Some(line_end) = find_lf(&buf[..buf.len().min(MAX_REQUEST_LINE)]) else {
        return if buf.len() >= MAX_REQUEST_LINE { refuse(Status::UriTooLong) } else { Parsed::Partial };
    };
    let Some(head_len) = head_end(buf, line_end + 1) else {
        return if buf.len() >= MAX_HEAD { refuse(Status::HeaderTooLarge) } else { Parsed::Partial };
    };
    if head_len > MAX_HEAD {
        return refuse(Status::HeaderTooLarge);
    }
    // 2. Method, target, version.
    let line = trim_cr(&buf[..line_end]);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return refuse(Status::BadRequest);
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return refuse(Status::BadRequest);
    }
    let http11 = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        [b'H', b'T', b'T', b'P', b'/', a, b'.', b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            return refuse(Status::VersionNotSupported);
        }
        _ => return refuse(Status::BadRequest),
    };
    let Some((path, query)) = split_target(target) else { return refuse(Status::BadRequest) };
    // 3. The fields kweb acts on.
    let mut f = Fields::default();
    let mut at = line_end + 1;
    while at < head_len {
        let end = at + find_lf(&buf[at..head_len]).expect("the head ends in a line");
        let l = trim_cr(&buf[at..end]);
        at = end + 1;
        if l.is_empty() {
            break;
        }
        if let Err(s) = f.take(l) {
            return refuse(s);
        }
    }
    if http11 && f.hosts != 1 || f.hosts > 1 {
        return refuse(Status::BadRequest);
    }
    if f.chunked {
        return refuse(Status::NotImplemented);
    }
    let body_len = f.content_length.unwrap_or(0);
    if body_len > MAX_BODY {
        return refuse(Status::PayloadTooLarge);
    }
    let keep_alive = if http11 { !f.close } else { f.keep_alive && !f.close };
    let method = match method {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        _ => {
            return Parsed::Refused {
                status: Status::MethodNotAllowed,
                consumed: head_len,
                body_len,
                keep_alive,
                head: false,
            }
        }
    };
    Parsed::Request(Request { method, path, query, http11, keep_alive, head_len, body_len })
}

/// Where the head that starts at 0 ends (just past its empty line), searching lines
/// from `from`.
fn head_end(buf: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let rest = &buf[from..];
        match rest {
            [b'\n', ..] => return Some(from + 1),
            [b'\r', b'\n', ..] => return Some(from + 2),
            _ => {}
        }
        from += find_lf(rest)? + 1;
    }
}

fn trim_cr(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// RFC 9110 `tchar`: what a method or field name may be made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The path and query of an origin-form (`/p?q`) or absolute-form (`http://h/p?q`)
/// target; `None` for anything else (`*`, authority-form, control bytes, a fragment).
fn split_target(t: &[u8]) -> Option<(&[u8], &[u8])> {
    // A target is ASCII (RFC 9112 §3.2): other bytes must come percent-encoded.
    if t.iter().any(|&b| b <= b' ' || b >= 0x7f || b == b'#') {
        return None;
    }
    let t = match t {
        [b'/', ..] => t,
        _ => {
            let lower = t.get(..7)?.eq_ignore_ascii_case(b"http://");
            if !lower {
                return None;
            }
            let rest = &t[7..];
            &rest[rest.iter().position(|&b| b == b'/')?..]
        }
    };
    Some(match t.iter().position(|&b| b == b'?') {
        Some(q) => (&t[..q], &t[q + 1..]),
        None => (t, &[][..]),
    })
}

/// The header fields that change how kweb answers.
#[derive(Default)]
struct Fields {
    hosts: u32,
    content_length: Option<u64>,
    chunked: bool,
    close: bool,
    keep_alive: bool,
}

impl Fields {
    /// Takes one header line (without its line end).
    fn take(&mut self, l: &[u8]) -> Result<(), Status> {
        if l[0] == b' ' || l[0] == b'\t' {
            return Err(Status::BadRequest); // obsolete line folding (RFC 9112 §5.2)
        }
        let colon = l.iter().position(|&b| b == b':').ok_or(Status::BadRequest)?;
        let (name, value) = (&l[..colon], trim_ows(&l[colon + 1..]));
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(Status::BadRequest); // includes whitespace before the colon
        }
        if name.eq_ignore_ascii_case(b"host") {
            self.hosts += 1;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_length(value).ok_or(Status::BadRequest)?;
            if self.content_length.is_some_and(|m| m != n) {
                return Err(Status::BadRequest);
            }
            self.content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for tok in value.split(|&b| b == b',').map(trim_ows) {
                self.close |= tok.eq_ignore_ascii_case(b"close");
                self.keep_alive |= tok.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        Ok(())
    }
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(v.len());
    let end = v.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(start, |e| e + 1);
    &v[start..end]
}

/// A `Content-Length` value: decimal digits only (no sign, no spaces inside). Values
/// past `u64` saturate, which [`MAX_BODY`] then refuses with 413.
fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, &d| n.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(buf: &[u8]) -> Status {
        match parse(buf) {
            Parsed::Refused { status, .. } => status,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_get_with_host_is_a_keep_alive_request() {
        let b = b"GET /a/b.html?x=1 HTTP/1.1\r\nHost: h\r\n\r\nGET";
        let Parsed::Request(r) = parse(b) else { panic!() };
        assert_eq!(
            (r.method, r.path, r.query, r.keep_alive, r.head_len),
            (Method::Get, &b"/a/b.html"[..], &b"x=1"[..], true, 39)
        );
    }

    #[test]
    fn bare_lf_line_ends_are_accepted() {
        let Parsed::Request(r) = parse(b"HEAD / HTTP/1.1\nHost: h\n\n") else { panic!() };
        assert_eq!((r.method, r.head_len), (Method::Head, 25));
    }

    #[test]
    fn a_head_cut_anywhere_is_partial() {
        let full = b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]), Parsed::Partial, "cut at {cut}");
        }
        assert!(matches!(parse(full), Parsed::Request(Request { keep_alive: false, .. })));
    }

    #[test]
    fn http10_closes_unless_it_asks_for_keep_alive() {
        let Parsed::Request(r) = parse(b"GET / HTTP/1.0\r\n\r\n") else { panic!() };
        assert!(!r.keep_alive);
        let Parsed::Request(r) = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n") else { panic!() };
        assert!(r.keep_alive);
    }

    #[test]
    fn malformed_heads_get_the_matching_status() {
        assert_eq!(status(b"GET/HTTP/1.1\r\n\r\n"), Status::BadRequest); // no spaces
        assert_eq!(status(b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), Status::BadRequest);
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), Status::BadRequest); // no Host
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), Status::BadRequest);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n"), Status::BadRequest);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n"), Status::BadRequest);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: h\r\nnocolon\r\n\r\n"), Status::BadRequest);
        assert_eq!(status(b"GET \xff\xfe HTTP/1.1\r\nHost: h\r\n\r\n"), Status::BadRequest);
        assert_eq!(status(b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n"), Status::BadRequest);
        assert_eq!(status(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"), Status::BadRequest);
        assert_eq!(status(b"GET / HTTP/2.0\r\nHost: h\r\n\r\n"), Status::VersionNotSupported);
        assert_eq!(status(b"GET / HTTQ/1.1\r\nHost: h\r\n\r\n"), Status::BadRequest);
        assert_eq!(status(b"POST / HTTP/1.1\r\nHost: h\r\n\r\n"), Status::MethodNotAllowed);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Status::NotImplemented
        );
    }

    #[test]
    fn content_length_must_be_plain_digits_and_bounded() {
        let cl =
            |v: &str| status(format!("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: {v}\r\n\r\n").as_bytes());
        assert_eq!(cl("-1"), Status::BadRequest);
        assert_eq!(cl("+5"), Status::BadRequest);
        assert_eq!(cl("1 2"), Status::BadRequest);
        assert_eq!(cl(""), Status::BadRequest);
        assert_eq!(cl("99999999999999999999999999"), Status::PayloadTooLarge);
        assert_eq!(cl("65537"), Status::PayloadTooLarge);
        let two = b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(status(two), Status::BadRequest);
        let Parsed::Request(r) = parse(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\n\r\n") else {
            panic!()
        };
        assert_eq!(r.body_len, 7);
    }

    #[test]
    fn oversize_lines_and_heads_are_refused_before_they_end() {
        let mut long = b"GET /".to_vec();
        long.resize(MAX_REQUEST_LINE, b'a');
        assert_eq!(status(&long), Status::UriTooLong);
        let mut head = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        while head.len() < MAX_HEAD {
            head.extend_from_slice(b"X-Pad: 0123456789\r\n");
        }
        assert_eq!(status(&head), Status::HeaderTooLarge);
    }

    #[test]
    fn a_refused_method_keeps_the_connection_and_says_how_much_to_skip() {
        let b = b"DELETE /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
        let Parsed::Refused { status, consumed, body_len, keep_alive, .. } = parse(b) else { panic!() };
        assert_eq!((status, consumed, body_len, keep_alive), (Status::MethodNotAllowed, 50, 3, true));
    }

    #[test]
    fn absolute_form_targets_keep_only_the_path() {
        let Parsed::Request(r) = parse(b"GET http://h:80/p?q HTTP/1.1\r\nHost: h\r\n\r\n") else { panic!() };
        assert_eq!((r.path, r.query), (&b"/p"[..], &b"q"[..]));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = parlib_testkit::Rng::new(7);
        for _ in 0..20_000 {
            let n = rng.below(200) as usize;
            let mut b: Vec<u8> =
                (0..n).map(|_| b"GET /HTP1.\r\n :a\x00\xff"[rng.below(17) as usize]).collect();
            if rng.below(2) == 0 {
                b.splice(0..0, b"GET / HTTP/1.1\r\n".iter().copied());
            }
            let _ = parse(&b);
        }
    }
}
