//! The errors of the events API: each misuse gets its own `Error` (with an errno and a
//! message), never a crash or a silently dropped message.

use std::time::Duration;

use parlib_events::{self as events, Error, EventMsg, EventType, EV_USER_BASE, EV_USER_IPI, MAX_EVENT_TYPES};
use parlib_testkit::{child_outcome, isolated};
use parlib_vcore as vcore;

const TIMEOUT: Duration = Duration::from_secs(20);
const EV_A: EventType = EventType(EV_USER_BASE.0 + 1);

fn first(_: &EventMsg, _: EventType) {}
fn second(_: &EventMsg, _: EventType) {}

#[test]
fn sending_before_init_is_not_initialized() {
    isolated!(TIMEOUT, {
        events::register_handler(EV_A, first).unwrap();
        let e = events::send_event(&EventMsg::default(), EV_A, 0).unwrap_err();
        assert_eq!(e, Error::NotInitialized);
        assert_eq!(e.errno(), libc::EBUSY);
        assert!(e.to_string().contains("before events::init"), "{e}");
        // events::init needs the vcore layer first.
        assert_eq!(events::init(), Err(Error::NotInitialized));
        vcore::lib_init().unwrap();
        // The vcores exist, but the queues do not yet.
        assert_eq!(events::send_event(&EventMsg::default(), EV_A, 0), Err(Error::NotInitialized));
        events::init().unwrap();
        events::init().unwrap(); // later calls do nothing
    });
}

#[test]
fn sending_to_a_vcore_that_does_not_exist_is_no_such_vcore() {
    isolated!(TIMEOUT, {
        vcore::lib_init().unwrap();
        events::init().unwrap();
        events::register_handler(EV_A, first).unwrap();
        let n = vcore::max_vcores();
        for id in [n, n + 1, usize::MAX] {
            let e = events::send_event(&EventMsg::default(), EV_A, id).unwrap_err();
            assert_eq!(e, Error::NoSuchVcore(id));
            assert_eq!(e.errno(), libc::EINVAL);
            assert_eq!(e.to_string(), format!("vcore {id} does not exist"));
        }
    });
}

#[test]
fn an_event_type_out_of_range_is_bad_type() {
    isolated!(TIMEOUT, {
        vcore::lib_init().unwrap();
        events::init().unwrap();
        for ty in [EventType(MAX_EVENT_TYPES), EventType(MAX_EVENT_TYPES + 1), EventType(u32::MAX)] {
            let e = events::send_event(&EventMsg::default(), ty, 0).unwrap_err();
            assert_eq!(e, Error::BadType(ty));
            assert_eq!(e.errno(), libc::EINVAL);
            assert!(e.to_string().contains(&format!("event type {}", ty.0)), "{e}");
            assert_eq!(events::register_handler(ty, first), Err(Error::BadType(ty)));
        }
        // The last valid type is accepted.
        let last = EventType(MAX_EVENT_TYPES - 1);
        assert_eq!(events::register_handler(last, first), Ok(None));
    });
}

#[test]
fn sending_a_type_without_a_handler_is_no_handler() {
    isolated!(TIMEOUT, {
        vcore::lib_init().unwrap();
        events::init().unwrap();
        let e = events::send_event(&EventMsg::default(), EV_A, 0).unwrap_err();
        assert_eq!(e, Error::NoHandler(EV_A));
        assert_eq!(e.errno(), libc::EINVAL);
        assert_eq!(e.to_string(), format!("no handler is registered for event type {}", EV_A.0));
        // Nothing was queued, so nothing woke the vcore.
        assert!(vcore::get(0).unwrap().is_parked());
        assert!(!vcore::get(0).unwrap().notif_pending());
    });
}

#[test]
fn register_handler_returns_the_handler_it_replaces() {
    isolated!(TIMEOUT, {
        let as_addr = |h: Option<events::Handler>| h.map(|f| f as *const () as usize);
        assert_eq!(as_addr(events::register_handler(EV_USER_IPI, first).unwrap()), None);
        assert_eq!(
            as_addr(events::register_handler(EV_USER_IPI, second).unwrap()),
            Some(first as *const () as usize)
        );
        assert_eq!(
            as_addr(events::register_handler(EV_USER_IPI, first).unwrap()),
            Some(second as *const () as usize)
        );
        // Types are independent.
        assert_eq!(as_addr(events::register_handler(EV_A, second).unwrap()), None);
    });
}

#[test]
fn handle_events_outside_vcore_context_panics() {
    let out = child_outcome!(TIMEOUT, {
        vcore::lib_init().unwrap();
        events::init().unwrap();
        events::handle_events();
    });
    assert!(!out.finished && out.status.is_some_and(|s| s.code() == Some(101)), "{}", out.output());
    assert!(
        out.stderr.contains("events::handle_events must be called in vcore context"),
        "stderr lacks the message\n{}",
        out.output()
    );
}
