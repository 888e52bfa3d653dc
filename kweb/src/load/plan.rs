//! The [`Plan`]: everything the load threads share and only read. The request bytes are
//! rendered once, before the load, so that sending any run of requests is one `send` of
//! a slice: no formatting, copying or allocation per request.
//!
//! The request cycle lays out the URLs' requests in turn, repeated until every run of
//! `in_flight` requests that starts at any URL is contiguous:
//!
//! ```text
//!   position  0    1    2    0'   1'   2'   0''  ...      (urls.len() = 3, in_flight = 4)
//!   bytes     GET /a ... GET /b ... GET /c ... GET /a ... GET /b ...
//!   offsets   ^o[0]     ^o[1]     ^o[2]     ^o[3]     ^o[4]    ...   ^o[positions]
//! ```
//!
//! A connection whose next URL is `u` sends `k` requests as
//! `bytes[offsets[u]..offsets[u + k]]`, then its next URL is `(u + k) % urls.len()`.

use std::net::SocketAddr;

use super::spec::Spec;

/// What the probe learned about one URL: every response to it must say the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Expect {
    /// The status code.
    pub status: u16,
    /// The `Content-Length` value (for `HEAD`, the length the body would have).
    pub content_length: u64,
}

/// The shared, read-only part of a run.
pub(crate) struct Plan {
    /// The request cycle (module docs).
    pub bytes: Vec<u8>,
    /// `offsets[p]`: where position `p` of the cycle starts; one more entry than positions.
    pub offsets: Vec<usize>,
    /// The URL index (into `Spec::urls`) of each position of the cycle.
    pub url_of: Vec<u32>,
    /// The expectation of each URL index.
    pub expect: Vec<Expect>,
    /// The requests are `HEAD`: responses have no body.
    pub head: bool,
}

/// The request for `path` to `addr` (`HEAD` if `head`): the same bytes for every server,
/// so each does the same work.
pub(crate) fn render_request(addr: SocketAddr, head: bool, path: &str) -> Vec<u8> {
    let method = if head { "HEAD" } else { "GET" };
    let host = match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

impl Plan {
    /// Renders the requests of `spec`; `expect[i]` is the probe's answer for `spec.urls[i]`.
    pub(crate) fn new(spec: &Spec, expect: Vec<Expect>) -> Plan {
        let n = spec.urls.len();
        let rendered: Vec<Vec<u8>> =
            spec.urls.iter().map(|path| render_request(spec.addr, spec.head, path)).collect();
        // Positions 0..n + in_flight cover a run of in_flight requests from any start < n.
        let positions = n + spec.in_flight;
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(positions + 1);
        let mut url_of = Vec::with_capacity(positions);
        for p in 0..positions {
            offsets.push(bytes.len());
            url_of.push((p % n) as u32);
            bytes.extend_from_slice(&rendered[p % n]);
        }
        offsets.push(bytes.len());
        Plan { bytes, offsets, url_of, expect, head: spec.head }
    }

    /// How many URLs the cycle turns through.
    pub(crate) fn urls(&self) -> usize {
        self.expect.len()
    }

    /// The request line's method and path of URL `url`, for error messages.
    pub(crate) fn request_line(&self, url: u32) -> &str {
        let p = url as usize;
        let req = &self.bytes[self.offsets[p]..self.offsets[p + 1]];
        let end = req.windows(9).position(|w| w == b" HTTP/1.1").unwrap_or(req.len());
        std::str::from_utf8(&req[..end]).unwrap_or("?")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_run_of_in_flight_requests_is_contiguous_and_in_turn() {
        let mut spec =
            Spec::new("127.0.0.1:80".parse().unwrap(), vec!["/a".into(), "/bb".into(), "/c".into()]);
        spec.in_flight = 4;
        let e = Expect { status: 200, content_length: 0 };
        let plan = Plan::new(&spec, vec![e; 3]);
        for start in 0..3 {
            let run = &plan.bytes[plan.offsets[start]..plan.offsets[start + 4]];
            let text = std::str::from_utf8(run).unwrap();
            let paths: Vec<&str> = text.split("GET ").skip(1).map(|r| r.split(' ').next().unwrap()).collect();
            let want: Vec<&str> = (start..start + 4).map(|p| spec.urls[p % 3].as_str()).collect();
            assert_eq!(paths, want);
        }
        assert_eq!(plan.request_line(1), "GET /bb");
        assert!(plan.bytes.starts_with(b"GET /a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
    }
}
