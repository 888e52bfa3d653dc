//! What the benches that race a C pthread program against itself share: finding
//! `libupthread.so`, compiling one C source twice (against glibc, and against upthread
//! with `-include upthread_compat.h`), running a build with a watchdog, and reading how
//! loaded the machine is. Included by path (`#[path = "c/cbuild.rs"] mod cbuild;`) by
//! `pthread_ctxswitch.rs` and `fixedwork.rs`.
//!
//! # Where libupthread comes from
//!
//! The library is the `upthread` package (`upthread/clib`), which no bench depends on,
//! so `cargo bench` does not build it. [`Toolchain::prepare`] runs
//! `cargo build -p upthread` itself, in the profile and the target directory of the
//! running bench binary (`<target>/<profile>/deps/<bench>-<hash>`), so the library is
//! `<target>/<profile>/libupthread.so` and is as fresh as the bench: a `cargo bench`
//! builds it in `release`, a `cargo test --benches` in `debug`. Cargo releases its lock
//! on the target directory before it runs a bench, so the nested build does not wait
//! for it (the `cargo xtask` pattern relies on the same). If cargo cannot be run (the
//! binary was started by hand, without cargo on `PATH`), an existing library there is
//! used, and the output says so.
//!
//! The C programs go to `<target>/parlib-bench/<bench>/bin/`. `CC` names another
//! compiler than `cc`.

#![allow(dead_code)] // each bench uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The two builds of a C program.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    /// `cc -pthread`: the baseline.
    Glibc,
    /// `-include upthread_compat.h`, linked to `libupthread.so`.
    Upthread,
}

impl Side {
    /// The name in tables, CSV files and binary names.
    pub fn name(self) -> &'static str {
        match self {
            Side::Glibc => "glibc",
            Side::Upthread => "upthread",
        }
    }
}

/// The compiler and the library, ready to build C programs.
pub struct Toolchain {
    /// The C compiler (`$CC`, or `cc`).
    cc: String,
    /// The directory holding `libupthread.so`.
    libdir: PathBuf,
    /// `upthread/clib/include`.
    include: PathBuf,
    /// Where the binaries go.
    bin: PathBuf,
    /// How the library was found, for the run's header.
    pub how: String,
}

/// The two binaries of one C program.
pub struct Programs {
    /// Built against glibc.
    pub glibc: PathBuf,
    /// Built against upthread.
    pub upthread: PathBuf,
}

impl Programs {
    /// The binary of `side`.
    pub fn of(&self, side: Side) -> &Path {
        match side {
            Side::Glibc => &self.glibc,
            Side::Upthread => &self.upthread,
        }
    }
}

impl Toolchain {
    /// Builds (or finds) libupthread for this bench binary's profile and target directory,
    /// and prepares `bin_dir` for the C binaries.
    pub fn prepare(bin_dir: PathBuf) -> Result<Toolchain, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        // <target>/<profile>/deps/<bench>-<hash>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| format!("{} is not in <target>/<profile>/deps", exe.display()))?
            .to_path_buf();
        let target = profile_dir.parent().ok_or("no target directory")?.to_path_buf();
        let profile = profile_dir.file_name().and_then(|n| n.to_str()).unwrap_or("release").to_string();
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"));

        let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
        let mut build = Command::new(&cargo);
        build.args(["build", "--quiet", "-p", "upthread"]);
        match profile.as_str() {
            "debug" => {}
            "release" => {
                build.arg("--release");
            }
            other => {
                build.args(["--profile", other]);
            }
        }
        build.env("CARGO_TARGET_DIR", &target).current_dir(&workspace).stdin(Stdio::null());
        let lib = profile_dir.join("libupthread.so");
        let how = match build.status() {
            Ok(s) if s.success() => format!("libupthread.so built by `cargo build -p upthread` ({profile})"),
            Ok(s) if lib.exists() => {
                eprintln!(
                    "warning: `cargo build -p upthread` failed ({s}); using the existing {}",
                    lib.display()
                );
                format!("existing libupthread.so ({profile}); `cargo build -p upthread` failed")
            }
            Ok(s) => {
                return Err(format!(
                    "`cargo build -p upthread` failed ({s}) and there is no {}",
                    lib.display()
                ))
            }
            Err(e) if lib.exists() => {
                eprintln!("warning: cannot run {cargo} ({e}); using the existing {}", lib.display());
                format!("existing libupthread.so ({profile}); cargo not run")
            }
            Err(e) => return Err(format!("cannot run {cargo} ({e}) and there is no {}", lib.display())),
        };
        std::fs::create_dir_all(&bin_dir).map_err(|e| format!("{}: {e}", bin_dir.display()))?;
        Ok(Toolchain {
            cc: std::env::var("CC").unwrap_or_else(|_| "cc".into()),
            libdir: profile_dir,
            include: workspace.join("upthread/clib/include"),
            bin: bin_dir,
            how,
        })
    }

    /// `cc --version`'s first line, for the run's header.
    pub fn cc_version(&self) -> String {
        Command::new(&self.cc)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_string))
            .unwrap_or_else(|| self.cc.clone())
    }

    /// Compiles `benches/c/<name>.c` twice, with `cc -O2`: against glibc (`-pthread`) and
    /// against upthread (`-include upthread_compat.h`, `-lupthread`, an rpath to the
    /// library). The source is the same file, unchanged.
    pub fn compile(&self, name: &str) -> Result<Programs, String> {
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/c").join(format!("{name}.c"));
        let glibc = self.bin.join(format!("{name}-glibc"));
        let upthread = self.bin.join(format!("{name}-upthread"));
        let common = ["-O2", "-Wall", "-Wextra", "-Werror"];
        self.cc(Command::new(&self.cc).args(common).arg(&src).arg("-pthread").arg("-o").arg(&glibc))?;
        let mut rpath = std::ffi::OsString::from("-Wl,-rpath,");
        rpath.push(&self.libdir);
        self.cc(Command::new(&self.cc)
            .args(common)
            .arg("-I")
            .arg(&self.include)
            .args(["-include", "upthread_compat.h"])
            .arg(&src)
            .arg("-L")
            .arg(&self.libdir)
            .arg(rpath)
            .arg("-lupthread")
            .arg("-o")
            .arg(&upthread))?;
        Ok(Programs { glibc, upthread })
    }

    fn cc(&self, cmd: &mut Command) -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("cannot run {}: {e}", self.cc))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{cmd:?} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr)))
        }
    }
}

/// How one run of a C binary is set up.
pub struct Run<'a> {
    /// The binary.
    pub bin: &'a Path,
    /// Its arguments.
    pub args: Vec<String>,
    /// `UPTHREAD_*` settings; every other `UPTHREAD_*` variable is removed, so the
    /// defaults apply.
    pub env: Vec<(&'static str, String)>,
    /// Pin the whole process (all its threads, which inherit it) to this CPU, as
    /// `taskset -c` would.
    pub cpu: Option<usize>,
    /// Kill the program and fail after this long: it hangs.
    pub timeout: Duration,
}

/// Runs the program to completion and returns its standard output. Standard error is
/// passed through. A non-zero exit, or a run longer than the timeout, is an error.
pub fn run(r: &Run) -> Result<String, String> {
    let mut cmd = Command::new(r.bin);
    cmd.args(&r.args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("UPTHREAD_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in &r.env {
        cmd.env(k, v);
    }
    if let Some(cpu) = r.cpu {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the child between fork and exec and calls only
        // sched_setaffinity, a system call (async-signal-safe), on a cpu_set_t built on
        // its own stack; it touches no lock or allocation of the parent.
        unsafe {
            cmd.pre_exec(move || {
                let mut set: libc::cpu_set_t = core::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                if libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", r.bin.display()))?;
    // Read standard output on another thread, so that a chatty program cannot block on a
    // full pipe while we wait for it.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > r.timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} {:?} {:?}: killed after {:?} (hung?)",
                    r.bin.display(),
                    r.args,
                    r.env,
                    r.timeout
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(format!("waiting for {}: {e}", r.bin.display())),
        }
    };
    let out = reader.join().unwrap_or_default();
    if status.success() {
        Ok(out)
    } else {
        Err(format!("{} {:?} {:?}: {status}", r.bin.display(), r.args, r.env))
    }
}

/// The value of `key=<value>` among the space-separated words of `line`.
pub fn field<T: std::str::FromStr>(line: &str, key: &str) -> Option<T> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// The CPUs the process may use, in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is a valid (empty) set; sched_getaffinity fills the
    // one we own, of the size we pass, for the calling thread.
    let set = unsafe {
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        if libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        set
    };
    // SAFETY: CPU_ISSET reads the set we own, for indices below CPU_SETSIZE.
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
}

/// How busy the machine is just before a run: the load averages, and the share of all
/// CPUs' time spent busy (not idle or iowait, from `/proc/stat`) over `over`.
pub fn machine_load(over: Duration) -> String {
    fn busy_total() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
        let v: Vec<u64> = cpu.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        let total: u64 = v.iter().take(8).sum(); // user..steal; guest is inside user
        let idle = v.get(3)? + v.get(4)?;
        Some((total - idle, total))
    }
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let avg: Vec<&str> = loadavg.split_whitespace().take(3).collect();
    let a = busy_total();
    std::thread::sleep(over);
    let b = busy_total();
    let busy = match (a, b) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            format!("{:.0}%", 100.0 * (b1 - b0) as f64 / (t1 - t0) as f64)
        }
        _ => "unknown".into(),
    };
    format!(
        "loadavg {} (1, 5, 15 min); CPUs busy {busy} over the {:.1} s before the run",
        avg.join(" "),
        over.as_secs_f64()
    )
}

/// The run's header: machine, kernel, build (commit, rustc, cc, library) and load.
pub fn header(m: &crate::machine::Machine, tc: &Toolchain, load: &str, run: &str) -> String {
    format!(
        "machine: {}, {} CPUs online\nkernel:  {}, clocksource {}\nbuild:   commit {}, {}, {}; {}\nload:    {load}\nrun:     {run}, {}\n",
        m.cpu_model,
        m.cpus_online,
        m.kernel,
        m.clocksource,
        m.commit,
        m.rustc,
        tc.cc_version(),
        tc.how,
        m.date
    )
}
