//! The C test programs in `tests/c/`, built against glibc and against upthread.
//!
//! Each program is an ordinary pthread program that checks itself (a wrong count exits 1
//! with a message) and prints only what does not depend on scheduling. It is built
//! three ways (`timed_basic.c`, which uses parlib-timed's C API and so has no glibc
//! build, only the last two, and must print what [`timed_calls_from_c_complete_time_out_pause_and_cancel`]
//! expects):
//!
//! | build | how |
//! |---|---|
//! | glibc | `cc -pthread`: the reference |
//! | upthread shared | `pkg-config --cflags --libs upthread`: `-include upthread_compat.h`, `libupthread.so` |
//! | upthread static | `pkg-config --cflags --libs upthread-static`: the same header, `libupthread.a` |
//!
//! The pkg-config files are the ones `write-pc.sh` writes for the libraries cargo built,
//! so every run here also tests them. Each upthread build runs twice, on one vcore
//! (`UPTHREAD_VCORES=1`) and on all of them, and must exit 0 with the reference's
//! standard output. Every run is under a watchdog ([`RUN_TIMEOUT`]): a hang is killed
//! and reported with the program, the build and the vcores, never waited out.
//!
//! Where the libraries are: `cargo test -p upthread` builds the package's library
//! (`libupthread.so`, `libupthread.a`; the crate is also an rlib so that cargo does, see
//! `Cargo.toml`) before its tests, into `<target>/<profile>/deps/`, the directory of this
//! test binary, so they are found from [`std::env::current_exe`] whatever the target
//! directory. (Only `cargo build` copies them up to `<target>/<profile>/`; the copies
//! there may be stale during `cargo test`.)
//!
//! `CC`, `NM` and `PKG_CONFIG` name other tools than `cc`, `nm` and `pkg-config`.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long one run of a C program may take before it is reported as hung. Generous:
/// the slowest program takes about a second against glibc and a few against a debug
/// build of upthread; this only catches hangs (a lost wake-up, a vcore blocked in the
/// kernel), on a loaded two-core machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// How one program is built.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Build {
    Glibc,
    Shared,
    Static,
}

impl Build {
    fn name(self) -> &'static str {
        match self {
            Build::Glibc => "glibc",
            Build::Shared => "upthread-shared",
            Build::Static => "upthread-static",
        }
    }
}

/// Where things are.
struct Paths {
    /// `upthread/clib`.
    clib: PathBuf,
    /// The directory holding `libupthread.so` and `libupthread.a` (`<profile>/deps`).
    libdir: PathBuf,
    /// Where `write-pc.sh` put the `.pc` files.
    pkgconfig: PathBuf,
    /// Where the test binaries go.
    out: PathBuf,
}

fn paths() -> &'static Paths {
    static PATHS: OnceLock<Paths> = OnceLock::new();
    PATHS.get_or_init(|| {
        let clib = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let exe = std::env::current_exe().expect("current_exe");
        // <target>/<profile>/deps/c_programs-<hash>, next to the library's artifacts.
        let libdir = exe.parent().expect("test binary in <target>/<profile>/deps").to_path_buf();
        for lib in ["libupthread.so", "libupthread.a"] {
            assert!(
                libdir.join(lib).exists(),
                "{lib} is not in {}, next to this test binary: `cargo test -p upthread` builds it there",
                libdir.display()
            );
        }
        let script = clib.join("write-pc.sh");
        let out = Command::new("sh").arg(&script).arg(&libdir).output().expect("run write-pc.sh");
        assert!(
            out.status.success(),
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let pkgconfig = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let out = libdir.join("upthread-c-tests");
        std::fs::create_dir_all(&out).expect("create the output directory");
        Paths { clib, libdir, pkgconfig, out }
    })
}

fn tool(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

/// The flags pkg-config gives for one of our `.pc` files.
fn pkg_config(args: &[&str]) -> Result<Vec<String>, String> {
    let out = Command::new(tool("PKG_CONFIG", "pkg-config"))
        .args(args)
        .env("PKG_CONFIG_PATH", &paths().pkgconfig)
        .output()
        .map_err(|e| format!("cannot run pkg-config: {e}"))?;
    if !out.status.success() {
        return Err(format!("pkg-config {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect())
}

/// How to build one program, beyond its [`Build`].
#[derive(Clone, Copy, Default)]
struct Options<'a> {
    /// Leave out the compatibility header (pkg-config's `--cflags`).
    no_header: bool,
    /// Drop `-Wl,-u,upthread_constructor` from pkg-config's `--libs`.
    no_undefined_flag: bool,
    /// More compiler flags, for every build.
    extra: &'a [&'a str],
}

/// Runs a build step, or says why it failed.
fn step(program: &str, build: Build, mut cmd: Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{program} ({}) does not build:\n{cmd:?}\n{}",
        build.name(),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// The symbols an object file leaves undefined.
fn undefined_symbols(obj: &Path) -> Result<Vec<String>, String> {
    let out = Command::new(tool("NM", "nm"))
        .arg("-u")
        .arg(obj)
        .output()
        .map_err(|e| format!("cannot run nm: {e}"))?;
    if !out.status.success() {
        return Err(format!("nm -u {} failed", obj.display()));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(String::from)
        .collect())
}

/// Compiles `tests/c/<program>.c` to an object, checks that an upthread build of it
/// calls no glibc thread function (the compatibility header renamed them all), links it,
/// and returns the binary.
fn compile(program: &str, build: Build, opts: Options) -> Result<PathBuf, String> {
    let p = paths();
    let src = p.clib.join("tests/c").join(format!("{program}.c"));
    let mut name = format!("{program}.{}", build.name());
    if opts.no_header {
        name.push_str("-noheader");
    }
    if opts.no_undefined_flag {
        name.push_str("-no-u");
    }
    if !opts.extra.is_empty() {
        name.push_str(&format!("-x{}", opts.extra.join("").replace(['/', ' '], "_")));
    }
    let obj = p.out.join(format!("{name}.o"));
    let bin = p.out.join(&name);
    let pc = match build {
        Build::Glibc => None,
        Build::Shared => Some("upthread"),
        Build::Static => Some("upthread-static"),
    };

    let mut cc = Command::new(tool("CC", "cc"));
    cc.args(["-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-Werror"]).args(opts.extra);
    match pc {
        None => {
            cc.arg("-pthread");
        }
        Some(pc) if !opts.no_header => {
            cc.args(pkg_config(&["--cflags", pc])?);
        }
        Some(_) => {}
    }
    cc.arg("-c").arg(&src).arg("-o").arg(&obj);
    step(program, build, cc)?;

    if pc.is_some() && !opts.no_header {
        let glibc: Vec<_> = undefined_symbols(&obj)?
            .into_iter()
            .filter(|s| s.starts_with("pthread_") || s.starts_with("sem_") || s == "sched_yield")
            .collect();
        if !glibc.is_empty() {
            return Err(format!(
                "{program} ({}) still calls glibc's {glibc:?}: upthread_compat.h does not rename them",
                build.name()
            ));
        }
    }

    let mut link = Command::new(tool("CC", "cc"));
    link.arg(&obj).arg("-o").arg(&bin);
    match pc {
        None => {
            link.arg("-pthread");
        }
        Some(pc) => {
            let libs = pkg_config(&["--libs", pc])?;
            link.args(libs.into_iter().filter(|f| !(opts.no_undefined_flag && f.starts_with("-Wl,-u,"))));
        }
    }
    step(program, build, link)?;
    Ok(bin)
}

/// What a run of a C program did.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
    status: String,
}

/// Runs `bin` with `UPTHREAD_VCORES` set to `vcores` (or unset), under the watchdog.
fn run(bin: &Path, vcores: Option<u32>) -> Run {
    let mut cmd = Command::new(bin);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // cargo runs tests with LD_LIBRARY_PATH naming <profile> and <profile>/deps, and it
    // beats the binary's RUNPATH: the program could load a stale <profile>/libupthread.so.
    cmd.env_remove("LD_LIBRARY_PATH");
    match vcores {
        Some(n) => cmd.env("UPTHREAD_VCORES", n.to_string()),
        None => cmd.env_remove("UPTHREAD_VCORES"),
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Run {
                ok: false,
                stdout: String::new(),
                stderr: String::new(),
                status: format!("cannot start: {e}"),
            }
        }
    };
    // Drain both pipes on their own threads, so a chatty child cannot block on a full
    // pipe while we wait for it.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let start = Instant::now();
    let status = loop {
        match child.try_wait().expect("wait for the C program") {
            Some(s) => break Ok(s),
            None if start.elapsed() > RUN_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("timed out after {} s and was killed (a hang)", RUN_TIMEOUT.as_secs()));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        Ok(s) => Run { ok: s.success(), stdout, stderr, status: s.to_string() },
        Err(why) => Run { ok: false, stdout, stderr, status: why },
    }
}

fn vcores_name(v: Option<u32>) -> String {
    match v {
        Some(n) => format!("UPTHREAD_VCORES={n}"),
        None => "all vcores".to_string(),
    }
}

/// Builds and runs `program` against glibc, then against upthread (shared and static,
/// one vcore and all), and fails unless every upthread run succeeds with glibc's output.
/// `extra` flags go to every build, glibc's included.
fn matches_glibc_with(program: &str, extra: &[&str]) {
    let opts = Options { extra, ..Options::default() };
    let reference_bin = compile(program, Build::Glibc, opts).unwrap_or_else(|e| panic!("{e}"));
    let reference = run(&reference_bin, None);
    assert!(
        reference.ok,
        "{program} fails against glibc ({}), so the test program itself is wrong:\n{}",
        reference.status, reference.stderr
    );
    assert!(!reference.stdout.is_empty(), "{program} printed nothing against glibc");

    runs_match(program, opts, &reference.stdout, "glibc stdout");
}

/// Builds `program` against upthread (shared and static), runs each build on one vcore
/// and on all, and fails unless every run exits 0 with `expected` (which `what` names in a
/// failure) on standard output.
fn runs_match(program: &str, opts: Options<'_>, expected: &str, what: &str) {
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for build in [Build::Shared, Build::Static] {
        let bin = match compile(program, build, opts) {
            Ok(b) => b,
            Err(e) => {
                table.push(format!("{:<16} build failed", build.name()));
                failures.push(e);
                continue;
            }
        };
        for vcores in [Some(1), None] {
            let r = run(&bin, vcores);
            let verdict = if !r.ok {
                format!("failed: {}", r.status)
            } else if r.stdout != expected {
                format!("output differs from the {what}")
            } else {
                "ok".to_string()
            };
            table.push(format!("{:<16} {:<18} {verdict}", build.name(), vcores_name(vcores)));
            if verdict != "ok" {
                failures.push(format!(
                    "{program} ({}, {}): {verdict}\n--- {what}\n{expected}--- upthread stdout\n{}--- upthread stderr\n{}",
                    build.name(),
                    vcores_name(vcores),
                    r.stdout,
                    r.stderr
                ));
            }
        }
    }
    eprintln!("{program}:\n  {}", table.join("\n  "));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn matches_glibc(program: &str) {
    matches_glibc_with(program, &[]);
}

#[test]
fn producer_consumer_with_mutex_and_condvars_matches_glibc() {
    matches_glibc("producer_consumer");
}

#[test]
fn barrier_phases_match_glibc() {
    matches_glibc("barrier_phases");
}

#[test]
fn key_destructors_run_as_in_glibc() {
    matches_glibc("keys_destructors");
}

#[test]
fn once_routines_run_once_as_in_glibc() {
    matches_glibc("once");
}

#[test]
fn readers_and_writers_match_glibc() {
    matches_glibc("readers_writers");
}

#[test]
fn detached_threads_run_as_in_glibc() {
    matches_glibc("detached");
}

#[test]
fn errno_is_per_thread_as_in_glibc() {
    matches_glibc("errno_per_thread");
}

#[test]
fn cancellation_runs_cleanup_handlers_as_in_glibc() {
    matches_glibc("cancel_cleanup");
}

/// A cancel wakes a thread blocked in a condvar wait, a semaphore wait, a pipe read and
/// a join (`parlib_upthread::cancel`, "Cancelling a blocked thread").
#[test]
fn cancellation_ends_a_blocked_wait_as_in_glibc() {
    matches_glibc("cancel_blocked");
}

#[test]
fn directed_signals_reach_their_thread_as_in_glibc() {
    matches_glibc("directed_signals");
}

#[test]
fn echo_server_and_clients_in_one_process_match_glibc() {
    matches_glibc("echo_server");
}

/// `_FORTIFY_SOURCE` makes glibc's headers call `__recv_chk`, `__read_chk`, ... instead
/// of `recv`, `read`: they must reach upthread's wrappers too (with one vcore, a call
/// that went to glibc would block the vcore and hang the program).
#[test]
fn fortified_echo_server_matches_glibc() {
    matches_glibc_with("echo_server", &["-D_FORTIFY_SOURCE=2"]);
}

#[test]
fn semaphores_and_spinlocks_match_glibc() {
    matches_glibc("semaphores_spinlocks");
}

#[test]
fn file_io_with_creation_modes_matches_glibc() {
    matches_glibc("file_io");
}

#[test]
fn ten_thousand_short_lived_threads_match_glibc() {
    matches_glibc("many_threads");
}

/// Runs `main_is_uthread` built against upthread and checks that `main` ran on a vcore
/// task.
fn main_runs_as_uthread(build: Build, opts: Options) {
    let bin = compile("main_is_uthread", build, opts).unwrap_or_else(|e| panic!("{e}"));
    for vcores in [Some(1), None] {
        let r = run(&bin, vcores);
        assert!(
            r.ok,
            "main_is_uthread ({}, {}): {}\n{}",
            build.name(),
            vcores_name(vcores),
            r.status,
            r.stderr
        );
        assert_eq!(
            r.stdout,
            "main runs on a vcore task\n",
            "main_is_uthread ({}, {}): main did not run as a uthread: the library constructor did not run \
             or did not start upthread",
            build.name(),
            vcores_name(vcores)
        );
    }
}

#[test]
fn glibc_main_runs_on_the_first_task() {
    // The control for the two tests below: without upthread, tid == pid.
    let bin = compile("main_is_uthread", Build::Glibc, Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let r = run(&bin, None);
    assert!(r.ok, "{}: {}", r.status, r.stderr);
    assert_eq!(r.stdout, "main runs on the process's first task\n");
}

#[test]
fn shared_library_runs_main_as_uthread() {
    main_runs_as_uthread(Build::Shared, Options::default());
}

#[test]
fn static_library_runs_main_as_uthread() {
    main_runs_as_uthread(Build::Static, Options::default());
}

/// Without the compatibility header nothing in the program refers to the library: only
/// `-Wl,-u,upthread_constructor` from `upthread-static.pc` pulls the constructor in.
#[test]
fn static_program_without_header_runs_main_as_uthread() {
    main_runs_as_uthread(Build::Static, Options { no_header: true, ..Options::default() });
}

/// And without `-Wl,-u`, the header's reference to `upthread_constructor` alone pulls it
/// in.
#[test]
fn static_program_with_header_needs_no_link_flag_to_run_main_as_uthread() {
    main_runs_as_uthread(Build::Static, Options { no_undefined_flag: true, ..Options::default() });
}

/// Builds `program` against both libraries (no glibc reference: it uses parlib's own
/// API), runs each build on one vcore and on all, and fails unless every run exits 0
/// with `expected` on standard output.
fn runs_on_upthread(program: &str, expected: &str) {
    runs_match(program, Options::default(), expected, "expected stdout");
}

/// `timed_basic.c` drives parlib-timed's C API (`parlib_timed.h`), which libupthread
/// exports: completion, preemption and resumption to the unpreempted value, pause,
/// cancel, no-preempt sections, nesting, the handle's checks and misuse.
#[test]
fn timed_calls_from_c_complete_time_out_pause_and_cancel() {
    runs_on_upthread(
        "timed_basic",
        "a call that completes returns its value\n\
         a spinning call times out, and resumed to completion gives the unpreempted value\n\
         a call pauses and is resumed\n\
         cancels return and free: abandoned, returned when polled, returned when paused\n\
         no preemption inside a no-preempt section; an unbalanced end is EPERM\n\
         a call launches a call\n\
         a handle is refused to other threads and to its own call\n\
         misuse is EINVAL: null pointers, bad budgets, resuming a completed call\n",
    );
}

/// Names of the symbols `nm -D` lists as defined in `libupthread.so`, with their type
/// letters.
fn exported() -> Vec<(char, String)> {
    let so = paths().libdir.join("libupthread.so");
    let out =
        Command::new(tool("NM", "nm")).args(["-D", "--defined-only"]).arg(&so).output().expect("run nm");
    assert!(out.status.success(), "nm -D {} failed", so.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_addr, ty, name) = (f.next()?, f.next()?, f.next()?);
            Some((ty.chars().next()?, name.to_string()))
        })
        .collect()
}

fn exported_functions(prefix: &str) -> BTreeSet<String> {
    exported().into_iter().filter(|(t, n)| *t == 'T' && n.starts_with(prefix)).map(|(_, n)| n).collect()
}

fn header(name: &str) -> String {
    let path = paths().clib.join("include").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The C identifiers in `text` outside `/* */` comments, each with whether a `(`
/// follows it (a function declaration or call).
fn identifiers(text: &str) -> Vec<(String, bool)> {
    let mut code = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("/*") {
        code.push_str(&rest[..i]);
        code.push(' ');
        rest = rest[i..].find("*/").map_or("", |j| &rest[i + j + 2..]);
    }
    code.push_str(rest);
    let b = code.as_bytes();
    let mut ids = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !(b[i].is_ascii_alphabetic() || b[i] == b'_') {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        let next = code[i..].trim_start().as_bytes().first().copied();
        ids.push((code[start..i].to_string(), next == Some(b'(')));
    }
    ids
}

/// The `upthread_*` functions `upthread.h` declares (with `upthread_cleanup.h`, which it
/// includes): identifiers followed by `(`.
fn declared_in_upthread_h() -> BTreeSet<String> {
    ["upthread.h", "upthread_cleanup.h"]
        .into_iter()
        .flat_map(|h| identifiers(&header(h)))
        .filter(|(id, paren)| *paren && id.starts_with("upthread_"))
        .map(|(id, _)| id)
        .collect()
}

#[test]
fn header_declares_exactly_what_the_library_exports() {
    assert_declared_is_exported("upthread.h", &declared_in_upthread_h(), "upthread_", 50);
}

/// Checks that `header` declares (`declared`) exactly the functions named `prefix*` that
/// libupthread.so exports, and at least `at_least` of them (a parse that found nothing
/// must not pass).
fn assert_declared_is_exported(header: &str, declared: &BTreeSet<String>, prefix: &str, at_least: usize) {
    let exported = exported_functions(prefix);
    assert!(
        declared.len() >= at_least,
        "found only {} declarations in {header}: {declared:?}",
        declared.len()
    );
    let missing: Vec<_> = declared.difference(&exported).collect();
    let undeclared: Vec<_> = exported.difference(declared).collect();
    assert!(
        missing.is_empty() && undeclared.is_empty(),
        "{header} and libupthread.so disagree.\n  declared, not exported: {missing:?}\n  exported, not declared: {undeclared:?}"
    );
}

/// `parlib_timed.h` (a link to `timed/include/parlib_timed.h`, found here like every
/// header of the library) declares the `parlib_timed_*` functions libupthread exports,
/// no more, no fewer.
#[test]
fn timed_header_declares_exactly_what_the_library_exports() {
    let declared: BTreeSet<String> = identifiers(&header("parlib_timed.h"))
        .into_iter()
        .filter(|(id, paren)| *paren && id.starts_with("parlib_timed_"))
        .map(|(id, _)| id)
        .collect();
    assert_declared_is_exported("parlib_timed.h", &declared, "parlib_timed_", 10);
}

/// `parlib_timed.h` alone compiles without a warning as strict C11 and as C++11.
/// `CXX` names another C++ compiler than `c++`.
#[test]
fn timed_header_compiles_cleanly_as_c11_and_cxx11() {
    let include = paths().clib.join("include");
    for (compiler, lang, std) in
        [(tool("CC", "cc"), "c", "-std=c11"), (tool("CXX", "c++"), "c++", "-std=c++11")]
    {
        let mut cmd = Command::new(&compiler);
        cmd.args([std, "-pedantic", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-x", lang, "-"])
            .arg("-I")
            .arg(&include)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
        std::io::Write::write_all(
            &mut child.stdin.take().expect("piped stdin"),
            b"#include <parlib_timed.h>\n#include <parlib_timed.h>\n",
        )
        .expect("write to the compiler");
        let out = child.wait_with_output().expect("wait for the compiler");
        assert!(
            out.status.success(),
            "parlib_timed.h does not compile cleanly as {lang} ({std}):\n{cmd:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The `#define <from> <to>` renames of `upthread_compat.h`.
fn compat_renames() -> Vec<(String, String)> {
    header("upthread_compat.h")
        .lines()
        .filter_map(|l| {
            let mut f = l.strip_prefix("#define ")?.split_whitespace();
            let (from, to) = (f.next()?, f.next()?);
            (f.next().is_none() && to.starts_with("upthread_")).then(|| (from.to_string(), to.to_string()))
        })
        .collect()
}

/// `pthread_X` -> `upthread_X`, `sem_X` -> `upthread_sem_X`, `sched_yield` ->
/// `upthread_sched_yield`: the naming rule of `upthread.h`.
fn upthread_name_of(libc_name: &str) -> Option<String> {
    if let Some(rest) = libc_name.strip_prefix("pthread_") {
        Some(format!("upthread_{rest}"))
    } else if libc_name.starts_with("sem_") || libc_name == "sched_yield" {
        Some(format!("upthread_{libc_name}"))
    } else {
        None
    }
}

#[test]
fn compat_header_renames_every_exported_function() {
    let renames = compat_renames();
    assert!(renames.len() > 50, "found only {} renames in upthread_compat.h", renames.len());
    let exported = exported_functions("upthread_");
    let mut wrong = Vec::new();
    for (from, to) in &renames {
        if upthread_name_of(from).as_deref() != Some(to.as_str()) {
            wrong.push(format!("{from} -> {to} breaks the naming rule"));
        }
        if !exported.contains(to) {
            wrong.push(format!("{from} -> {to}, which libupthread.so does not export"));
        }
    }
    let targets: BTreeSet<&str> = renames.iter().map(|(_, t)| t.as_str()).collect();
    // The cleanup implementation functions are called by the cleanup macros, not
    // renamed from a glibc name.
    for f in exported.iter().filter(|f| !f.starts_with("upthread_cleanup_")) {
        if !targets.contains(f.as_str()) {
            wrong.push(format!("{f} is exported but no pthread/sem/sched name is renamed to it"));
        }
    }
    assert!(wrong.is_empty(), "upthread_compat.h:\n  {}", wrong.join("\n  "));
}

/// The names of the issue, and the variants glibc's headers may emit for them.
const LIBC_NAMES: &[&str] = &[
    "read",
    "write",
    "readv",
    "writev",
    "pread",
    "pwrite",
    "recv",
    "recvfrom",
    "recvmsg",
    "send",
    "sendto",
    "sendmsg",
    "accept",
    "accept4",
    "connect",
    "open",
    "openat",
    "socket",
    "pipe",
    "pipe2",
    "poll",
    "nanosleep",
    "usleep",
    "sleep",
    "close",
    "pread64",
    "pwrite64",
    "open64",
    "openat64",
    "__read_chk",
    "__pread_chk",
    "__pread64_chk",
    "__recv_chk",
    "__recvfrom_chk",
    "__poll_chk",
    "__open_2",
    "__open64_2",
    "__openat_2",
    "__openat64_2",
];

#[test]
fn syscall_wrappers_are_exported_under_libc_names() {
    let exported: BTreeSet<String> =
        exported().into_iter().filter(|(t, _)| *t == 'T').map(|(_, n)| n).collect();
    let missing: Vec<_> = LIBC_NAMES.iter().filter(|n| !exported.contains(**n)).collect();
    assert!(missing.is_empty(), "libupthread.so does not export {missing:?}");
}

#[test]
fn constructor_is_an_exported_init_array_entry() {
    let has = exported().into_iter().any(|(t, n)| n == "upthread_constructor" && (t == 'D' || t == 'd'));
    assert!(has, "libupthread.so does not export the data symbol upthread_constructor");
}
