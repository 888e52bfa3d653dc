//! A server under test in a child process of its own (`STYLE.md` §6): pinned to one CPU
//! ([`pin_child`]), killed if the bench dies, stopped by a signal when dropped
//! ([`ServerProcess`]). kweb is started that way as this bench binary run again
//! ([`spawn_kweb`]): starting upthread or kweb's own scheduler makes a process a parlib
//! runtime for good, so no two servers may share one, and the bench's own process (the
//! load generator's) must be none. Included by path (`#[path = "common/server.rs"] mod
//! server;`) by the benches that race servers (`kweb`, `hol`).

#![allow(dead_code)] // each bench uses a different subset

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kweb::config::Config;

/// The environment variable that makes a bench binary a kweb server (see
/// [`run_kweb_if_asked`]).
const SERVER_ENV: &str = "KWEB_BENCH_SERVER";

/// What a kweb server prints on its stdout once it listens, before its port.
const PORT_LINE: &str = "kweb-bench-port ";

/// A server that has not answered this long after its start has failed to start.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A server that has not exited this long after its stop signal is killed (and the bench
/// says so: kweb stops in milliseconds).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The CPUs this process may use, in order (`kweb::load::allowed_cpus`; just CPU 0 if
/// the affinity cannot be read).
pub fn allowed_cpus() -> Vec<usize> {
    kweb::load::allowed_cpus().unwrap_or_else(|_| vec![0])
}

/// Makes `cmd`'s process run on `cpu` only, and die with this one (a server left behind
/// would hold its CPU and its port). `PR_SET_PDEATHSIG` fires when the thread that
/// spawned the child ends, so every child is spawned from `main`'s thread.
pub fn pin_child(cmd: &mut Command, cpu: usize) {
    // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET adds one CPU to our local.
    let set = unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    };
    // SAFETY: the closure runs in the forked child before `exec`, where only
    // async-signal-safe calls are allowed: it makes two system calls on values it owns
    // (the set was built before the fork) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A server process on 127.0.0.1. Dropping it stops the server: its stop signal, then
/// SIGKILL if it has not exited after [`STOP_TIMEOUT`].
pub struct ServerProcess {
    /// How messages name it, e.g. `kweb bench: the linux server`.
    pub label: String,
    /// The process.
    pub child: Child,
    /// Where it listens, on 127.0.0.1.
    pub port: u16,
    /// What stops it cleanly: SIGINT for kweb, SIGTERM (fast shutdown) for nginx.
    stop_signal: i32,
    /// A kweb server's stdout, kept open until it has exited.
    _stdout: Option<BufReader<ChildStdout>>,
}

impl ServerProcess {
    /// The process `child`, listening on `port`, stopped by `stop_signal`.
    pub fn new(label: String, child: Child, port: u16, stop_signal: i32) -> ServerProcess {
        ServerProcess { label, child, port, stop_signal, _stdout: None }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How it ended, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let label = &self.label;
        if let Ok(Some(status)) = self.child.try_wait() {
            eprintln!("{label} had exited before its stop: {status}");
            return;
        }
        // SAFETY: kill sends a signal to our own child, which has not been reaped (it had
        // not exited just above), so its pid is still its own.
        unsafe { libc::kill(self.pid() as libc::pid_t, self.stop_signal) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        eprintln!("{label} exited with {status} when stopped");
                    }
                    return;
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                _ => break,
            }
        }
        eprintln!("{label} did not stop within {} s of its stop signal: killing it", STOP_TIMEOUT.as_secs());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a kweb server: this binary again, pinned to `cpu`, with the environment
/// `envs`, running kweb with the command-line arguments `args` (`--root` and the rest)
/// and `--bind 127.0.0.1 --port 0 --quiet`. Returns once it has printed its port; panics,
/// naming it by `label`, if it does not within [`START_TIMEOUT`].
pub fn spawn_kweb(label: String, args: &[String], envs: &[(&str, String)], cpu: usize) -> ServerProcess {
    let exe = std::env::current_exe().expect("the path of this bench binary");
    let mut cmd = Command::new(exe);
    cmd.env(SERVER_ENV, "1")
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    pin_child(&mut cmd, cpu);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{label}: cannot start: {e}"));
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    // The first line, read on a helper thread so that a server that hangs before it
    // listens cannot hang the bench.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut stdout = stdout;
        let mut line = String::new();
        let got = stdout.read_line(&mut line);
        let _ = tx.send((stdout, line, got));
    });
    let fail = |child: &mut Child, why: String| -> ! {
        let _ = child.kill();
        let status = child.wait().map_or_else(|e| e.to_string(), |s| s.to_string());
        panic!("{label} did not start: {why} (exit: {status})")
    };
    let (stdout, line, got) = match rx.recv_timeout(START_TIMEOUT) {
        Ok(x) => x,
        Err(_) => fail(&mut child, format!("no port within {} s", START_TIMEOUT.as_secs())),
    };
    let port = match (got, line.trim().strip_prefix(PORT_LINE).map(str::parse::<u16>)) {
        (Ok(_), Some(Ok(port))) => port,
        _ => fail(&mut child, format!("it printed {line:?} instead of its port")),
    };
    ServerProcess { label, child, port, stop_signal: libc::SIGINT, _stdout: Some(stdout) }
}

/// If [`spawn_kweb`] started this process, runs the kweb server it asked for and exits
/// (1 if kweb could not start); otherwise returns at once. Call it first in `main`.
pub fn run_kweb_if_asked() {
    if std::env::var_os(SERVER_ENV).is_none() {
        return;
    }
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    args.extend(["--bind", "127.0.0.1", "--port", "0", "--quiet"].map(String::from));
    let config = match Config::from_args(args.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench kweb server: {e} (arguments {args:?})");
            std::process::exit(2);
        }
    };
    match kweb::run(config, |port| println!("{PORT_LINE}{port}")) {
        Ok(_) => std::process::exit(0),
        Err(e) => {
            eprintln!("bench kweb server ({args:?}): {e}");
            std::process::exit(1);
        }
    }
}

/// The whole response of a server on `port` to `GET path` on a connection of its own
/// (`Connection: close`; each step bounded by [`START_TIMEOUT`]).
pub fn get(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), START_TIMEOUT)?;
    s.set_read_timeout(Some(START_TIMEOUT))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    Ok(answer)
}

/// Whether a server on `port` answers `GET path` with 200.
pub fn answers(port: u16, path: &str) -> bool {
    get(port, path).is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
}
