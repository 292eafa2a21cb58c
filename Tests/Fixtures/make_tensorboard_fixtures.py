#!/usr/bin/env python3
"""TensorBoard event-file fixtures for cavpt-dist's hand-written writer (no TensorFlow).

1. Writes Tests/Fixtures/tensorboard/expected.tfevents with the `tensorboard` package's own
   RecordWriter and Event/Summary protos: a file_version event, then the scalars listed in
   EVENTS (fixed wall times), so the Swift test can compare its bytes with these.
2. With --check RUN_DIR: opens the event file a cavpt-dist run wrote with TensorBoard's
   EventAccumulator and prints its tags and values (exit 1 if the expected tags are missing).

Needs `pip install tensorboard` (developer-time only; the Swift tests read the committed file).
"""
import argparse
import glob
import os
import sys

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

HERE = os.path.dirname(os.path.abspath(__file__))
# (wall time, step, tag, value): what the Swift test writes too.
EVENTS = [
    (1764580000.25, 1, "train/loss", 2.302585),
    (1764580000.25, 1, "train/acc", 12.5),
    (1764580000.25, 1, "train/lr", 1e-05),
    (1764580001.5, 2, "train/loss", 1.75),
    (1764580001.5, 2, "train/lr", 0.01),
    (1764580002.0, 2, "test/accuracy", 87.5),
    (1764580002.0, 2, "test/macro_f1", -0.0),
    (1764580002.0, 123456789, "train/ünïcode tag", 3.4028234663852886e38),
]


def write_expected(path):
    with open(path, "wb") as f:
        writer = RecordWriter(f)
        first = event_pb2.Event(wall_time=1764580000.0, file_version="brain.Event:2")
        writer.write(first.SerializeToString())
        for wall, step, tag, value in EVENTS:
            summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
            writer.write(event_pb2.Event(wall_time=wall, step=step, summary=summary).SerializeToString())
        writer.flush()
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def check(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    files = glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))
    if not files:
        sys.exit(f"no events.out.tfevents.* in {run_dir}")
    acc = EventAccumulator(run_dir)
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for tag in sorted(tags):
        values = acc.Scalars(tag)
        print(f"{tag}: {len(values)} values, steps {values[0].step}..{values[-1].step}, last {values[-1].value:.6g}")
    wanted = {"train/loss", "train/acc", "train/lr", "test/accuracy"}
    missing = wanted - set(tags)
    if missing:
        sys.exit(f"missing tags: {sorted(missing)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", metavar="RUN_DIR")
    args = parser.parse_args()
    if args.check:
        check(args.check)
    else:
        write_expected(os.path.join(HERE, "tensorboard", "expected.tfevents"))
