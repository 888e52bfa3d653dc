//! The probe: before the load, each distinct URL is requested once, on a fresh blocking
//! connection, to learn the status and `Content-Length` every later response to it must
//! repeat (and, for the open loop, the body). Since the URLs of a run have different
//! sizes, that is also how the order of pipelined responses is checked.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::plan::{render_request, Expect};
use super::response::{parse_head, Parse};
use super::spec::Spec;

/// The expectation of each URL of `spec` (same order as `spec.urls`), all probes done
/// before `deadline`.
pub(crate) fn probe_all(spec: &Spec, deadline: Instant) -> Result<Vec<Expect>, String> {
    let mut seen: HashMap<&str, Expect> = HashMap::new();
    let mut out = Vec::with_capacity(spec.urls.len());
    for url in &spec.urls {
        let e = match seen.get(url.as_str()) {
            Some(&e) => e,
            None => {
                let e = probe_one(spec.addr, spec.head, url, deadline)?.expect;
                seen.insert(url, e);
                e
            }
        };
        out.push(e);
    }
    Ok(out)
}

/// What the probe of one URL saw.
pub(crate) struct Probed {
    /// What every later response to the URL must repeat.
    pub expect: Expect,
    /// The body of the response (empty for `HEAD`).
    pub body: Vec<u8>,
}

/// Requests `url` once from `addr` (with `HEAD` if `head_only`) on a fresh connection,
/// before `deadline`. The error says which URL and why.
pub(crate) fn probe_one(
    addr: SocketAddr,
    head_only: bool,
    url: &str,
    deadline: Instant,
) -> Result<Probed, String> {
    probe(addr, head_only, url, deadline).map_err(|why| format!("probe of {url}: {why}"))
}

fn probe(addr: SocketAddr, head_only: bool, url: &str, deadline: Instant) -> Result<Probed, String> {
    let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let mut s =
        TcpStream::connect_timeout(&addr, left()).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    s.set_write_timeout(Some(left())).map_err(|e| e.to_string())?;
    s.write_all(&render_request(addr, head_only, url)).map_err(|e| format!("sending the request: {e}"))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let h = loop {
        match parse_head(&buf) {
            Parse::Complete(h) => break h,
            Parse::Invalid(why) => return Err(why.into()),
            Parse::Partial => read_some(&mut s, &mut chunk, &mut buf, left())?,
        }
    };
    if h.transfer_encoding {
        return Err("the response has Transfer-Encoding; kweb-load frames by Content-Length only".into());
    }
    let Some(len) = h.content_length else {
        return Err("the response has no Content-Length; kweb-load frames by Content-Length only".into());
    };
    // Read the body too, so that the server sees a whole exchange (and a short body is
    // caught now rather than as errors under load).
    let body_len = if head_only { 0 } else { len };
    let want = h.len as u64 + body_len;
    while (buf.len() as u64) < want {
        read_some(&mut s, &mut chunk, &mut buf, left())?;
    }
    buf.truncate(want as usize);
    buf.drain(..h.len);
    Ok(Probed { expect: Expect { status: h.status, content_length: len }, body: buf })
}

fn read_some(s: &mut TcpStream, chunk: &mut [u8], buf: &mut Vec<u8>, left: Duration) -> Result<(), String> {
    s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
    match s.read(chunk) {
        Ok(0) => Err("the server closed the connection before a whole response".into()),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            Err("no response before the timeout".into())
        }
        Err(e) => Err(format!("reading the response: {e}")),
    }
}
