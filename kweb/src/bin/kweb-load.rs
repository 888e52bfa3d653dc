//! `kweb-load`: the command-line face of [`kweb::load`]: a closed-loop HTTP/1.1 load
//! generator ([`kweb::load::run`]) and, with `--rate`, an open-loop one
//! ([`kweb::load::open::run`]), for servers on this machine.
//!
//! ```text
//! kweb-load --connections 200 --in-flight 8 --duration 10 --warmup 1 --cpus 0 \
//!     http://127.0.0.1:8080/small.html http://127.0.0.1:8080/large.html
//! kweb-load --rate 5000 --connections 500 --duration 10 --warmup 1 --cpus 0 \
//!     'http://127.0.0.1:8080/work?us=50#99' 'http://127.0.0.1:8080/work?us=5000#1'
//! ```
//!
//! Exit status: 0 when every request succeeded, 1 when some failed, 2 when the
//! arguments are refused or the run could not be set up.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use kweb::load::{self, open, Spec};

const USAGE: &str = "\
usage: kweb-load [options] URL...
       kweb-load --rate R [options] URL[#W]...

Loads an HTTP/1.1 server on this machine, checks every response against a probe of its
URL, and prints throughput and latency.

Closed loop (the default): a fixed number of connections, each keeping a fixed number
of requests outstanding. Connection i sends the URLs in turn from URL i.

Open loop (--rate): R requests a second arrive as a Poisson process, each for a URL
drawn by weight (URL#W: weight W, default 1), and go out one at a time per connection
of the pool, waiting for an idle one if need be. Latency counts from each request's
scheduled arrival. Bodies of up to 4 KiB must also match the probe's byte for byte.

URLs are http://HOST[:PORT]/path with HOST a numeric loopback address (127.x.y.z or
[::1]); all must name the same HOST:PORT.

options, both loops:
  --connections N   load connections; the open loop's pool (default 100)
  --duration SECS   closed: stop sending after SECS, then wait for outstanding
                    responses; open: schedule arrivals over SECS, then wait for their
                    answers (default 5)
  --warmup SECS     do not count responses completed (closed) or requests scheduled
                    (open) in the first SECS (default 0)
  --threads N       load threads, each with its own epoll (default 1)
  --cpus LIST       pin load thread k to CPU LIST[k % len], e.g. 0 or 2,3
  --timeout SECS    stop with errors if a request is unanswered this long or the run
                    overruns duration by this much (default 30)
closed loop only:
  --in-flight N     requests outstanding per connection: pipelining depth (default 1)
  --requests N      each connection stops after N responses (then --duration is off
                    unless given too)
  --idle N          extra connections held open, idle, during the run (default 0)
  --head            send HEAD instead of GET
open loop only:
  --rate R          requests per second, all threads together: switches to the open loop
  --seed N          seeds the arrival times and URL draws (default 1)
  --busy-poll       never sleep between events: no CPU wake-up delays a send or an
                    answer, but each load thread keeps its CPU busy
  --help            print this and exit

exit status: 0 no errors, 1 some requests failed, 2 bad arguments or set-up failure";

/// Which loop the arguments ask for.
enum Load {
    Closed(Spec),
    Open(open::Spec),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let load = match parse_args(&args) {
        Ok(Some(load)) => load,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("kweb-load: {e}\n(kweb-load --help for usage)");
            return ExitCode::from(2);
        }
    };
    let outcome = match &load {
        Load::Closed(spec) => {
            println!("{}", describe(spec));
            load::run(spec).map(|r| (r.errors, r.to_string()))
        }
        Load::Open(spec) => {
            println!("{}", describe_open(spec));
            open::run(spec).map(|r| (r.errors, r.to_string()))
        }
    };
    match outcome {
        Ok((errors, report)) => {
            println!("{report}");
            if errors > 0 {
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

/// One line saying what a closed-loop run will do.
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

/// One line saying what an open-loop run will do.
fn describe_open(spec: &open::Spec) -> String {
    let total: f64 = spec.classes.iter().map(|c| c.weight).sum();
    let mix: Vec<String> =
        spec.classes.iter().map(|c| format!("{} {:.2}%", c.url, 100.0 * c.weight / total)).collect();
    let mut s = format!(
        "kweb-load: open loop, {} requests/s on {} ({}), a pool of {} connection(s), {} thread(s), for {:.1} s",
        spec.rate,
        spec.addr,
        mix.join(", "),
        spec.connections,
        spec.threads,
        spec.duration.as_secs_f64()
    );
    if !spec.warmup.is_zero() {
        s += &format!(" after {:.1} s of warm-up", spec.warmup.as_secs_f64());
    }
    if spec.busy_poll {
        s += ", busy-polling";
    }
    s
}

/// The load the arguments describe; `None` for `--help`.
fn parse_args(args: &[String]) -> Result<Option<Load>, String> {
    let mut urls = Vec::new();
    let mut opts: Vec<(String, String)> = Vec::new();
    let (mut head, mut busy_poll) = (false, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--help" || a == "-h" {
            return Ok(None);
        } else if a == "--head" {
            head = true;
        } else if a == "--busy-poll" {
            busy_poll = true;
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
    let Some(&(addr, _, _)) = urls.first() else {
        return Err("give at least one URL".into());
    };
    if let Some((other, _, _)) = urls.iter().find(|(a, _, _)| *a != addr) {
        return Err(format!("all URLs must name the same server: {addr} and {other}"));
    }
    let open = opts.iter().any(|(name, _)| name == "rate");
    let only = |names: &[&str], which: &str| match opts.iter().find(|(n, _)| names.contains(&n.as_str())) {
        Some((n, _)) => Err(format!("--{n} is for the {which} loop only")),
        None => Ok(()),
    };
    if open {
        only(&["in-flight", "requests", "idle"], "closed")?;
        if head {
            return Err("--head is for the closed loop only (the open loop sends GET)".into());
        }
    } else {
        only(&["seed"], "open")?;
        if busy_poll {
            return Err("--busy-poll is for the open loop only".into());
        }
        if let Some((_, path, _)) = urls.iter().find(|(_, _, w)| w.is_some()) {
            return Err(format!("{path}: a #weight is for the open loop only (give --rate)"));
        }
    }
    // Every option but --rate and --seed goes to the closed loop's spec; the open loop's
    // takes the ones it shares from there.
    let mut spec = Spec::new(addr, urls.iter().map(|(_, path, _)| path.clone()).collect());
    spec.head = head;
    let (mut rate, mut seed) = (0.0, None);
    let mut duration_given = false;
    for (name, v) in &opts {
        match name.as_str() {
            "rate" => rate = number(name, v)?,
            "seed" => seed = Some(number(name, v)?),
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
    if !open {
        if spec.requests_per_conn.is_some() && !duration_given {
            spec.duration = None;
        }
        return Ok(Some(Load::Closed(spec)));
    }
    let classes =
        urls.into_iter().map(|(_, path, weight)| open::Class::new(path, weight.unwrap_or(1.0))).collect();
    let mut o = open::Spec::new(addr, rate, classes);
    o.connections = spec.connections;
    o.duration = spec.duration.unwrap_or(o.duration);
    o.warmup = spec.warmup;
    o.threads = spec.threads;
    o.cpus = spec.cpus;
    o.timeout = spec.timeout;
    o.seed = seed.unwrap_or(o.seed);
    o.busy_poll = busy_poll;
    Ok(Some(Load::Open(o)))
}

fn number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("--{name}: {v:?} is not a valid number"))
}

fn seconds(name: &str, v: &str) -> Result<Duration, String> {
    let s: f64 = number(name, v)?;
    Duration::try_from_secs_f64(s).map_err(|_| format!("--{name}: {v:?} is not a valid number of seconds"))
}

/// `http://HOST[:PORT]/path[#W]` with a numeric loopback HOST: the address, the path and
/// the weight `W` if given (a finite number above 0).
fn parse_url(arg: &str) -> Result<(SocketAddr, String, Option<f64>), String> {
    let (url, weight) = match arg.split_once('#') {
        Some((url, w)) => match w.parse::<f64>() {
            Ok(w) if w.is_finite() && w > 0.0 => (url, Some(w)),
            _ => return Err(format!("{arg}: the weight after # must be a number above 0")),
        },
        None => (arg, None),
    };
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
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("{url}: the path must not hold spaces or control characters"));
    }
    Ok((addr, path.to_owned(), weight))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn urls_must_be_numeric_loopback_http() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080/a.html").unwrap(),
            ("127.0.0.1:8080".parse().unwrap(), "/a.html".into(), None)
        );
        assert_eq!(parse_url("http://[::1]").unwrap(), ("[::1]:80".parse().unwrap(), "/".into(), None));
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
        let a = args(&["--requests", "10", "--cpus=0,1", "http://127.0.0.1:1/a"]);
        let Some(Load::Closed(spec)) = parse_args(&a).unwrap() else { panic!("a closed-loop spec") };
        assert_eq!((spec.requests_per_conn, spec.duration, spec.cpus), (Some(10), None, vec![0, 1]));
    }

    #[test]
    fn rate_switches_to_the_open_loop_and_weights_follow_a_hash() {
        let a = args(&[
            "--rate=2500.5",
            "--connections",
            "300",
            "--duration",
            "2",
            "--seed",
            "9",
            "http://127.0.0.1:8080/work?us=50#99.5",
            "http://127.0.0.1:8080/work?us=5000#0.5",
            "http://127.0.0.1:8080/x",
        ]);
        let Some(Load::Open(spec)) = parse_args(&a).unwrap() else { panic!("an open-loop spec") };
        assert_eq!((spec.rate, spec.connections, spec.seed), (2500.5, 300, 9));
        assert_eq!(spec.duration, Duration::from_secs(2));
        let classes: Vec<(&str, f64)> = spec.classes.iter().map(|c| (c.url.as_str(), c.weight)).collect();
        assert_eq!(classes, [("/work?us=50", 99.5), ("/work?us=5000", 0.5), ("/x", 1.0)]);
    }

    #[test]
    fn options_of_the_other_loop_and_bad_weights_are_refused() {
        for (a, says) in [
            (&["--rate", "10", "--in-flight", "2", "http://127.0.0.1:1/a"][..], "closed loop only"),
            (&["--rate", "10", "--head", "http://127.0.0.1:1/a"][..], "closed loop only"),
            (&["--seed", "2", "http://127.0.0.1:1/a"][..], "open loop only"),
            (&["--busy-poll", "http://127.0.0.1:1/a"][..], "open loop only"),
            (&["http://127.0.0.1:1/a#2"][..], "open loop only"),
            (&["--rate", "10", "http://127.0.0.1:1/a#0"][..], "above 0"),
            (&["--rate", "10", "http://127.0.0.1:1/a#x"][..], "above 0"),
            (&["--rate", "10", "http://127.0.0.1:1/a#-1"][..], "above 0"),
        ] {
            let e = parse_args(&args(a)).err().unwrap_or_else(|| panic!("{a:?} accepted"));
            assert!(e.contains(says), "{a:?}: {e}");
        }
    }
}
