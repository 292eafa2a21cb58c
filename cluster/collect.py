#!/usr/bin/env python3
"""Reads every runs/**/results.json and prints mean ± std over seeds per method × dataset, as in the
paper's Table 1 (methods as rows, datasets as columns, then the average over datasets).

    cluster/collect.py                      # runs/, accuracy and macro-F1 tables
    cluster/collect.py /shared/runs --metric accuracy --markdown

Each results.json needs "accuracy" and "macroF1" (fractions in [0, 1], printed as percentages; values
above 1 are taken as percentages already) and "method", "dataset", "seed"; a missing method, dataset
or seed is read from the path <method>/<dataset>/seed<k>/results.json. std is the sample standard
deviation (n − 1) over seeds; a cell with one seed shows the mean alone. The average column is the
mean of the dataset means and is shown only for methods that have every dataset in the table.
Standard library only.
"""
import argparse
import json
import math
import os
import re
import statistics
import sys

# Rows and columns in the paper's order (SPEC §3, §4); names not listed here follow alphabetically.
METHOD_ORDER = ["zsclip", "coop", "vpt_shallow", "vpt_deep", "vpt_cavpt", "vlp_deep", "vlp_cavpt",
                "dpt_released"]
DATASET_ORDER = ["eurosat", "caltech101", "oxford_flowers", "food101", "fgvc_aircraft", "dtd",
                 "oxford_pets", "stanford_cars"]
METRICS = {"accuracy": "accuracy", "macroF1": "macro-F1"}


def ordered(names, preferred):
    known = [name for name in preferred if name in names]
    return known + sorted(name for name in names if name not in preferred)


def read_results(root):
    """{(method, dataset): {seed: record}} and a list of one-line warnings."""
    cells, warnings = {}, []
    for directory, subdirectories, files in os.walk(root):
        subdirectories.sort()
        if "results.json" not in files:
            continue
        path = os.path.join(directory, "results.json")
        try:
            with open(path, encoding="utf-8") as file:
                record = json.load(file)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as error:
            warnings.append(f"{path}: skipped, cannot read it ({error})")
            continue
        # Fall back to runs/<method>/<dataset>/seed<k>/ for identity fields the file lacks.
        parts = os.path.normpath(directory).split(os.sep)
        from_path = {}
        if len(parts) >= 3 and re.fullmatch(r"seed\d+", parts[-1]):
            from_path = {"method": parts[-3], "dataset": parts[-2], "seed": int(parts[-1][4:])}
        identity = {key: record.get(key, from_path.get(key)) for key in ("method", "dataset", "seed")}
        missing = [key for key, value in identity.items() if value is None]
        if missing:
            warnings.append(f"{path}: skipped, no {', '.join(missing)} in the file or its path")
            continue
        bad = [key for key in METRICS
               if not isinstance(record.get(key), (int, float)) or isinstance(record.get(key), bool)
               or not math.isfinite(record[key])]
        if bad:
            warnings.append(f"{path}: skipped, {', '.join(bad)} missing or not a finite number")
            continue
        seeds = cells.setdefault((str(identity["method"]), str(identity["dataset"])), {})
        seed = identity["seed"]
        if seed in seeds:
            warnings.append(f"{path}: skipped, {identity['method']}/{identity['dataset']} seed {seed} "
                            f"already read from {seeds[seed]['_path']}")
            continue
        seeds[seed] = dict(record, _path=path)
    return cells, warnings


def percent(value):
    return value if value > 1 else 100 * value


def table(cells, metric, markdown):
    methods = ordered({method for method, _ in cells}, METHOD_ORDER)
    datasets = ordered({dataset for _, dataset in cells}, DATASET_ORDER)
    header = ["method"] + datasets + ["average"]
    rows, counts = [], {}
    for method in methods:
        row, means = [method], []
        for dataset in datasets:
            seeds = cells.get((method, dataset))
            if not seeds:
                row.append("-")
                continue
            values = [percent(record[metric]) for record in seeds.values()]
            counts[(method, dataset)] = len(values)
            mean = statistics.fmean(values)
            means.append(mean)
            row.append(f"{mean:.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}")
        row.append(f"{statistics.fmean(means):.2f}" if len(means) == len(datasets) else "-")
        rows.append(row)

    lines = [f"{METRICS[metric]} (%), mean ± std over seeds"]
    if markdown:
        lines.append("")
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    else:
        widths = [max(len(row[column]) for row in [header] + rows) for column in range(len(header))]
        for row in [header] + rows:
            cells_text = [row[0].ljust(widths[0])] + [text.rjust(width) for text, width in zip(row[1:], widths[1:])]
            lines.append("  ".join(cells_text).rstrip())
    if markdown:
        lines.append("")
    seed_counts = sorted(set(counts.values()))
    if len(seed_counts) == 1:
        lines.append(f"seeds per cell: {seed_counts[0]}")
    else:
        usual = max(seed_counts, key=lambda n: sum(1 for count in counts.values() if count == n))
        others = ", ".join(f"{method}/{dataset} {count}" for (method, dataset), count in counts.items()
                           if count != usual)
        lines.append(f"seeds per cell: {usual}, except {others}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="?", default="runs", help="folder searched for results.json (default runs)")
    parser.add_argument("--metric", choices=["accuracy", "macroF1", "both"], default="both")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    arguments = parser.parse_args()

    if not os.path.isdir(arguments.runs):
        print(f"collect: error: {arguments.runs} is not a folder", file=sys.stderr)
        return 1
    cells, warnings = read_results(arguments.runs)
    for warning in warnings:
        print(f"collect: warning: {warning}", file=sys.stderr)
    if not cells:
        print(f"collect: error: no usable results.json under {arguments.runs}", file=sys.stderr)
        return 1
    metrics = ["accuracy", "macroF1"] if arguments.metric == "both" else [arguments.metric]
    print("\n\n".join(table(cells, metric, arguments.markdown) for metric in metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
