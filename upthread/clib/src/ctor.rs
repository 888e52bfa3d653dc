//! The library constructor: `main` starts as a uthread.
//!
//! The dynamic loader (for `libupthread.so`) or the C runtime's start code (for a program
//! linked with `libupthread.a`) calls every function listed in an `.init_array` section
//! before `main`. Ours calls `parlib_upthread::init()`, which starts the vcores and moves
//! the calling context onto vcore 0 as the main uthread (`DESIGN.md` §3, "the first
//! `request` moves the calling context"). When the loader returns into the C runtime, and
//! the C runtime calls `main`, it is already running on that uthread.
//!
//! Order. In a shared library the loader runs our constructor after those of the libraries
//! we depend on (libc) and before the program's own; in a static link it runs among the
//! program's constructors in link order. Either way libc is initialised first, which is
//! all `init` needs.
//!
//! Why the entry is a global, named symbol: see "The static library and its constructor"
//! in the crate docs.

/// The `.init_array` entry of the library; its address is taken by
/// `upthread_compat.h` and it is named by `-Wl,-u,upthread_constructor` in
/// `upthread-static.pc`, so that a static link always includes it.
///
/// The C runtime calls it once, before `main`; nothing else should.
#[used]
#[no_mangle]
#[link_section = ".init_array"]
#[allow(non_upper_case_globals)]
pub static upthread_constructor: extern "C" fn() = start;

/// Starts upthread and turns the calling context (the C runtime, about to call `main`)
/// into the main uthread. A failure here has no caller to report to: it says why on
/// standard error and aborts, rather than let `main` run on a plain Linux thread that
/// the rest of the library would treat as a uthread.
extern "C" fn start() {
    if let Err(e) = parlib_upthread::init() {
        // Standard error is all we have here; `e` says which layer failed.
        eprintln!("libupthread: cannot start upthread before main: {e}");
        std::process::abort();
    }
}
