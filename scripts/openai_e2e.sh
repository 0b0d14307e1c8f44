#!/usr/bin/env bash
# End-to-end: the official `openai` Python package, unchanged, against a fresh devnet's
# gateway (real models, two in-process providers). Needs the release binary built and the
# models installed (scripts/test.sh does both first).
set -euo pipefail
cd "$(dirname "$0")/.."
plexus="$(realpath "${CARGO_TARGET_DIR:-target}/release/plexus")"
venv="${PLEXUS_OPENAI_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/plexus-openai-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import openai" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "openai==3.54.0"
fi

dir="$(mktemp -d /tmp/plexus-openai-e2e.XXXXXX)"
base=$(( 20000 + ($$ % 3500) * 3 ))  # below the ephemeral range (32768+)
"$plexus" devnet --dir "$dir" --rpc-port "$base" --p2p-port $((base + 1)) \
  --gateway-port $((base + 2)) --block-time-ms 100 >"$dir/devnet.log" 2>&1 &
devnet=$!
cleanup() {
  kill "$devnet" 2>/dev/null || true
  wait "$devnet" 2>/dev/null || true
  if [ "${PLEXUS_TEST_LOGS:-0}" = "1" ]; then echo "logs kept in $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
if ! "$venv/bin/python" tests/openai_e2e.py "$dir" "$plexus"; then
  echo "--- devnet log (last 60 lines)"
  tail -n 60 "$dir/devnet.log"
  exit 1
fi
