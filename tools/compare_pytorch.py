#!/usr/bin/env python3
"""Runs `cavpt-dist bench step` and the PyTorch peer (tools/pytorch_peer.py) on the same ViT-B/32
shapes, one after the other in one run, and prints the ratios for the README's performance table.

    python3 tools/compare_pytorch.py [--binary .build/release/cavpt-dist] [--threads 2] [--steps 3] [--repeat N]

Both sides get the same thread count; OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from the
environment (a forced core halves OpenBLAS's speed on some CPUs) and the core in use is printed.
With --repeat N each case runs N times, the two sides alternating, and the table gives the median
of each side's step times and the ratio of the medians, with the range of the N paired ratios (on a
VM whose speed changes from process to process, a single pair can land on either side of a goal).
Needs PyTorch (the peer only); cavpt-dist itself never does."""
import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# (label, cavpt-dist bench step arguments, peer arguments, goal: ("time", max ratio) or ("rate", min ratio))
CASES = [
    ("vpt_deep fp32, B=32", ["--method", "vpt_deep", "--precision", "fp32"],
     ["--method", "vpt-deep", "--dtype", "fp32"], ("time", 0.5)),
    ("vpt_deep bf16, B=32", ["--method", "vpt_deep", "--precision", "bf16"],
     ["--method", "vpt-deep", "--dtype", "bf16"], ("time", 0.8)),
    ("vlp_cavpt bf16 (peer: vlp), B=32", ["--method", "vlp_cavpt", "--precision", "bf16"],
     ["--method", "vlp", "--dtype", "bf16"], ("time", 0.8)),
    ("coop bf16, K=100, B=32", ["--method", "coop", "--classes", "100", "--precision", "bf16"],
     ["--method", "coop", "--classes", "100", "--dtype", "bf16"], ("time", 0.5)),
    ("zero-shot forward bf16, B=100", ["--method", "zsclip", "--batch", "100", "--precision", "bf16"],
     ["--method", "zs-eval", "--batch", "100", "--dtype", "bf16"], ("rate", 1.25)),
]

LINE = re.compile(r"median ([0-9.]+)s/step.*?\(([0-9.]+) img/s\)\s+peak RSS ([0-9.]+) MB")


def run(command, env):
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"error: {' '.join(command)} failed: {out.stderr.strip().splitlines()[-1:] or out.returncode}")
    return out.stdout


def parse(text):
    m = LINE.search(text)
    if not m:
        sys.exit(f"error: no timing line in:\n{text}")
    return float(m.group(1)), float(m.group(2)), float(m.group(3))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--binary", default=os.path.join(HERE, "..", ".build", "release", "cavpt-dist"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--only", help="comma-separated case numbers (1-based) to run")
    p.add_argument("--repeat", type=int, default=1, help="runs of each case, alternating the two sides")
    a = p.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env["CAVPT_DIST_BLAS_THREADS"] = str(a.threads)
    cases = CASES if not a.only else [CASES[int(i) - 1] for i in a.only.split(",")]
    rows = []
    for label, ours, peer, goal in cases:
        kind, bound = goal
        pairs = []
        for _ in range(max(1, a.repeat)):
            mine = run([a.binary, "bench", "step", "--steps", str(a.steps), "--threads", str(a.threads)] + ours, env)
            print(mine.rstrip(), flush=True)
            theirs = run([sys.executable, os.path.join(HERE, "pytorch_peer.py"), "--steps", str(a.steps),
                          "--threads", str(a.threads)] + peer, env)
            print("PyTorch peer: " + theirs.strip(), flush=True)
            pairs.append((parse(mine), parse(theirs)))
        def median(values):
            v = sorted(values)
            return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2
        t1, r1, m1 = (median([p[0][i] for p in pairs]) for i in range(3))
        t2, r2, m2 = (median([p[1][i] for p in pairs]) for i in range(3))
        ratio = t1 / t2 if kind == "time" else r1 / r2
        paired = [(p[0][0] / p[1][0]) if kind == "time" else (p[0][1] / p[1][1]) for p in pairs]
        met = ratio <= bound if kind == "time" else ratio >= bound
        rows.append((label, t1, r1, m1, t2, r2, m2, kind, ratio, (min(paired), max(paired)), bound, met))
    print()
    repeat = f" (medians of {a.repeat} alternating runs; range of the paired ratios)" if a.repeat > 1 else ""
    print(f"| work | cavpt-dist | PyTorch peer | ratio{repeat} | goal |")
    print("|---|---|---|---|---|")
    for label, t1, r1, m1, t2, r2, m2, kind, ratio, spread, bound, met in rows:
        what = "time" if kind == "time" else "images/s"
        goal = f"{what} ≤ {bound}×" if kind == "time" else f"{what} ≥ {bound}×"
        span = f" ({spread[0]:.2f}–{spread[1]:.2f})" if a.repeat > 1 else ""
        print(f"| {label} | {t1:.3f} s ({r1:.1f} img/s, {m1:.0f} MB) | {t2:.3f} s ({r2:.1f} img/s, {m2:.0f} MB) "
              f"| {ratio:.2f}×{span} {what} | {goal} {'met' if met else 'MISSED'} |")


if __name__ == "__main__":
    main()
