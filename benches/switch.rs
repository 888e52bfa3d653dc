//! Criterion micro-benchmark: the cost of one uthread switch, with and without the TLS
//! (FS base) swap.
//!
//! `uthread_switch/tls` and `uthread_switch/no_tls`: [`WORKERS`] uthreads share vcore 0,
//! each yielding in a loop (`yield_with(paused)` under the FIFO scheduler of
//! `common/`), so every yield is one switch uthread -> vcore context -> next uthread.
//! The `main` uthread drives: it opens every worker's gate, blocks on a completion and is
//! woken by the last worker, so it is not in the rotation and, in `no_tls`, no switch
//! touches the FS base. The time reported per iteration is elapsed / total yields.
//!
//! Setup (`lib_init`, spawning, a warm-up round) happens outside the timed region; the
//! workers live across all of criterion's samples of one function.
//!
//! Run: `cargo bench --bench switch` (add `-- tls` or `-- no_tls` to pick one).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use parlib::uthread::TlsMode;

#[path = "common/mod.rs"]
mod common;

use common::{Completion, Gate};

/// Uthreads on the vcore: the goal is stated for 8 uthreads on one vcore, and
/// 8 per core is the Linux-thread reference point too (about 1.5 µs per switch).
const WORKERS: u64 = 8;

/// Yields per worker in the untimed warm-up round: enough to fault in every stack page
/// the loop touches and to get the TLS pool's refills out of the way.
const WARMUP_YIELDS: u64 = 10_000;

/// What the driver tells the workers for one round.
struct Round {
    /// Yields each worker makes this round; 0 means "exit".
    yields: AtomicU64,
    done: Completion,
}

/// Eight workers on vcore 0 and their gates, alive across criterion's samples.
struct Team {
    round: Arc<Round>,
    gates: Vec<Arc<Gate>>,
}

impl Team {
    fn spawn(tls: TlsMode) -> Team {
        let round = Arc::new(Round { yields: AtomicU64::new(0), done: Completion::new() });
        let mut gates = Vec::new();
        for _ in 0..WORKERS {
            let gate = Arc::new(Gate::new());
            let (g, r) = (gate.clone(), round.clone());
            common::spawn_on(0, tls, move || loop {
                g.pass(); // blocked here between rounds
                let n = r.yields.load(Ordering::Relaxed); // ordered by the gate
                for _ in 0..n {
                    common::yield_now();
                }
                r.done.arrive();
                if n == 0 {
                    return;
                }
            });
            gates.push(gate);
        }
        let team = Team { round, gates };
        team.round(WARMUP_YIELDS);
        team
    }

    /// One round of `per_worker` yields by each worker; returns its wall time.
    fn round(&self, per_worker: u64) -> Duration {
        self.round.yields.store(per_worker, Ordering::Relaxed);
        self.round.done.reset(self.gates.len());
        for g in &self.gates {
            g.open(); // queues the worker on vcore 0; it runs once main blocks
        }
        let start = Instant::now();
        self.round.done.wait(); // main blocks; the workers run; the last one wakes main
        start.elapsed()
    }

    /// Criterion's `iters` switches: rounded up to whole rounds, timed, scaled back.
    fn time_switches(&self, iters: u64) -> Duration {
        let per_worker = iters.div_ceil(WORKERS).max(1);
        let elapsed = self.round(per_worker);
        elapsed.mul_f64(iters as f64 / (per_worker * WORKERS) as f64)
    }

    /// Lets every worker exit and waits until they have.
    fn finish(self) {
        self.round(0);
    }
}

fn start_runtime() {
    static START: Once = Once::new();
    // lib_init moves this (criterion's) thread onto vcore 0 as the uthread `main`; no
    // other vcore is ever requested by this bench.
    START.call_once(common::start);
}

fn uthread_switch(c: &mut Criterion) {
    start_runtime();
    let mut group = c.benchmark_group("uthread_switch");
    for (name, tls) in [("tls", TlsMode::Backed), ("no_tls", TlsMode::None)] {
        let team = Team::spawn(tls);
        group.bench_function(name, |b| b.iter_custom(|iters| team.time_switches(iters)));
        team.finish();
    }
    group.finish();
}

criterion_group!(benches, uthread_switch);
criterion_main!(benches);
