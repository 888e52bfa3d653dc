//! `kweb-load`: the command-line face of [`kweb::load`], a closed-loop HTTP/1.1 load
//! generator for servers on this machine.
//!
//! ```text
//! kweb-load --connections 200 --in-flight 8 --duration 10 --warmup 1 --cpus 0 \
//!     http://127.0.0.1:8080/small.html http://127.0.0.1:8080/large.html
//! ```
//!
//! Exit status: 0 when every request succeeded, 1 when some failed, 2 when the
//! arguments are refused or the run could not be set up.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use kweb::load::{run, Spec};

const USAGE: &str = "\
usage: kweb-load [options] URL...

Loads an HTTP/1.1 server on this machine from a fixed number of connections, each
keeping a fixed number of requests outstanding (a closed loop), checks every response
against a probe of its URL, and prints throughput and latency.

URLs are http://HOST[:PORT]/path with HOST a numeric loopback address (127.x.y.z or
[::1]); all must name the same HOST:PORT. Connection i sends them in turn from URL i.

options:
  --connections N   load connections (default 100)
  --in-flight N     requests outstanding per connection: pipelining depth (default 1)
  --requests N      each connection stops after N responses (then --duration is off
                    unless given too)
  --duration SECS   stop sending after SECS, then wait for outstanding responses
                    (default 5)
  --warmup SECS     do not count responses completed in the first SECS (default 0)
  --threads N       load threads, each with its own epoll (default 1)
  --cpus LIST       pin load thread k to CPU LIST[k % len], e.g. 0 or 2,3
  --idle N          extra connections held open, idle, during the run (default 0)
  --head            send HEAD instead of GET
  --timeout SECS    stop with errors if a request is outstanding this long or the run
                    overruns duration by this much (default 30)
  --help            print this and exit

exit status: 0 no errors, 1 some requests failed, 2 bad arguments or set-up failure";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let spec = match parse_args(&args) {
        Ok(Some(spec)) => spec,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("kweb-load: {e}\n(kweb-load --help for usage)");
            return ExitCode::from(2);
        }
    };
    println!("{}", describe(&spec));
    match run(&spec) {
        Ok(report) => {
            println!("{report}");
            if report.errors > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("kweb-load: {e}");
            ExitCode::from(2)
        }
    }
}

/// One line saying what the run will do.
fn describe(spec: &Spec) -> String {
    let mut s = format!(
        "kweb-load: {} {} URL(s) on {}, {} connection(s) x {} in flight, {} thread(s)",
        if spec.head { "HEAD" } else { "GET" },
        spec.urls.len(),
        spec.addr,
        spec.connections,
        spec.in_flight,
        spec.threads
    );
    if let Some(n) = spec.requests_per_conn {
        s += &format!(", {n} request(s) per connection");
    }
    if let Some(d) = spec.duration {
        s += &format!(", for {:.1} s", d.as_secs_f64());
    }
    if !spec.warmup.is_zero() {
        s += &format!(" after {:.1} s of warm-up", spec.warmup.as_secs_f64());
    }
    if spec.idle_connections > 0 {
        s += &format!(", {} idle connection(s)", spec.idle_connections);
    }
    s
}

/// The spec the arguments describe; `None` for `--help`.
fn parse_args(args: &[String]) -> Result<Option<Spec>, String> {
    let mut urls = Vec::new();
    let mut opts: Vec<(String, String)> = Vec::new();
    let mut head = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--help" || a == "-h" {
            return Ok(None);
        } else if a == "--head" {
            head = true;
        } else if let Some(name) = a.strip_prefix("--") {
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_owned(), v.to_owned()),
                None => (name.to_owned(), it.next().ok_or(format!("--{name} needs a value"))?.clone()),
            };
            opts.push((name, value));
        } else if a.starts_with('-') {
            return Err(format!("unknown option {a}"));
        } else {
            urls.push(parse_url(a)?);
        }
    }
    let Some(&(addr, _)) = urls.first() else {
        return Err("give at least one URL".into());
    };
    if let Some((other, _)) = urls.iter().find(|(a, _)| *a != addr) {
        return Err(format!("all URLs must name the same server: {addr} and {other}"));
    }
    let mut spec = Spec::new(addr, urls.into_iter().map(|(_, path)| path).collect());
    spec.head = head;
    let mut duration_given = false;
    for (name, v) in &opts {
        match name.as_str() {
            "connections" => spec.connections = number(name, v)?,
            "in-flight" => spec.in_flight = number(name, v)?,
            "requests" => spec.requests_per_conn = Some(number(name, v)?),
            "duration" => {
                spec.duration = Some(seconds(name, v)?);
                duration_given = true;
            }
            "warmup" => spec.warmup = seconds(name, v)?,
            "threads" => spec.threads = number(name, v)?,
            "cpus" => spec.cpus = v.split(',').map(|c| number(name, c.trim())).collect::<Result<_, _>>()?,
            "idle" => spec.idle_connections = number(name, v)?,
            "timeout" => spec.timeout = seconds(name, v)?,
            _ => return Err(format!("unknown option --{name}")),
        }
    }
    if spec.requests_per_conn.is_some() && !duration_given {
        spec.duration = None;
    }
    Ok(Some(spec))
}

fn number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("--{name}: {v:?} is not a valid number"))
}

fn seconds(name: &str, v: &str) -> Result<Duration, String> {
    let s: f64 = number(name, v)?;
    Duration::try_from_secs_f64(s).map_err(|_| format!("--{name}: {v:?} is not a valid number of seconds"))
}

/// `http://HOST[:PORT]/path` with a numeric loopback HOST: the address and the path.
fn parse_url(url: &str) -> Result<(SocketAddr, String), String> {
    let rest =
        url.strip_prefix("http://").ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let not_numeric = || format!("{url}: the host must be a numeric loopback address (127.0.0.1 or [::1])");
    let addr = match authority.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            let host = authority.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(authority);
            SocketAddr::new(host.parse::<IpAddr>().map_err(|_| not_numeric())?, 80)
        }
    };
    let loopback = match addr.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => ip.is_loopback(),
    };
    if !loopback {
        return Err(format!(
            "{url}: refusing a non-loopback host; kweb-load only loads servers on this machine"
        ));
    }
    let path = path.split('#').next().unwrap_or("/");
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("{url}: the path must not hold spaces or control characters"));
    }
    Ok((addr, path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_numeric_loopback_http() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080/a.html").unwrap(),
            ("127.0.0.1:8080".parse().unwrap(), "/a.html".into())
        );
        assert_eq!(parse_url("http://[::1]").unwrap(), ("[::1]:80".parse().unwrap(), "/".into()));
        for bad in [
            "https://127.0.0.1/",
            "http://localhost:8080/",
            "http://10.0.0.1/",
            "http://0.0.0.0:80/",
            "ftp://x",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn requests_without_duration_run_until_the_count() {
        let args: Vec<String> = ["--requests", "10", "--cpus=0,1", "http://127.0.0.1:1/a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let spec = parse_args(&args).unwrap().unwrap();
        assert_eq!((spec.requests_per_conn, spec.duration, spec.cpus), (Some(10), None, vec![0, 1]));
    }
}
