//! What kweb's integration tests share: a document root in a temporary directory, a
//! `kweb` server in a child process, and a small HTTP/1.1 client that reads responses
//! framed by `Content-Length` and turns every hang into a failure message.
//!
//! Each test runs in its own child process under a watchdog (`parlib_testkit::isolated!`,
//! or [`variant_tests!`] for one test per variant). The server is a grandchild: it dies
//! with the test process (`PR_SET_PDEATHSIG`), so a test the watchdog kills leaves no
//! server behind. All traffic is to 127.0.0.1.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Read and write timeout of every client socket: far above what any response needs on
/// loopback, so reaching it means the server hangs.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to print its `listening` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGINT or `url_cmd stop`.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// One `#[test]` per variant, in a module named after the behaviour: `$check(variant)`
/// runs in its own child process under a watchdog of `$secs` seconds.
///
/// ```ignore
/// fn pipelined_gets_come_back_in_order(variant: &str) { ... }
/// variant_tests!(pipelined_gets_come_back_in_order, 30);                 // all three
/// variant_tests!(slow_clients_hold_no_worker, 30, [upthread, custom]);  // some
/// variant_tests!(a_known_bug, 30, [linux, upthread, custom], ignore = "the reason");
/// ```
#[macro_export]
macro_rules! variant_tests {
    ($check:ident, $secs:expr) => {
        $crate::variant_tests!($check, $secs, [linux, upthread, custom]);
    };
    ($check:ident, $secs:expr, [$($variant:ident),+]) => {
        mod $check {
            $(
                #[test]
                fn $variant() {
                    parlib_testkit::isolated!(std::time::Duration::from_secs($secs), {
                        super::$check(stringify!($variant))
                    });
                }
            )+
        }
    };
    ($check:ident, $secs:expr, [$($variant:ident),+], ignore = $reason:literal) => {
        mod $check {
            $(
                #[test]
                #[ignore = $reason]
                fn $variant() {
                    parlib_testkit::isolated!(std::time::Duration::from_secs($secs), {
                        super::$check(stringify!($variant))
                    });
                }
            )+
        }
    };
}

// ---------------------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------------------

/// A directory under `std::env::temp_dir()` with a name no other test uses; removed with
/// everything in it when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A new empty directory whose name contains `tag`.
    pub fn new(tag: &str) -> TempDir {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name =
            format!("kweb-test-{tag}-{}-{nanos}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` to `rel` beneath the directory (creating directories on the way);
    /// returns its path.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path.join(rel);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        }
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `len` bytes of seeded random content (different seeds, different files).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut b = vec![0u8; len];
    parlib_testkit::fill_pattern(&mut b, seed, len as u64);
    b
}

// ---------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------

/// A `kweb` process serving a root on 127.0.0.1 on a port of its choosing. Dropping it
/// kills the process; [`Server::stop`] stops it as Ctrl-C does and checks that it exits
/// cleanly.
pub struct Server {
    child: Child,
    port: u16,
    variant: String,
    /// Collects what the server prints after its `listening` line.
    stdout: Option<JoinHandle<String>>,
}

impl Server {
    /// Starts `kweb --root root --port 0 --bind 127.0.0.1 --variant variant` with
    /// `extra` arguments (and `--vcores 1` for the uthread variants unless `extra` says
    /// otherwise: two vCPUs are shared by every test running at once), and waits until it
    /// listens.
    pub fn start(variant: &str, root: &Path, extra: &[&str]) -> Server {
        Server::launch(variant, root, extra, None)
    }

    /// As [`Server::start`], with the server's soft and hard `RLIMIT_NOFILE` set to
    /// `fds` (so it cannot raise it).
    pub fn start_with_fd_limit(variant: &str, root: &Path, extra: &[&str], fds: libc::rlim_t) -> Server {
        Server::launch(variant, root, extra, Some(fds))
    }

    fn launch(variant: &str, root: &Path, extra: &[&str], fd_limit: Option<libc::rlim_t>) -> Server {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kweb"));
        cmd.arg("--root").arg(root).args(["--port", "0", "--bind", "127.0.0.1", "--variant", variant]);
        if variant != "linux" && !extra.contains(&"--vcores") {
            cmd.args(["--vcores", "1"]);
        }
        cmd.args(extra).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        // SAFETY: `getpid` is async-signal-safe.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the closure makes only async-signal-safe calls (prctl, getppid,
        // setrlimit, _exit), as `pre_exec` requires.
        unsafe {
            cmd.pre_exec(move || {
                // Die with the test process, even when its watchdog kills it.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                if libc::getppid() != parent {
                    libc::_exit(1); // the test process is already gone
                }
                if let Some(n) = fd_limit {
                    let r = libc::rlimit { rlim_cur: n, rlim_max: n };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn kweb");
        let out = child.stdout.take().expect("piped stdout");
        // A thread reads stdout: the first line comes back through the channel, the rest
        // is kept (the server must never find its stdout closed: it would fail to print).
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = BufReader::new(out);
            let mut first = String::new();
            let _ = lines.read_line(&mut first);
            let _ = tx.send(first);
            let mut rest = String::new();
            let _ = lines.read_to_string(&mut rest);
            rest
        });
        let mut server = Server { child, port: 0, variant: variant.to_string(), stdout: Some(reader) };
        let first = match rx.recv_timeout(START_TIMEOUT) {
            Ok(l) => l,
            Err(_) => panic!("kweb --variant {variant} printed nothing within {START_TIMEOUT:?}"),
        };
        server.port = parse_listening(&first).unwrap_or_else(|| {
            let status = server.child.try_wait().ok().flatten();
            panic!("kweb --variant {variant} did not start: first line {first:?}, exit status {status:?}")
        });
        server
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// 127.0.0.1 and its port.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Its variant.
    pub fn variant(&self) -> &str {
        &self.variant
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait for kweb")
    }

    /// Stops it with SIGINT, as Ctrl-C does, and checks that it exits successfully within
    /// [`STOP_TIMEOUT`] and says so. Returns what it printed after its `listening` line.
    pub fn stop(self) -> String {
        self.stop_with(libc::SIGINT)
    }

    /// Stops it with `signal` (SIGINT or SIGTERM) and checks that it exits successfully
    /// within [`STOP_TIMEOUT`] and says so. Returns what it printed after its `listening`
    /// line.
    pub fn stop_with(mut self, signal: libc::c_int) -> String {
        assert_eq!(self.exited(), None, "kweb ({}) exited before it was stopped", self.variant);
        // SAFETY: signalling our own child, which has not been waited for, so its pid is
        // still its own.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        self.expect_clean_exit(&format!("after signal {signal}"))
    }

    /// Waits (at most [`STOP_TIMEOUT`]) for it to exit, and checks that it exited
    /// successfully and printed its summary; `why` says what should have stopped it.
    /// Returns what it printed after its `listening` line.
    pub fn expect_clean_exit(&mut self, why: &str) -> String {
        let status = self.wait_exit(STOP_TIMEOUT, why);
        let out = self.stdout.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        assert!(status.success(), "kweb ({}) {why}: exit status {status}; stdout: {out:?}", self.variant);
        assert!(
            out.contains("kweb: stopped after"),
            "kweb ({}) {why}: no summary; stdout: {out:?}",
            self.variant
        );
        out
    }

    /// Waits for it to exit, at most `within`; kills it and fails if it does not.
    fn wait_exit(&mut self, within: Duration, why: &str) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.exited() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("kweb ({}) did not exit within {within:?} {why}: killed", self.variant);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The port in `kweb: listening on 127.0.0.1:PORT, variant ...`.
fn parse_listening(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("kweb: listening on 127.0.0.1:")?;
    rest[..rest.find(',')?].parse().ok()
}

/// Raises this process's soft `RLIMIT_NOFILE` to at least `n` (up to the hard limit);
/// returns the new soft limit.
pub fn raise_fd_limit(n: libc::rlim_t) -> libc::rlim_t {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `r` is valid for reads and writes during both calls.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut r), 0, "getrlimit");
        if r.rlim_cur < n {
            r.rlim_cur = n.min(r.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        }
    }
    r.rlim_cur
}

// ---------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------

/// A GET request for `path` on a keep-alive connection.
pub fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: kweb-test\r\n\r\n")
}

/// A HEAD request for `path` on a keep-alive connection.
pub fn head_request(path: &str) -> String {
    format!("HEAD {path} HTTP/1.1\r\nHost: kweb-test\r\n\r\n")
}

/// A response, as received.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The head, from the status line to the empty line included.
    pub head: Vec<u8>,
    /// The header fields, in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (empty for a response to HEAD).
    pub body: Vec<u8>,
}

impl Response {
    /// The value of the first header field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The `Content-Length` value.
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length").and_then(|v| v.parse().ok())
    }

    /// Whether the server says it closes the connection after this response.
    pub fn closes(&self) -> bool {
        self.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Where `needle` first occurs in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses a response head (`head` ends with the empty line).
pub fn parse_head(head: &[u8]) -> Result<(u16, Vec<(String, String)>), String> {
    let text = std::str::from_utf8(head).map_err(|_| format!("a head that is not UTF-8: {head:?}"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let code = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse().ok())
        .filter(|_| status_line.as_bytes().get(12) == Some(&b' '))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for l in lines.take_while(|l| !l.is_empty()) {
        let (n, v) = l.split_once(':').ok_or_else(|| format!("bad header line {l:?}"))?;
        headers.push((n.to_string(), v.trim().to_string()));
    }
    Ok((code, headers))
}

/// A connection to a server, with the read and write timeouts [`IO_TIMEOUT`] and a
/// buffer of what it received and has not parsed yet.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to 127.0.0.1:`port`.
    pub fn connect(port: u16) -> Client {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Client::from_stream(stream)
    }

    /// Wraps a connected stream, setting its timeouts.
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("set_read_timeout");
        stream.set_write_timeout(Some(IO_TIMEOUT)).expect("set_write_timeout");
        stream.set_nodelay(true).expect("set_nodelay");
        Client { stream, buf: Vec::new() }
    }

    /// The socket.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends all of `bytes`.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).unwrap_or_else(|e| panic!("send: {e}"));
    }

    /// Closes the sending side: the server reads end of stream after what was sent.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads more into the buffer; `Ok(0)` at end of stream.
    fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// A whole response at the front of what was received, taken off it; `None` if what
    /// was received does not hold one yet. `to_head`: it answers a HEAD (no body).
    fn take_buffered(&mut self, to_head: bool) -> Result<Option<Response>, String> {
        let Some(head_len) = find(&self.buf, b"\r\n\r\n").map(|i| i + 4) else {
            if self.buf.len() > 64 * 1024 {
                return Err(format!("no end of head in 64 KiB: {:?}", lossy(&self.buf)));
            }
            return Ok(None);
        };
        let head = self.buf[..head_len].to_vec();
        let (status, headers) = parse_head(&head)?;
        let mut r = Response { status, head, headers, body: Vec::new() };
        let len = match r.content_length() {
            Some(n) => n as usize,
            None => return Err(format!("no Content-Length in {:?}", lossy(&r.head))),
        };
        let body_len = if to_head { 0 } else { len };
        if self.buf.len() < head_len + body_len {
            return Ok(None);
        }
        r.body = self.buf[head_len..head_len + body_len].to_vec();
        self.buf.drain(..head_len + body_len);
        Ok(Some(r))
    }

    /// The next response (`to_head`: the request was HEAD, so no body follows), `None`
    /// if the server closed the connection before sending a byte of it.
    pub fn try_response(&mut self, to_head: bool) -> Result<Option<Response>, String> {
        loop {
            if let Some(r) = self.take_buffered(to_head)? {
                return Ok(Some(r));
            }
            match self.fill() {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => return Err(format!("end of stream inside a response: {:?}", lossy(&self.buf))),
                Ok(_) => {}
                Err(e) => return Err(io_failure(e, "a response")),
            }
        }
    }

    /// The next response to a GET if it has arrived whole, without waiting for it.
    /// Fails the test if the connection was closed without one.
    pub fn poll_response(&mut self) -> Option<Response> {
        self.stream.set_nonblocking(true).expect("set_nonblocking");
        let got = loop {
            match self.fill() {
                Ok(0) => panic!("the server closed a connection without answering: {:?}", lossy(&self.buf)),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break self.take_buffered(false),
                Err(e) => panic!("waiting for a response: {e}"),
            }
        };
        self.stream.set_nonblocking(false).expect("set_nonblocking");
        got.unwrap_or_else(|e| panic!("reading a response: {e}"))
    }

    /// The next response to a GET; fails the test if there is none.
    pub fn response(&mut self) -> Response {
        match self.try_response(false) {
            Ok(Some(r)) => r,
            Ok(None) => panic!("the server closed the connection instead of answering"),
            Err(e) => panic!("reading a response: {e}"),
        }
    }

    /// The next response to a HEAD; fails the test if there is none.
    pub fn head_response(&mut self) -> Response {
        match self.try_response(true) {
            Ok(Some(r)) => r,
            Ok(None) => panic!("the server closed the connection instead of answering a HEAD"),
            Err(e) => panic!("reading a response to HEAD: {e}"),
        }
    }

    /// Everything still to come until the server closes the connection cleanly (end of
    /// stream), and what was buffered before; an error if the connection is reset or the
    /// read timeout expires.
    pub fn read_to_close(&mut self) -> Result<Vec<u8>, String> {
        loop {
            match self.fill() {
                Ok(0) => return Ok(std::mem::take(&mut self.buf)),
                Ok(_) => {}
                Err(e) => return Err(io_failure(e, "the server to close the connection")),
            }
        }
    }
}

/// A failed read, said plainly: a timeout is a server that hangs.
fn io_failure(e: std::io::Error, waiting_for: &str) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("no progress within {IO_TIMEOUT:?} waiting for {waiting_for} (the server hangs?)")
        }
        _ => format!("{e} while waiting for {waiting_for}"),
    }
}

/// Bytes for a message.
pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned()
}

/// GETs `path` on a new connection; the response.
pub fn get(port: u16, path: &str) -> Response {
    let mut c = Client::connect(port);
    c.send(get_request(path));
    c.response()
}

/// The server's `url_cmd stats` (it must run with `--url-cmd`), as text.
pub fn stats(port: u16) -> String {
    let r = get(port, "/_kweb/stats");
    assert_eq!(r.status, 200, "stats: {}", lossy(&r.body));
    String::from_utf8(r.body).expect("stats are text")
}

/// The value of counter `name` in `stats` text.
pub fn stat(stats: &str, name: &str) -> u64 {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in stats:\n{stats}"))
}

/// Polls `cond` every 20 ms until it holds; fails with `what` after `within`.
pub fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
