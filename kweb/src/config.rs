//! kweb's command line.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Which threads serve requests (see `runtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Linux threads.
    Linux,
    /// parlib-upthread threads.
    Upthread,
    /// kweb's own scheduler.
    Custom,
}

impl Variant {
    /// The variant named `s`.
    pub fn parse(s: &str) -> Option<Variant> {
        match s {
            "linux" => Some(Variant::Linux),
            "upthread" => Some(Variant::Upthread),
            "custom" => Some(Variant::Custom),
            _ => None,
        }
    }
}

/// How to run a server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory served.
    pub root: PathBuf,
    /// Address to listen on (default every IPv4 address, as nginx).
    pub bind: IpAddr,
    /// TCP port; 0 picks a free one (printed at start).
    pub port: u16,
    /// Which threads serve.
    pub variant: Variant,
    /// Vcores for the uthread variants (default: every allowed CPU).
    pub vcores: Option<usize>,
    /// Worker threads in all (the custom variant splits them between its vcores).
    pub workers: usize,
    /// Requests served from one connection before it goes to the back of the queue.
    pub burst: usize,
    /// Whether `url_cmd` (`/_kweb/...`) is on.
    pub url_cmd: bool,
    /// How long a connection may wait for its next complete request.
    pub idle_timeout: Duration,
    /// Print nothing but errors.
    pub quiet: bool,
    /// Whether `/work` (`work` module) is on.
    pub work: bool,
    /// Run `/work` handlers as timed calls with this quantum (`handler` module).
    pub quantum: Option<Duration>,
    /// Run time a timed handler may use in all before it is cancelled with a 503.
    pub handler_budget: Duration,
}

/// Usage text.
pub const USAGE: &str = "\
usage: kweb --root DIR [--port 8080] [--bind 0.0.0.0] [--variant linux|upthread|custom]
            [--vcores N] [--workers 100] [--burst 10] [--idle-timeout SECS] [--url-cmd] [--quiet]
            [--work [--quantum-us Q [--handler-budget-ms 10000]]]

Serves the files beneath DIR over HTTP/1.1 (GET and HEAD, keep-alive, pipelining).
  --variant      the threads that serve: Linux threads, upthread, or kweb's own scheduler
  --vcores       vcores for upthread and custom (default: every allowed CPU)
  --workers      worker threads in all (custom: split between its vcores)
  --burst        requests served from a connection before it yields its worker
  --idle-timeout seconds a connection may wait for a complete request (default 75)
  --url-cmd      answer /_kweb/{stats,request_vcores?n=N,yield_vcore,stop} from loopback peers
  --work         answer /work?us=N (or ?n=STEPS) with N us of hashing: for benchmarks only,
                 it lets any client spend the server's CPU
  --quantum-us   run each /work handler as a timed call with this quantum (10 to 10000000
                 us; upthread and custom): a long handler waits behind the queue
  --handler-budget-ms
                 run time a timed handler may use before it gets a 503 (default 10000)
Ctrl-C stops it.";

impl Config {
    /// A configuration serving `root` with the defaults.
    pub fn new(root: impl Into<PathBuf>) -> Config {
        Config {
            root: root.into(),
            bind: IpAddr::from([0, 0, 0, 0]),
            port: 8080,
            variant: Variant::Upthread,
            vcores: None,
            workers: 100,
            burst: 10,
            url_cmd: false,
            idle_timeout: Duration::from_secs(75),
            quiet: false,
            work: false,
            quantum: None,
            handler_budget: Duration::from_secs(10),
        }
    }

    /// Parses command-line arguments (without the program name).
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Config, String> {
        let mut c = Config::new("");
        let mut root = None;
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
            match a.as_str() {
                "--root" => root = Some(PathBuf::from(val("--root")?)),
                "--port" => c.port = number(&val("--port")?, "--port", 0, 65535)? as u16,
                "--bind" => {
                    c.bind = val("--bind")?.parse().map_err(|_| "--bind needs an IP address".to_string())?
                }
                "--variant" => {
                    let v = val("--variant")?;
                    c.variant =
                        Variant::parse(&v).ok_or(format!("--variant {v}: linux, upthread or custom"))?;
                }
                "--vcores" => c.vcores = Some(number(&val("--vcores")?, "--vcores", 1, 1024)?),
                "--workers" => c.workers = number(&val("--workers")?, "--workers", 1, 100_000)?,
                "--burst" => c.burst = number(&val("--burst")?, "--burst", 1, 1_000_000)?,
                "--idle-timeout" => {
                    let v = val("--idle-timeout")?;
                    let s: f64 = v.parse().map_err(|_| format!("--idle-timeout {v}: seconds"))?;
                    if !(0.001..=86_400.0).contains(&s) {
                        return Err(format!("--idle-timeout {v}: between 0.001 and 86400 seconds"));
                    }
                    c.idle_timeout = Duration::from_secs_f64(s);
                }
                "--url-cmd" => c.url_cmd = true,
                "--quiet" => c.quiet = true,
                "--work" => c.work = true,
                "--quantum-us" => {
                    let us = number(&val("--quantum-us")?, "--quantum-us", 10, 10_000_000)?;
                    c.quantum = Some(Duration::from_micros(us as u64));
                }
                "--handler-budget-ms" => {
                    let ms = number(&val("--handler-budget-ms")?, "--handler-budget-ms", 1, 86_400_000)?;
                    c.handler_budget = Duration::from_millis(ms as u64);
                }
                "--help" | "-h" => return Err(String::new()),
                _ => return Err(format!("unknown argument {a}")),
            }
        }
        c.root = root.ok_or("--root DIR is required")?;
        c.check()?;
        Ok(c)
    }

    /// Refuses settings that cannot work together (`run` checks them too, for
    /// configurations built in code).
    pub fn check(&self) -> Result<(), String> {
        if let Some(q) = self.quantum {
            if !self.work {
                return Err("--quantum-us needs --work: /work's handlers are the ones it times".into());
            }
            if self.variant == Variant::Linux {
                return Err("--quantum-us needs --variant upthread or custom: the kernel \
                            time-slices Linux threads itself"
                    .into());
            }
            if q < Duration::from_micros(10) || q > Duration::from_secs(10) {
                return Err(format!("--quantum-us {}: from 10 to 10000000", q.as_micros()));
            }
        }
        if self.handler_budget.is_zero() {
            return Err("--handler-budget-ms: at least 1".into());
        }
        Ok(())
    }
}

/// `s` as a number in `lo..=hi`.
fn number(s: &str, name: &str, lo: usize, hi: usize) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!("{name} {s}: a number from {lo} to {hi}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn arguments_set_their_fields() {
        let c =
            Config::from_args(args("--root /tmp --port 0 --variant custom --vcores 2 --burst 3 --url-cmd"))
                .unwrap();
        assert_eq!((c.port, c.variant, c.vcores, c.burst, c.url_cmd), (0, Variant::Custom, Some(2), 3, true));
        assert_eq!(c.workers, 100);
        let c =
            Config::from_args(args("--root /tmp --work --quantum-us 250 --handler-budget-ms 40")).unwrap();
        assert_eq!(
            (c.work, c.quantum, c.handler_budget),
            (true, Some(Duration::from_micros(250)), Duration::from_millis(40))
        );
    }

    #[test]
    fn bad_arguments_are_refused_with_their_name() {
        for (a, what) in [
            ("--port 8080", "--root"),
            ("--root /tmp --port 70000", "--port"),
            ("--root /tmp --variant green", "--variant"),
            ("--root /tmp --workers 0", "--workers"),
            ("--root /tmp --idle-timeout -1", "--idle-timeout"),
            ("--root /tmp --frobnicate", "--frobnicate"),
            ("--root", "--root"),
            ("--root /tmp --quantum-us 100", "--work"),
            ("--root /tmp --work --quantum-us 100 --variant linux", "--variant"),
            ("--root /tmp --work --quantum-us 5", "--quantum-us"),
            ("--root /tmp --work --handler-budget-ms 0", "--handler-budget-ms"),
        ] {
            let e = Config::from_args(args(a)).expect_err(a);
            assert!(e.contains(what), "{a}: {e}");
        }
    }
}
