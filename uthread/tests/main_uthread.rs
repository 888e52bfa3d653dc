//! `main` continues as a uthread after `uthread::lib_init` (DESIGN §4): the caller is
//! packaged as the uthread `main`, moved onto vcore 0, and keeps its own TLS there and
//! wherever it migrates afterwards.

use parlib_testsched as common;

use std::cell::{Cell, RefCell};
use std::time::Duration;

use parlib_testkit::isolated;
use parlib_uthread::{self as uthread, State};
use parlib_vcore::{self as vcore, arch};

thread_local! {
    static MARK: Cell<u64> = const { Cell::new(0) };
    static NAME: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Checks that the running code is `main`, running as a uthread outside vcore context.
fn assert_running_as_main() {
    let cur = uthread::current().expect("main is a uthread");
    assert_eq!(Some(cur), uthread::main_uthread());
    // SAFETY: `cur` is the running uthread, whose record lives for the whole process.
    let u = unsafe { cur.as_ref() };
    assert_eq!(u.id(), 0, "main is uthread 0");
    assert_eq!(u.state(), State::Running);
    assert!(u.has_tls(), "main runs on its own (the original thread's) TLS");
    assert!(!vcore::in_vcore_context());
    assert_eq!(uthread::notif_disable_depth(), 0);
}

#[test]
fn main_continues_as_a_uthread_after_lib_init() {
    isolated!(Duration::from_secs(30), {
        MARK.with(|m| m.set(0xfeed_f00d));
        NAME.with(|n| n.borrow_mut().push_str("set before lib_init"));
        let thread_id = std::thread::current().id();
        let tls = arch::fs_base();
        assert!(uthread::current().is_none(), "a plain thread is no uthread");
        assert!(uthread::main_uthread().is_none());

        common::init();

        assert_eq!(vcore::id(), 0, "lib_init returns on vcore 0");
        assert_running_as_main();
        assert_eq!(arch::fs_base(), tls, "main's TLS moved with it");
        assert_eq!(vcore::this().unwrap().current_tls(), tls);
        assert_ne!(vcore::this().unwrap().tls(), tls, "vcore 0's own TLS is another one");
        assert_eq!(MARK.with(Cell::get), 0xfeed_f00d);
        assert_eq!(NAME.with(|n| n.borrow().clone()), "set before lib_init");
        assert_eq!(std::thread::current().id(), thread_id, "std's thread handle lives in TLS too");

        // Yielding lets other uthreads run and may move main to another vcore; it stays
        // main, with its TLS.
        let others = 4 * vcore::max_vcores();
        for _ in 0..others {
            common::spawn(parlib_uthread::TlsMode::Backed, || {
                for _ in 0..50 {
                    common::yield_now();
                }
            });
        }
        for _ in 0..200 {
            common::yield_now();
            assert_running_as_main();
            assert_eq!(arch::fs_base(), tls);
            assert_eq!(MARK.with(Cell::get), 0xfeed_f00d);
            assert_eq!(std::thread::current().id(), thread_id);
        }
        common::wait_all();
        assert_running_as_main();
    });
}
