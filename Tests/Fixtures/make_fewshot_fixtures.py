#!/usr/bin/env python3
"""Expected few-shot subsets from Python itself, for cavpt-dist's Dassl-identical sampler.

Dassl's DatasetBase.generate_fewshot_dataset (as CoOp calls it after set_random_seed(seed)):
for each data source (the train list, then the val list with min(K, 4) shots), group the items
by label in order of first appearance (split_dataset_by_label's defaultdict), and per label take
random.sample(items, K) when len(items) >= K, else all items. The lists below are synthetic but
shaped like CoOp split files: interleaved or grouped labels, classes smaller than K, large
classes (so random.sample switches from pool to set selection), labels first seen out of order.

Writes Tests/Fixtures/fewshot/cases.json: for each case the train/val lists as [path, label] and
the expected lists per (seed, shots). Needs only the Python standard library.
"""
import json
import os
import random
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))


def generate_fewshot_dataset(*data_sources, num_shots=-1, repeat=False):
    """Dassl's code (dassl/data/datasets/base_dataset.py), items as (path, label) tuples."""
    if num_shots < 1:
        return data_sources[0] if len(data_sources) == 1 else data_sources
    output = []
    for data_source in data_sources:
        tracker = defaultdict(list)
        for item in data_source:
            tracker[item[1]].append(item)
        dataset = []
        for label, items in tracker.items():
            if len(items) >= num_shots:
                sampled_items = random.sample(items, num_shots)
            else:
                sampled_items = random.choices(items, k=num_shots) if repeat else items
            dataset.extend(sampled_items)
        output.append(dataset)
    return output[0] if len(output) == 1 else output


def interleaved(sizes, prefix):
    out = []
    for r in range(max(sizes)):
        for label, size in enumerate(sizes):
            if r < size:
                out.append((f"c{label}/{prefix}{r:04d}.jpg", label))
    return out


def grouped(sizes, prefix, label_order=None):
    order = label_order or list(range(len(sizes)))
    out = []
    for label in order:
        out += [(f"class_{label}/{prefix}_{i}.jpg", label) for i in range(sizes[label])]
    return out


def main():
    cases = {
        # EuroSAT-like: 10 classes, grouped, a few hundred images each (set selection for K = 16).
        "grouped_large": (grouped([300, 250, 310, 120, 90, 400, 260, 15, 33, 200], "tr"),
                          grouped([60, 50, 62, 24, 18, 80, 52, 3, 7, 40], "va")),
        # Interleaved labels, small classes (pool selection), some below K.
        "interleaved_small": (interleaved([20, 16, 5, 1, 9, 40], "t"), interleaved([9, 3, 0, 6, 4, 12], "v")),
        # Labels first seen out of order (the sampler visits them in that order).
        "out_of_order": (grouped([30, 8, 70, 2, 16], "x", [3, 0, 4, 2, 1]),
                         grouped([5, 4, 6, 1, 2], "y", [2, 4, 1, 3, 0])),
        # A long-tailed list large enough that random.sample uses set selection at every K.
        "long_tail": (grouped([1000, 500, 64, 17, 16, 4], "lt"), grouped([100, 50, 10, 4, 3, 1], "lv")),
    }
    out = {}
    for name, (train, val) in cases.items():
        expected = {}
        for seed in (1, 2, 3):
            for shots in (1, 2, 4, 8, 16):
                random.seed(seed)
                ftrain = generate_fewshot_dataset(train, num_shots=shots)
                fval = generate_fewshot_dataset(val, num_shots=min(shots, 4))
                expected[f"{seed}/{shots}"] = {"train": [list(x) for x in ftrain], "val": [list(x) for x in fval]}
        out[name] = {"train": [list(x) for x in train], "val": [list(x) for x in val], "expected": expected}
    # The generator itself: raw outputs after random.seed(s), for the MT19937 and seeding checks.
    raw = {}
    for seed in (0, 1, 2, 3, 42, 2**32 + 5, 2**40 + 123, -7):
        random.seed(seed)
        raw[str(seed)] = {"getrandbits32": [random.getrandbits(32) for _ in range(8)],
                          "getrandbits5": [random.getrandbits(5) for _ in range(4)],
                          "getrandbits48": [random.getrandbits(48) for _ in range(3)],
                          "randbelow1000": [random.randrange(1000) for _ in range(6)]}
    path = os.path.join(HERE, "fewshot", "cases.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"cases": out, "raw": raw}, f, separators=(",", ":"))
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
