#!/usr/bin/env bash
# Runs every test of parlib-rs: the README's test command, and what .ci/run runs.
#
# Each runtime test starts its own child process under a watchdog (parlib-testkit), so
# a hang fails with a message instead of stalling this script.
set -euo pipefail
cd "$(dirname "$0")"

echo "== debug: unit, integration and doc tests (compile-fail doc tests included)"
cargo test --workspace

echo "== without the interpose feature: the libc names stay glibc's, and the layers still build"
cargo test -p parlib --no-default-features --test interpose_feature
cargo check -p parlib-syscalls --no-default-features --all-targets

echo "== release: unit and integration tests (the switch paths are compiled differently)"
cargo test --workspace --release --tests

echo "== every bench in its smoke mode (no --bench flag): a bench that no longer runs fails here"
# The benches have no watchdog of their own: a hang (a deadlocked window) fails here, with
# a message, after 20 minutes (the whole stage takes about 3 after building).
cargo test --release --benches -p parlib --no-run
if ! timeout -k 10 1200 cargo test --release --benches -p parlib; then
    echo "test.sh: the benches' smoke runs failed or hung (killed after 1200 s): see above" >&2
    exit 1
fi

echo "== the examples: 1000 uthreads yielding on every vcore, preempted spinners, priorities, timed calls"
timeout 120 cargo run --release --example round_robin
timeout 120 cargo run --release --example round_robin -- --preempt
timeout 120 cargo run --release --example priority
timeout 120 cargo run --release --example timed
