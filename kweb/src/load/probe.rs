//! The probe: before the load, each distinct URL is requested once, on a fresh blocking
//! connection, to learn the status and `Content-Length` every later response to it must
//! repeat. Since the URLs of a run have different sizes, that is also how the order of
//! pipelined responses is checked.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
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
                let e = probe_one(spec, url, deadline).map_err(|why| format!("probe of {url}: {why}"))?;
                seen.insert(url, e);
                e
            }
        };
        out.push(e);
    }
    Ok(out)
}

fn probe_one(spec: &Spec, url: &str, deadline: Instant) -> Result<Expect, String> {
    let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let mut s = TcpStream::connect_timeout(&spec.addr, left())
        .map_err(|e| format!("cannot connect to {}: {e}", spec.addr))?;
    s.set_write_timeout(Some(left())).map_err(|e| e.to_string())?;
    s.write_all(&render_request(spec, url)).map_err(|e| format!("sending the request: {e}"))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let head = loop {
        match parse_head(&buf) {
            Parse::Complete(h) => break h,
            Parse::Invalid(why) => return Err(why.into()),
            Parse::Partial => read_some(&mut s, &mut chunk, &mut buf, left())?,
        }
    };
    if head.transfer_encoding {
        return Err("the response has Transfer-Encoding; kweb-load frames by Content-Length only".into());
    }
    let Some(len) = head.content_length else {
        return Err("the response has no Content-Length; kweb-load frames by Content-Length only".into());
    };
    // Read the body too, so that the server sees a whole exchange (and a short body is
    // caught now rather than as errors under load).
    let want = head.len as u64 + if spec.head { 0 } else { len };
    while (buf.len() as u64) < want {
        read_some(&mut s, &mut chunk, &mut buf, left())?;
    }
    Ok(Expect { status: head.status, content_length: len })
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
