//! The open loop's [`Plan`]: per request class, its request bytes, rendered once before
//! the load, and what every response to it must be, learned by probing its URL.

use std::collections::HashMap;
use std::time::Instant;

use super::spec::Spec;
use crate::load::plan::{render_request, Expect};
use crate::load::probe::probe_one;

/// Bodies up to this many bytes are compared byte for byte with the probe's. Generated
/// answers (kweb's `/work`: some 40 bytes naming the work done and its hash) are short,
/// and their bytes are what shows a handler that was cut short or answered for another
/// request; a comparison of a page or less costs well under a µs. Longer bodies (static
/// files) are checked by status and length only, as in the closed loop.
pub const BODY_CHECK_MAX: u64 = 4096;

/// One request class, ready to send and to check.
pub(crate) struct ClassPlan {
    /// The request (always `GET`).
    pub request: Vec<u8>,
    /// The status and `Content-Length` every response must carry.
    pub expect: Expect,
    /// The body every response must carry, if it is at most [`BODY_CHECK_MAX`] bytes.
    pub body: Option<Vec<u8>>,
    /// `GET <path>`, for error messages.
    pub line: String,
}

/// The shared, read-only part of an open-loop run.
pub(crate) struct Plan {
    /// In the order of `Spec::classes`.
    pub classes: Vec<ClassPlan>,
}

impl Plan {
    /// Probes each distinct URL of `spec` once, all before `deadline`, and renders the
    /// requests.
    pub(crate) fn probe(spec: &Spec, deadline: Instant) -> Result<Plan, String> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut classes: Vec<ClassPlan> = Vec::with_capacity(spec.classes.len());
        for (i, c) in spec.classes.iter().enumerate() {
            let url = c.url.as_str();
            let (expect, body) = match seen.get(url) {
                Some(&j) => (classes[j].expect, classes[j].body.clone()),
                None => {
                    let probed = probe_one(spec.addr, false, url, deadline)?;
                    seen.insert(url, i);
                    let small = probed.expect.content_length <= BODY_CHECK_MAX;
                    (probed.expect, small.then_some(probed.body))
                }
            };
            let request = render_request(spec.addr, false, url);
            classes.push(ClassPlan { request, expect, body, line: format!("GET {url}") });
        }
        Ok(Plan { classes })
    }
}
