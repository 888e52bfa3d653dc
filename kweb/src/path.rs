//! From a request path to a file name beneath the root, or a refusal.
//!
//! Two walls keep requests inside the root, and either alone would hold:
//!
//! 1. [`resolve`] percent-decodes the path, then normalises it segment by segment: empty
//!    segments (`//abs`) and `.` are dropped, `..` removes the segment before it, and a
//!    `..` with nothing before it is refused (403). The result is relative (no leading
//!    `/`), so a path that was absolute after decoding is now under the root. Decoding
//!    comes first, so `%2e%2e%2f` is a `..` like any other.
//! 2. The file is opened with `openat2(RESOLVE_BENEATH)` relative to the root's
//!    descriptor (`sys::open_beneath`): the kernel itself refuses `..` and symbolic links
//!    that lead out of the root (`EXDEV`, answered 403).

use crate::status::Status;

/// Longest decoded path kweb opens (Linux's `PATH_MAX`).
pub const MAX_PATH: usize = 4096;

/// The value of hex digit `b`.
fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Decodes and normalises request path `raw` (it starts with `/`) into `out`: a relative
/// path beneath the root, NUL-terminated, `"."` for the root itself. Returns whether the
/// path ended in `/` (a directory was asked for).
pub fn resolve(raw: &[u8], out: &mut Vec<u8>) -> Result<bool, Status> {
    out.clear();
    // Decode first: `%2F` becomes a separator and `%2e%2e` a `..`, both normalised below.
    // Most paths have no escapes and are used as they are, without a copy.
    let decoded: std::borrow::Cow<'_, [u8]> =
        if raw.contains(&b'%') { decode(raw)?.into() } else { raw.into() };
    if decoded.contains(&0) {
        return Err(Status::BadRequest);
    }
    if decoded.len() > MAX_PATH {
        return Err(Status::UriTooLong);
    }
    let dir = decoded.last() == Some(&b'/');
    for seg in decoded.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                if out.is_empty() {
                    return Err(Status::Forbidden);
                }
                let start = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(start);
            }
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(seg);
            }
        }
    }
    if out.is_empty() {
        out.push(b'.');
    }
    out.push(0);
    Ok(dir)
}

/// Percent-decodes `raw`; 400 for an escape that is not two hex digits.
fn decode(raw: &[u8]) -> Result<Vec<u8>, Status> {
    let mut d = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let (Some(h), Some(l)) =
                (raw.get(i + 1).and_then(|&c| hex(c)), raw.get(i + 2).and_then(|&c| hex(c)))
            else {
                return Err(Status::BadRequest);
            };
            d.push(h << 4 | l);
            i += 3;
        } else {
            d.push(raw[i]);
            i += 1;
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        let mut out = Vec::new();
        resolve(raw.as_bytes(), &mut out).unwrap_or_else(|s| panic!("{raw}: {s:?}"));
        assert_eq!(out.pop(), Some(0));
        String::from_utf8(out).unwrap()
    }

    fn refused(raw: &str) -> Status {
        resolve(raw.as_bytes(), &mut Vec::new()).expect_err(raw)
    }

    #[test]
    fn absolute_looking_paths_stay_beneath_the_root() {
        assert_eq!(ok("//etc/passwd"), "etc/passwd");
        assert_eq!(ok("/%2Fetc/passwd"), "etc/passwd");
        assert_eq!(ok("/a//b/./c/"), "a/b/c");
        assert_eq!(ok("/"), ".");
        assert_eq!(ok("/a/b/../c"), "a/c");
        assert_eq!(ok("/a/.."), ".");
    }

    #[test]
    fn climbing_above_the_root_is_forbidden_in_every_spelling() {
        for p in [
            "/..",
            "/../etc/passwd",
            "/a/../../x",
            "/%2e%2e/x",
            "/%2E%2E%2Fx",
            "/a/%2e./..//../x",
            "/.%2e/x",
            "//../x",
        ] {
            assert_eq!(refused(p), Status::Forbidden, "{p}");
        }
    }

    #[test]
    fn bad_escapes_and_nul_are_bad_requests() {
        assert_eq!(refused("/a%zz"), Status::BadRequest);
        assert_eq!(refused("/a%2"), Status::BadRequest);
        assert_eq!(refused("/a%00b"), Status::BadRequest);
    }

    #[test]
    fn a_trailing_slash_asks_for_a_directory() {
        let mut out = Vec::new();
        assert_eq!(resolve(b"/d/", &mut out), Ok(true));
        assert_eq!(resolve(b"/d", &mut out), Ok(false));
    }
}
