//! The files kweb serves: the root directory, and an open-file cache in front of it.
//!
//! A hit costs a hash, a read lock and a reference count; the file's response fields
//! (type, length, `Last-Modified`, `ETag`) are formatted once, when it is opened, and
//! files up to [`MAX_CACHED_BODY`] keep their content in memory, so that their responses
//! go out with the header in one `sendmsg` (several pipelined ones together). Larger files
//! are sent with `sendfile` from the cached descriptor. This is nginx's `open_file_cache`
//! with the content of small files besides: an entry is checked against the file system
//! again when it is older than [`REVALIDATE_NS`] (re-opened; replaced if its inode, size
//! or modification time changed), so an edited file is served fresh within that time.
//!
//! Opening goes through `openat2(RESOLVE_BENEATH)` (see `path`). It is a raw call, so on
//! a uthread a cache miss holds the vcore for the open, a few µs from the dentry cache;
//! the cache keeps that off the steady state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::status::Status;
use crate::sys;

/// Largest file whose content is cached in memory; larger ones go out with `sendfile`,
/// which copies nothing. The bench's `files` case (1 KiB, 64 KiB, 1 MiB) measured the
/// same with 64 KiB (0.79-0.85x nginx, `83ca6f8`) and 16 KiB (0.80-0.83x, `47a969d`),
/// full runs; the smaller bound keeps less memory per cached file.
pub const MAX_CACHED_BODY: u64 = 16 * 1024;
/// Age after which a cache entry is checked against the file system again (1 s).
pub const REVALIDATE_NS: u64 = 1_000_000_000;
/// Entries the cache holds before it starts again from empty (nginx's
/// `open_file_cache max=` is of this order). Each holds a descriptor.
pub const MAX_ENTRIES: usize = 4096;

/// An open file, ready to answer with.
pub struct FileEntry {
    fd: i32,
    /// Its length in bytes.
    pub len: u64,
    /// Its whole content, if at most [`MAX_CACHED_BODY`].
    pub body: Option<Box<[u8]>>,
    /// `Content-Type`, `Content-Length` and `Last-Modified` lines.
    pub fields: Box<[u8]>,
    /// The `ETag` and `Accept-Ranges` lines, then the empty line that ends the head.
    pub tail: Box<[u8]>,
    identity: (u64, u64, i64, i64, u64),
    checked_ns: AtomicU64,
}

impl FileEntry {
    /// Its descriptor (for `sendfile`).
    pub fn fd(&self) -> i32 {
        self.fd
    }
}

impl Drop for FileEntry {
    fn drop(&mut self) {
        sys::close(self.fd);
    }
}

/// The root directory and the cache of files opened beneath it.
pub struct Files {
    root: i32,
    cache: RwLock<HashMap<Box<[u8]>, Arc<FileEntry>>>,
}

impl Drop for Files {
    fn drop(&mut self) {
        sys::close(self.root);
    }
}

/// What `stat` says identifies a file's version: device, inode, mtime, size.
fn identity(st: &libc::stat) -> (u64, u64, i64, i64, u64) {
    (st.st_dev, st.st_ino, st.st_mtime, st.st_mtime_nsec, st.st_size as u64)
}

impl Files {
    /// Opens `root`, which must be a directory.
    pub fn open(root: &std::path::Path) -> std::io::Result<Files> {
        use std::os::unix::ffi::OsStrExt;
        let mut p = root.as_os_str().as_bytes().to_vec();
        p.push(0);
        // SAFETY: `p` is NUL-terminated. `open` is the libc name (parlib-syscalls' under
        // interposition, which offloads it on a uthread).
        let fd =
            unsafe { libc::open(p.as_ptr().cast(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Files { root: fd, cache: RwLock::new(HashMap::new()) })
    }

    /// The file at `rel` (relative, NUL-terminated, from `path::resolve`); a directory
    /// answers with its `index.html`. `dir`: the request ended in `/`.
    pub fn get(&self, rel: &[u8], dir: bool) -> Result<Arc<FileEntry>, Status> {
        let now = sys::coarse_now_ns();
        let cached = self.cache.read().unwrap_or_else(|e| e.into_inner()).get(rel).cloned();
        if let Some(e) = &cached {
            let checked = e.checked_ns.load(Ordering::Relaxed);
            // One caller per period revalidates; the others keep serving the entry.
            if now.wrapping_sub(checked) < REVALIDATE_NS
                || e.checked_ns.compare_exchange(checked, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
            {
                return Ok(cached.expect("just matched"));
            }
        }
        let (fd, st) = match self.open_file(rel, dir) {
            Ok(f) => f,
            // Out of descriptors: the entry we have is better than no answer.
            Err(Status::Unavailable) if cached.is_some() => return Ok(cached.expect("just matched")),
            Err(s) => return Err(s),
        };
        if let Some(e) = cached {
            if e.identity == identity(&st) {
                sys::close(fd);
                return Ok(e);
            }
        }
        let entry = Arc::new(entry(fd, &st, rel, now)?);
        let mut map = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(rel.into(), entry.clone());
        Ok(entry)
    }

    /// Opens `rel` beneath the root (its `index.html` if it is a directory) and stats it.
    fn open_file(&self, rel: &[u8], dir: bool) -> Result<(i32, libc::stat), Status> {
        let fd = sys::open_beneath(self.root, rel).map_err(open_status)?;
        let st = stat_or_close(fd)?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG if !dir => Ok((fd, st)),
            libc::S_IFREG => {
                sys::close(fd);
                Err(Status::NotFound)
            }
            libc::S_IFDIR => {
                let ifd = sys::open_beneath(fd, b"index.html\0");
                sys::close(fd);
                // A directory without an index is not listed.
                let ifd =
                    ifd.map_err(|e| if e == libc::ENOENT { Status::Forbidden } else { open_status(e) })?;
                let st = stat_or_close(ifd)?;
                if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                    sys::close(ifd);
                    return Err(Status::Forbidden);
                }
                Ok((ifd, st))
            }
            _ => {
                sys::close(fd);
                Err(Status::Forbidden)
            }
        }
    }
}

fn stat_or_close(fd: i32) -> Result<libc::stat, Status> {
    sys::fstat(fd).map_err(|_| {
        sys::close(fd);
        Status::InternalError
    })
}

/// The status for an `openat2` failure.
fn open_status(errno: i32) -> Status {
    match errno {
        libc::ENOENT | libc::ENOTDIR => Status::NotFound,
        // EXDEV: the path (or a symbolic link on it) leads out of the root.
        libc::EXDEV | libc::EACCES | libc::EPERM | libc::ELOOP => Status::Forbidden,
        libc::ENAMETOOLONG => Status::UriTooLong,
        // Out of descriptors or memory for now: try again later.
        libc::EMFILE | libc::ENFILE | libc::ENOMEM => Status::Unavailable,
        _ => Status::InternalError,
    }
}

/// Builds the cache entry of open file `fd` (which it takes over).
fn entry(fd: i32, st: &libc::stat, rel: &[u8], now: u64) -> Result<FileEntry, Status> {
    let len = st.st_size as u64;
    let body = if len <= MAX_CACHED_BODY {
        let mut b = vec![0u8; len as usize];
        match sys::pread_full(fd, &mut b, 0) {
            Ok(n) if n == b.len() => Some(b.into_boxed_slice()),
            _ => {
                sys::close(fd);
                return Err(Status::InternalError); // shrank under us, or unreadable
            }
        }
    } else {
        None
    };
    let last_modified = crate::date::format(st.st_mtime);
    let mut fields =
        format!("Content-Type: {}\r\nContent-Length: {len}\r\nLast-Modified: ", content_type(rel))
            .into_bytes();
    fields.extend_from_slice(&last_modified);
    fields.extend_from_slice(b"\r\n");
    let tail = format!("ETag: \"{:x}-{len:x}\"\r\nAccept-Ranges: bytes\r\n\r\n", st.st_mtime).into_bytes();
    Ok(FileEntry {
        fd,
        len,
        body,
        fields: fields.into(),
        tail: tail.into(),
        identity: identity(st),
        checked_ns: AtomicU64::new(now),
    })
}

/// The media type for a file name, by extension; `application/octet-stream` otherwise
/// (nginx's `default_type`).
pub fn content_type(name: &[u8]) -> &'static str {
    let name = name.strip_suffix(&[0]).unwrap_or(name);
    let ext = match name.iter().rposition(|&b| b == b'.') {
        Some(dot) if !name[dot..].contains(&b'/') => &name[dot + 1..],
        _ => return "application/octet-stream",
    };
    let ext = ext.to_ascii_lowercase();
    match &ext[..] {
        b"html" | b"htm" => "text/html",
        b"css" => "text/css",
        b"js" | b"mjs" => "application/javascript",
        b"json" => "application/json",
        b"txt" => "text/plain",
        b"xml" => "text/xml",
        b"svg" => "image/svg+xml",
        b"png" => "image/png",
        b"jpg" | b"jpeg" => "image/jpeg",
        b"gif" => "image/gif",
        b"webp" => "image/webp",
        b"ico" => "image/x-icon",
        b"pdf" => "application/pdf",
        b"wasm" => "application/wasm",
        b"woff2" => "font/woff2",
        b"mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn types_follow_the_extension_case_insensitively() {
        assert_eq!(content_type(b"a/index.HTML\0"), "text/html");
        assert_eq!(content_type(b"x.tar.gz"), "application/octet-stream");
        assert_eq!(content_type(b"dir.d/noext"), "application/octet-stream");
        assert_eq!(content_type(b"s.css"), "text/css");
    }
}
