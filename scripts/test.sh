#!/usr/bin/env bash
# The test command the README names: unit, property and simulation tests, then the
# end-to-end tests against the real models and a real devnet.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

# One profile for everything (release: the consensus simulations and models need it).
echo "== build"
cargo build --release --workspace --locked --bins

echo "== unit, property, simulation and devnet (process) tests"
cargo test --release --workspace --locked

if [ "${PLEXUS_SKIP_MODELS:-0}" != "1" ]; then
  echo "== end-to-end: real models"
  target="${CARGO_TARGET_DIR:-target}/release/plexus"
  "$target" models install
  cargo test --release --locked -p plexus-inference -p plexus-provider -- --ignored
  echo "== end-to-end: jobs through a devnet with provider processes"
  cargo test --release --locked -p plexus-cli --test jobs -- --ignored
  echo "== end-to-end: verification (a cheating provider is caught and slashed)"
  cargo test --release --locked -p plexus-cli --test verification -- --ignored
  echo "== end-to-end: the official openai Python client against a devnet's gateway"
  scripts/openai_e2e.sh
fi
