//! `/work` and timed handlers (`--work`, `--quantum-us`): a handler preempted many times
//! answers exactly as an unpreempted one, responses stay in order on their connection, a
//! short request is answered while a long one is still running on the same vcore, and a
//! handler that loops or panics gets a 503 while the server goes on serving.

mod common;

use common::{get, get_request, head_request, lossy, stat, stats, Client, Server, TempDir};
use kweb::load::{run, Spec};
use kweb::work::{body, chain};

/// Steps of a long request: tens of ms of hashing, hundreds of 50 µs quanta.
const LONG: u64 = 20_000_000;

fn expected(steps: u64) -> Vec<u8> {
    body(steps, chain(steps)).into_bytes()
}

fn timed_server(variant: &str, root: &TempDir, extra: &[&str]) -> Server {
    let mut args = vec!["--work", "--quantum-us", "50", "--url-cmd"];
    args.extend_from_slice(extra);
    Server::start(variant, root.path(), &args)
}

fn work_answers_with_the_chain_it_computed(variant: &str) {
    let root = TempDir::new("work");
    let server = Server::start(variant, root.path(), &["--work"]);
    for steps in [1, 1000, 123_457] {
        let r = get(server.port(), &format!("/work?n={steps}"));
        assert_eq!(r.status, 200, "n={steps}: {}", lossy(&r.body));
        assert_eq!(r.body, expected(steps), "n={steps}");
        assert_eq!(r.header("content-type"), Some("text/plain"));
    }
    let r = get(server.port(), "/work?us=100");
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body).unwrap();
    let steps: u64 =
        text.split_whitespace().nth(1).and_then(|s| s.strip_prefix("n=")).unwrap().parse().unwrap();
    assert_eq!(text.into_bytes(), expected(steps), "us=100 names its steps and their chain");
    server.stop();
}
variant_tests!(work_answers_with_the_chain_it_computed, 30);

fn work_is_an_ordinary_missing_path_without_the_flag(variant: &str) {
    let root = TempDir::new("work-off");
    let server = Server::start(variant, root.path(), &[]);
    assert_eq!(get(server.port(), "/work?n=10").status, 404);
    server.stop();
}
variant_tests!(work_is_an_ordinary_missing_path_without_the_flag, 30, [linux]);

fn bad_work_queries_are_bad_requests_and_head_costs_nothing(variant: &str) {
    let root = TempDir::new("work-bad");
    let server = Server::start(variant, root.path(), &["--work"]);
    for q in ["", "?us=0", "?n=x", "?us=5&n=5", "?us=20000000", "?n=5&fault=loop", "?n=5&colour=red"] {
        let r = get(server.port(), &format!("/work{q}"));
        assert_eq!(r.status, 400, "/work{q}: {}", lossy(&r.body));
    }
    // HEAD gives GET's length without doing the work (a day of steps would hang here).
    let mut c = Client::connect(server.port());
    c.send(head_request(&format!("/work?n={}", kweb::work::MAX_STEPS)));
    let r = c.head_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.content_length(), Some(body(kweb::work::MAX_STEPS, 0).len() as u64));
    server.stop();
}
variant_tests!(bad_work_queries_are_bad_requests_and_head_costs_nothing, 30);

fn a_panicking_handler_gets_a_503_and_the_server_goes_on(variant: &str) {
    let root = TempDir::new("work-panic");
    let server = Server::start(variant, root.path(), &["--work", "--url-cmd"]);
    let r = get(server.port(), "/work?n=1000&fault=panic");
    assert_eq!(r.status, 503, "{}", lossy(&r.body));
    assert_eq!(get(server.port(), "/work?n=10").body, expected(10));
    assert_eq!(stat(&stats(server.port()), "handler_panicked"), 1);
    server.stop();
}
variant_tests!(a_panicking_handler_gets_a_503_and_the_server_goes_on, 30);

fn a_panicking_timed_handler_gets_a_503_and_the_server_goes_on(variant: &str) {
    let root = TempDir::new("timed-panic");
    // The default budget (10 s): a debug build printing a backtrace under RUST_BACKTRACE
    // spends milliseconds in the panic, preempted every 50 us.
    let server = timed_server(variant, &root, &[]);
    let r = get(server.port(), "/work?n=1000&fault=panic");
    assert_eq!(r.status, 503, "{}", lossy(&r.body));
    assert_eq!(get(server.port(), "/work?n=10").body, expected(10));
    let s = stats(server.port());
    assert_eq!((stat(&s, "handler_panicked"), stat(&s, "handler_cancelled")), (1, 0), "{s}");
    server.stop();
}
variant_tests!(a_panicking_timed_handler_gets_a_503_and_the_server_goes_on, 60, [upthread, custom]);

fn a_preempted_handler_answers_as_an_unpreempted_one(variant: &str) {
    let root = TempDir::new("timed-same");
    let server = timed_server(variant, &root, &[]);
    let r = get(server.port(), &format!("/work?n={LONG}"));
    assert_eq!(r.status, 200, "{}", lossy(&r.body));
    assert_eq!(r.body, expected(LONG), "the resumed chain's value");
    let timeouts = stat(&stats(server.port()), "handler_timeouts");
    assert!(timeouts >= 2, "a handler of {LONG} steps ran out of a 50 us quantum only {timeouts} times");
    server.stop();
}
variant_tests!(a_preempted_handler_answers_as_an_unpreempted_one, 60, [upthread, custom]);

fn pipelined_answers_stay_in_order_around_a_preempted_handler(variant: &str) {
    let root = TempDir::new("timed-order");
    root.write("a.html", b"hello\n");
    let server = timed_server(variant, &root, &[]);
    let mut c = Client::connect(server.port());
    let urls = ["/work?n=10".to_string(), format!("/work?n={LONG}"), "/a.html".into(), "/work?n=11".into()];
    c.send(urls.iter().map(|u| get_request(u)).collect::<String>());
    let want = [expected(10), expected(LONG), b"hello\n".to_vec(), expected(11)];
    for (u, w) in urls.iter().zip(want) {
        let r = c.response();
        assert_eq!(r.status, 200, "{u}");
        assert_eq!(r.body, w, "{u}: the answer of another request, or out of order");
    }
    server.stop();
}
variant_tests!(pipelined_answers_stay_in_order_around_a_preempted_handler, 60, [upthread, custom]);

fn a_short_request_is_answered_while_a_long_one_runs_on_the_same_vcore(variant: &str) {
    let root = TempDir::new("timed-hol");
    // A handler that runs until its 3 s budget ends: without timed handlers the one
    // vcore would be its until then.
    let server = timed_server(variant, &root, &["--handler-budget-ms", "3000"]);
    let mut slow = Client::connect(server.port());
    slow.send(get_request("/work?n=1&fault=loop"));
    common::wait_until(std::time::Duration::from_secs(20), "the long handler to be preempted", || {
        stat(&stats(server.port()), "handler_timeouts") > 0
    });
    // The stats request itself was answered while the long one ran; so is this one.
    assert_eq!(get(server.port(), "/work?n=10").body, expected(10));
    assert!(slow.poll_response().is_none(), "the long request ended first: the test proves nothing");
    assert_eq!(slow.response().status, 503, "the long request, at the end of its budget");
    server.stop();
}
variant_tests!(a_short_request_is_answered_while_a_long_one_runs_on_the_same_vcore, 120, [upthread, custom]);

fn a_handler_that_never_returns_is_cancelled_at_its_budget_with_a_503(variant: &str) {
    let root = TempDir::new("timed-loop");
    let server = timed_server(variant, &root, &["--handler-budget-ms", "30"]);
    let mut c = Client::connect(server.port());
    c.send(get_request("/work?n=1&fault=loop"));
    c.send(get_request("/work?n=12"));
    assert_eq!(c.response().status, 503, "the looping handler");
    assert_eq!(c.response().body, expected(12), "the request behind it, on the same connection");
    let s = stats(server.port());
    assert_eq!((stat(&s, "handler_cancelled"), stat(&s, "handler_panicked")), (1, 0), "{s}");
    server.stop();
}
variant_tests!(a_handler_that_never_returns_is_cancelled_at_its_budget_with_a_503, 60, [upthread, custom]);

fn a_bimodal_pipelined_load_gets_every_answer_right_and_in_order(variant: &str) {
    let root = TempDir::new("timed-load");
    let server = timed_server(variant, &root, &[]);
    // Answers of different lengths (1 to 7 digits of n): one out of order fails its
    // probe's length check.
    let mut urls: Vec<String> =
        [1, 12, 123, 1234, 12345, 123_456].iter().map(|n| format!("/work?n={n}")).collect();
    urls.push(format!("/work?n={}", LONG / 10));
    let mut spec = Spec::new(server.addr(), urls);
    spec.connections = 8;
    spec.in_flight = 4;
    spec.requests_per_conn = Some(40);
    spec.duration = None;
    let report = run(&spec).expect("the load ran");
    assert_eq!(report.errors, 0, "{report}");
    assert_eq!(report.requests, 8 * 40, "{report}");
    assert!(stat(&stats(server.port()), "handler_timeouts") > 0, "no handler was preempted");
    server.stop();
}
variant_tests!(a_bimodal_pipelined_load_gets_every_answer_right_and_in_order, 120, [upthread, custom]);

fn a_stopping_server_cancels_its_long_handlers_with_a_503(variant: &str) {
    let root = TempDir::new("timed-stop");
    let server = timed_server(variant, &root, &["--handler-budget-ms", "600000"]);
    let mut slow = Client::connect(server.port());
    slow.send(get_request("/work?n=1&fault=loop"));
    common::wait_until(std::time::Duration::from_secs(20), "the long handler to be preempted", || {
        stat(&stats(server.port()), "handler_timeouts") > 0
    });
    server.stop(); // fails the test unless the server exits within its STOP_TIMEOUT
    let r = slow.response();
    assert_eq!(r.status, 503, "a handler ten minutes from its budget, cut short");
    assert!(r.closes(), "a stopping server closes the connection");
}
variant_tests!(a_stopping_server_cancels_its_long_handlers_with_a_503, 60, [upthread, custom]);
