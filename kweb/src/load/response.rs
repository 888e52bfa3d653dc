//! Response framing: parsing the head of an HTTP/1.1 response (status line and header
//! fields) far enough to know its status and where it ends.
//!
//! Responses are framed by `Content-Length` only. A head without one, or with any
//! `Transfer-Encoding`, cannot be framed here; the caller counts it as a framing error
//! and drops the connection. Only three header fields are looked at (`Content-Length`,
//! `Transfer-Encoding`, `Connection`), by case-insensitive name; the rest are skipped.
//! Lines may end in CRLF or a bare LF (RFC 9112 §2.2 lets a recipient accept it).

/// A head longer than this is refused: no server we measure sends one, and a bound keeps
/// a broken server from growing a connection's carry-over buffer without end.
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// What a complete response head says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    /// The status code.
    pub status: u16,
    /// The `Content-Length` value, if the head has one.
    pub content_length: Option<u64>,
    /// The head has a `Transfer-Encoding` field (chunked or any other).
    pub transfer_encoding: bool,
    /// `Connection: close`: the server closes after this response.
    pub close: bool,
    /// Bytes of the head, status line to the empty line included.
    pub len: usize,
}

/// The outcome of parsing the bytes at the start of a response.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parse {
    /// The head is complete.
    Complete(Head),
    /// More bytes are needed.
    Partial,
    /// Not an HTTP/1.x response head; the reason.
    Invalid(&'static str),
}

/// Parses the response head at the start of `buf`.
pub(crate) fn parse_head(buf: &[u8]) -> Parse {
    let Some(nl) = find_lf(buf, 0) else {
        return partial_or_too_long(buf);
    };
    let status = match parse_status_line(trim_cr(&buf[..nl])) {
        Ok(s) => s,
        Err(why) => return Parse::Invalid(why),
    };
    let mut head = Head { status, content_length: None, transfer_encoding: false, close: false, len: 0 };
    let mut pos = nl + 1;
    loop {
        let Some(nl) = find_lf(buf, pos) else {
            return partial_or_too_long(buf);
        };
        let line = trim_cr(&buf[pos..nl]);
        pos = nl + 1;
        if line.is_empty() {
            head.len = pos;
            return if pos > MAX_HEAD {
                Parse::Invalid("response head too long")
            } else {
                Parse::Complete(head)
            };
        }
        if let Err(why) = header_field(line, &mut head) {
            return Parse::Invalid(why);
        }
    }
}

fn partial_or_too_long(buf: &[u8]) -> Parse {
    if buf.len() >= MAX_HEAD {
        Parse::Invalid("response head too long")
    } else {
        Parse::Partial
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    match line {
        [rest @ .., b'\r'] => rest,
        _ => line,
    }
}

/// `HTTP/1.x NNN reason`: the status code.
fn parse_status_line(line: &[u8]) -> Result<u16, &'static str> {
    if line.len() < 12 || &line[..7] != b"HTTP/1." || !line[7].is_ascii_digit() || line[8] != b' ' {
        return Err("bad status line");
    }
    let code = &line[9..12];
    if !code.iter().all(u8::is_ascii_digit) || (line.len() > 12 && line[12] != b' ') {
        return Err("bad status code");
    }
    Ok(code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0')))
}

/// Looks at one header field line for the three fields framing depends on.
fn header_field(line: &[u8], head: &mut Head) -> Result<(), &'static str> {
    // Cheap filter first: all three names start with 'c' or 't', most fields do not.
    if !matches!(line[0] | 0x20, b'c' | b't') {
        return Ok(());
    }
    if let Some(value) = field_value(line, b"content-length:") {
        let n = parse_decimal(value).ok_or("bad Content-Length")?;
        if head.content_length.is_some_and(|old| old != n) {
            return Err("conflicting Content-Length fields");
        }
        head.content_length = Some(n);
    } else if field_value(line, b"transfer-encoding:").is_some() {
        head.transfer_encoding = true;
    } else if let Some(value) = field_value(line, b"connection:") {
        head.close |= contains_token_ignore_case(value, b"close");
    }
    Ok(())
}

/// The value of `line` if its name (colon included) is `name_colon`, which is in lower
/// case; leading and trailing blanks trimmed.
fn field_value<'a>(line: &'a [u8], name_colon: &[u8]) -> Option<&'a [u8]> {
    if line.len() < name_colon.len() {
        return None;
    }
    // `| 0x20` lower-cases letters and leaves '-' and ':' as they are (both have the bit).
    let same = line.iter().zip(name_colon).all(|(&a, &b)| a | 0x20 == b);
    same.then(|| trim_blanks(&line[name_colon.len()..]))
}

fn trim_blanks(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0')))
}

/// Whether the comma-separated `value` holds `token` (lower case), ignoring case.
fn contains_token_ignore_case(value: &[u8], token: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|t| trim_blanks(t).eq_ignore_ascii_case(token))
}

/// The index of the first `\n` in `hay` at or after `from`, eight bytes at a time.
#[inline]
fn find_lf(hay: &[u8], from: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const LF: u64 = LO * b'\n' as u64;
    let mut i = from;
    while i + 8 <= hay.len() {
        let word = u64::from_le_bytes(hay[i..i + 8].try_into().unwrap());
        let x = word ^ LF;
        // The classic "has a zero byte" test: its lowest set bit marks the first zero
        // byte of `x` exactly (bits above it may be false positives, never below).
        let zero = x.wrapping_sub(LO) & !x & HI;
        if zero != 0 {
            return Some(i + (zero.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    hay[i.min(hay.len())..].iter().position(|&b| b == b'\n').map(|p| i + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(s: &str) -> Head {
        match parse_head(s.as_bytes()) {
            Parse::Complete(h) => h,
            other => panic!("{s:?}: {other:?}"),
        }
    }

    #[test]
    fn a_plain_head_gives_status_length_and_size() {
        let s = "HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 42\r\n\r\nbody";
        let h = complete(s);
        assert_eq!((h.status, h.content_length, h.transfer_encoding, h.close), (200, Some(42), false, false));
        assert_eq!(h.len, s.len() - 4);
    }

    #[test]
    fn names_are_case_insensitive_and_values_trimmed() {
        let h = complete(
            "HTTP/1.1 404 Not Found\r\ncOnTeNt-LeNgTh:\t7 \r\nCONNECTION: keep-alive, Close\r\n\r\n",
        );
        assert_eq!((h.status, h.content_length, h.close), (404, Some(7), true));
    }

    #[test]
    fn transfer_encoding_and_bare_lf_are_seen() {
        let h = complete("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n");
        assert!(h.transfer_encoding && h.content_length.is_none());
    }

    #[test]
    fn every_prefix_of_a_head_is_partial() {
        let s = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
        for n in 0..s.len() {
            assert_eq!(parse_head(&s[..n]), Parse::Partial, "prefix {n}");
        }
    }

    #[test]
    fn garbage_is_invalid() {
        for s in ["HTTP/2 200\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n", "hello\r\n\r\n"] {
            assert!(matches!(parse_head(s.as_bytes()), Parse::Invalid(_)), "{s:?}");
        }
        let bad_len = "HTTP/1.1 200 OK\r\nContent-Length: 1a\r\n\r\n";
        assert!(matches!(parse_head(bad_len.as_bytes()), Parse::Invalid(_)));
    }

    #[test]
    fn find_lf_agrees_with_a_plain_search() {
        let byte = |i: u32| match (i * 7 % 256) as u8 {
            _ if i % 37 == 5 => b'\n',
            b'\n' => b'x',
            b => b,
        };
        let hay: Vec<u8> = (0..200u32).map(byte).collect();
        for from in 0..hay.len() {
            let want = hay[from..].iter().position(|&b| b == b'\n').map(|p| p + from);
            assert_eq!(find_lf(&hay, from), want, "from {from}");
        }
    }
}
