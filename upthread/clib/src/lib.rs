//! # upthread (C library): `libupthread.so` and `libupthread.a`
//!
//! The C face of upthread (`DESIGN.md` §9): a pthread program recompiled with one extra
//! `-include upthread_compat.h` and linked against this library runs its threads as
//! uthreads on parlib vcores instead of as Linux threads.
//!
//! ## Where it sits
//!
//! ```text
//!   a C program         pthread_create(...)  ──(#define in upthread_compat.h)──▶ upthread_create
//!                       read(fd, ...)        ──(symbol interposition)──────────▶ read (parlib-syscalls)
//!   upthread (this)     the constructor, the headers
//!   parlib-upthread     the scheduler and every #[no_mangle] upthread_* function
//!   parlib-syscalls     read, write ... under the libc names (interpose), over parlib_read ...
//!   parlib-timed        every #[no_mangle] parlib_timed_* function (preemptible timed calls)
//! ```
//!
//! This crate adds no pthread function of its own: it links `parlib-upthread`, whose
//! `#[no_mangle] extern "C" fn upthread_*` functions become the library's exports, and
//! adds three things:
//!
//! 1. **The constructor** ([`ctor`]): an `.init_array` entry that calls
//!    `parlib_upthread::init()`, so `main` already runs as a uthread when it starts.
//! 2. **The system calls under their libc names**: `read`, `write`, `accept`,
//!    `nanosleep`, ... are defined by `parlib-syscalls` (its `interpose` module, which
//!    Rust programs share) and exported from this library, so a C program's blocking
//!    call blocks its uthread, not its vcore. Those POSIX makes cancellation points are
//!    cancellation points here too: upthread installs its check
//!    (`parlib_syscalls::set_cancellation_point`).
//! 3. **Timed calls**: `parlib-timed`'s C API (`parlib_timed_launch`, `_resume`,
//!    `_cancel`, `_pause`, ...), declared in `parlib_timed.h`, so that a program linked
//!    with this library can run preemptible functions on its threads.
//! 4. **Files, not code**: the headers and the pkg-config files.
//!
//! | file | what |
//! |---|---|
//! | `include/upthread.h` | every `upthread_*` function, declared with glibc's types |
//! | `include/upthread_compat.h` | `#define pthread_create upthread_create`, ... for every one of them; includes no system header, so a program's own `#define _GNU_SOURCE` still works |
//! | `include/upthread_cleanup.h` | the cleanup-handler buffer and `upthread_cleanup_push_impl`/`pop_impl`, included by the two headers around it |
//! | `include/parlib_timed.h` | a symbolic link to `timed/include/parlib_timed.h`, the one copy of the timed-call API's header, so that `-I upthread/clib/include` (and the `.pc` files) find it |
//! | `include/pthread.h` | wraps glibc's `<pthread.h>` and, under the compat header, replaces `pthread_cleanup_push`/`pop` with macros over `upthread_cleanup_push_impl`/`pop_impl` |
//! | `pkgconfig/upthread.pc.in`, `pkgconfig/upthread-static.pc.in` | templates that `write-pc.sh <dir>` fills in for the libraries in a cargo output directory |
//!
//! ## Using it from C
//!
//! ```sh
//! cargo build -p upthread --release          # target/release/libupthread.{so,a}
//! cc -O2 -include upthread_compat.h -I upthread/clib/include prog.c \
//!    -L target/release -Wl,-rpath,$PWD/target/release -lupthread -o prog
//! ```
//!
//! The README's "C programs" section has the static and pkg-config variants.
//!
//! ## The static library and its constructor
//!
//! A linker copies an archive member into the program only when the member defines a
//! symbol that something already pulled in references. The constructor's `.init_array`
//! entry is referenced by nothing, so a program that happens not to need the object it
//! lives in would silently run `main` on a plain Linux thread. Two things prevent that,
//! and each would suffice alone:
//!
//! * the entry itself is a global symbol, [`upthread_constructor`], and
//!   `upthread_compat.h` takes its address in every translation unit that includes it;
//! * `upthread-static.pc` passes `-Wl,-u,upthread_constructor`, for programs linked
//!   statically without the compatibility header.
//!
//! The tests `static_program_with_header_needs_no_link_flag_to_run_main_as_uthread` and
//! `static_program_without_header_runs_main_as_uthread` check each alone (without
//! either, `main` does run on the plain first thread: the member is left out).
//!
//! ## Limits
//!
//! * parlib owns `SIGUSR1` (notifications and alarms); C programs must leave it alone.
//! * Only the functions in `upthread.h` are renamed. A glibc-only thread function
//!   (`pthread_setname_np`, `pthread_getattr_np`, ...) called on an upthread thread is
//!   undefined behaviour.
//! * Calls that glibc makes internally (`printf` writing to a pipe, `getaddrinfo`) go
//!   straight to the kernel: glibc calls its own hidden aliases, never the exported names.
//! * The Rust code linked into the library (the standard library, upthread itself) calls
//!   `write`, `close`, ... by the same names, so on a uthread those calls land in the
//!   wrappers too, and are cancellation points. The layers below make their
//!   system calls raw; what remains is messages on standard error (a malformed
//!   `UPTHREAD_*` knob, read before any uthread exists; a panic about to abort), where a
//!   pending cancel could cut the message short.
//!
//! ## Tests
//!
//! `tests/c_programs.rs` builds the C programs of `tests/c/` against glibc and against
//! both libraries (through the `.pc` files), runs each on one vcore and on all, and
//! compares the output with glibc's; it also checks the headers against the library's
//! exports. `timed_basic.c`, which has no glibc counterpart, checks itself.

#![warn(missing_docs)]

pub mod ctor;

// Nothing here calls parlib-timed, and rustc links only the crates a crate uses: this
// makes it link it, so that its `parlib_timed_*` functions are in the libraries.
use parlib_timed as _;

pub use ctor::upthread_constructor;
