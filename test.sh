#!/usr/bin/env bash
# Runs every test of parlib-rs: the README's test command, and what .ci/run runs.
#
# Each runtime test starts its own child process under a watchdog (parlib-testkit), so
# a hang fails with a message instead of stalling this script.
set -euo pipefail
cd "$(dirname "$0")"

echo "== debug: unit, integration and doc tests"
cargo test --workspace

echo "== release: unit and integration tests (the switch paths are compiled differently)"
cargo test --workspace --release --tests

echo "== the round-robin example: 1000 uthreads yielding on every vcore, then preempted spinners"
timeout 120 cargo run --release --example round_robin
timeout 120 cargo run --release --example round_robin -- --preempt
