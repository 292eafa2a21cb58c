#!/usr/bin/env python3
"""Runs `cavpt-dist bench step` and the PyTorch peer (tools/pytorch_peer.py) on the same shapes, one
after the other in one run, and prints the ratios for the README's performance tables.

    python3 tools/compare_pytorch.py [--arch ViT-B/32|ViT-B/16|ViT-L/14] [--peers eager,compile,zentorch]
        [--precision fp32,bf16] [--binary .build/release/cavpt-dist] [--threads 2] [--steps 3] [--repeat N]
        [--only 1,3] [--zentorch-python PATH]

Both sides get the same thread count; OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from the
environment (a forced core halves OpenBLAS's speed on some CPUs) and the core in use is printed.
Each peer variant (eager; torch.compile with inductor; torch.compile with AMD's zentorch backend, run by
--zentorch-python, a Python whose torch matches zentorch's) runs every case; the best of them is "the
peer". With --repeat N each case runs N times, cavpt-dist and the variants alternating, and the table
gives medians with the range of the N paired ratios. It also gives each side's peak RSS and the share of
the machine's measured peak (fp32 FMA or bf16 dot product, as `bench step` measures it) that the step
reaches: cavpt-dist's from the FLOPs it counts, the peer's from the FLOPs of its (shortcut-free) model.
A case or variant that cannot run here (bf16 on a CPU without bf16 dot products, zentorch not installed)
is reported as such. Needs PyTorch (the peer only); cavpt-dist itself never does."""
import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# image width, layers, patch, text width, embedding width
ARCHS = {"ViT-B/32": (768, 12, 32, 512, 512), "ViT-B/16": (768, 12, 16, 512, 512), "ViT-L/14": (1024, 24, 14, 768, 768)}

# (label, precision, cavpt-dist bench step arguments, peer arguments, goal: ("time", max) or ("rate", min))
CASES = [
    ("vpt_deep fp32, B=32", "fp32", ["--method", "vpt_deep"], ["--method", "vpt-deep"], ("time", 0.5)),
    ("zero-shot forward fp32, B=100", "fp32", ["--method", "zsclip", "--batch", "100"],
     ["--method", "zs-eval", "--batch", "100"], ("rate", 1.4)),
    ("vpt_deep bf16, B=32", "bf16", ["--method", "vpt_deep"], ["--method", "vpt-deep"], ("time", 0.7)),
    ("vlp_cavpt bf16 (peer: vlp), B=32", "bf16", ["--method", "vlp_cavpt"], ["--method", "vlp"], ("time", 0.75)),
    ("zero-shot forward bf16, B=100", "bf16", ["--method", "zsclip", "--batch", "100"],
     ["--method", "zs-eval", "--batch", "100"], ("rate", 1.4)),
]

LINE = re.compile(r"median ([0-9.]+)s/step.*?\(([0-9.]+) img/s\)\s+peak RSS ([0-9.]+) MB")
PEAK = re.compile(r"of the measured \w+ peak \(([0-9.]+) GFLOP/s\)")
SHARE = re.compile(r"([0-9.]+)% of the measured")


def run(command, env):
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or [str(out.returncode)])[-1]
        return None, last
    return out.stdout, None


def parse(text):
    m = LINE.search(text)
    if not m:
        sys.exit(f"error: no timing line in:\n{text}")
    return float(m.group(1)), float(m.group(2)), float(m.group(3))


def peer_flops(method, arch, batch, classes):
    """FLOPs of the peer's step: every row of every layer, forward (and backward to the inputs)."""
    dv, layers, patch, dt, _ = ARCHS[arch]
    tokens = (224 // patch) ** 2 + 1

    def tower(sequences, rows, d, depth, backward):
        forward = sequences * depth * (24 * d * d * rows + 4 * rows * rows * d)
        return forward + (sequences * depth * (24 * d * d * rows + 8 * rows * rows * d) if backward else 0)

    patches = 2 * batch * (tokens - 1) * 3 * patch * patch * dv
    if method == "zs-eval":
        return patches + tower(batch, tokens, dv, layers, False)
    image = tower(batch, tokens + 10, dv, layers, True) if method in ("vpt-deep", "vlp") \
        else tower(batch, tokens, dv, layers, False)
    text = tower(classes, 77, dt, 12, True) if method in ("coop", "vlp") else 0
    return patches + image + text


def median(values):
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--binary", default=os.path.join(HERE, "..", ".build", "release", "cavpt-dist"))
    p.add_argument("--arch", default="ViT-B/32", choices=sorted(ARCHS))
    p.add_argument("--peers", default="eager,compile", help="peer variants: eager, compile, zentorch")
    p.add_argument("--precision", default="fp32,bf16", help="which cases: fp32, bf16 or both")
    p.add_argument("--zentorch-python", default=sys.executable, help="Python with zentorch and its torch")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--only", help="comma-separated case numbers (1-based) to run")
    p.add_argument("--repeat", type=int, default=1, help="runs of each case, alternating the sides")
    a = p.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env["CAVPT_DIST_BLAS_THREADS"] = str(a.threads)
    precisions = a.precision.split(",")
    cases = [(i + 1, c) for i, c in enumerate(CASES) if c[1] in precisions]
    if a.only:
        cases = [(i, c) for i, c in cases if str(i) in a.only.split(",")]
    variants = {"eager": (sys.executable, []), "compile": (sys.executable, ["--compile"]),
                "zentorch": (a.zentorch_python, ["--compile", "--backend", "zentorch"])}
    peers = [v for v in a.peers.split(",") if v]
    batch_of = lambda args: int(args[args.index("--batch") + 1]) if "--batch" in args else 32
    rows, notes = [], []
    for _, (label, precision, ours, peer, goal) in cases:
        kind, bound = goal
        mine, theirs, shares, peak = [], {v: [] for v in peers}, [], None
        for _ in range(max(1, a.repeat)):
            out, err = run([a.binary, "bench", "step", "--arch", a.arch, "--steps", str(a.steps), "--threads",
                            str(a.threads), "--precision", precision] + ours, env)
            if out is None:
                notes.append(f"{label}: cavpt-dist cannot run it here: {err}")
                break
            print(out.rstrip(), flush=True)
            mine.append(parse(out))
            if PEAK.search(out):
                peak = float(PEAK.search(out).group(1))
                shares.append(float(SHARE.search(out).group(1)))
            for v in peers:
                python, extra = variants[v]
                out, err = run([python, os.path.join(HERE, "pytorch_peer.py"), "--arch", a.arch, "--steps",
                                str(a.steps), "--threads", str(a.threads), "--dtype", precision] + peer + extra, env)
                if out is None:
                    if not any(n.startswith(f"{label}: peer {v}") for n in notes):
                        notes.append(f"{label}: peer {v} did not run: {err}")
                    continue
                print(f"PyTorch peer ({v}): " + out.strip(), flush=True)
                theirs[v].append(parse(out))
        if not mine:
            continue
        ran = {v: runs for v, runs in theirs.items() if runs}
        if not ran:
            continue
        # The peer: the variant with the best median.
        key = (lambda v: median([r[0] for r in ran[v]])) if kind == "time" else (lambda v: -median([r[1] for r in ran[v]]))
        best = min(ran, key=key)
        t1, r1, m1 = (median([x[i] for x in mine]) for i in range(3))
        t2, r2, m2 = (median([x[i] for x in ran[best]]) for i in range(3))
        ratio = t1 / t2 if kind == "time" else r1 / r2
        paired = [(x[0] / y[0]) if kind == "time" else (x[1] / y[1]) for x, y in zip(mine, ran[best])]
        met = ratio <= bound if kind == "time" else ratio >= bound
        method = peer[peer.index("--method") + 1]
        peer_share = (100 * peer_flops(method, a.arch, batch_of(peer), 10) / t2 / 1e9 / peak) if peak else None
        others = ", ".join(f"{v} {median([r[0] for r in runs]):.3f} s" for v, runs in ran.items() if v != best)
        rows.append((label, t1, r1, m1, best, t2, r2, m2, kind, ratio, (min(paired), max(paired)), bound, met,
                     median(shares) if shares else None, peer_share, others))
    print()
    repeat = f" (medians of {a.repeat} alternating runs; range of the paired ratios)" if a.repeat > 1 else ""
    print(f"{a.arch}, {a.threads} threads")
    print(f"| work | cavpt-dist | best PyTorch peer | ratio{repeat} | goal | share of peak (ours / peer) |")
    print("|---|---|---|---|---|---|")
    for label, t1, r1, m1, best, t2, r2, m2, kind, ratio, spread, bound, met, s1, s2, others in rows:
        what = "time" if kind == "time" else "images/s"
        goal = f"{what} ≤ {bound}×" if kind == "time" else f"{what} ≥ {bound}×"
        span = f" ({spread[0]:.2f}–{spread[1]:.2f})" if a.repeat > 1 else ""
        share = f"{s1:.0f}% / {s2:.0f}%" if s1 is not None and s2 is not None else "—"
        alt = f"; {others}" if others else ""
        print(f"| {label} | {t1:.3f} s ({r1:.1f} img/s, {m1:.0f} MB) | {best} {t2:.3f} s ({r2:.1f} img/s, "
              f"{m2:.0f} MB{alt}) | {ratio:.2f}×{span} {what} | {goal} {'met' if met else 'MISSED'} | {share} |")
    for n in notes:
        print("note: " + n)


if __name__ == "__main__":
    main()
