#!/usr/bin/env python3
"""Writes the small seed corpora under fuzz/corpus/<target>/ (committed; rerun to regenerate)."""
import io, json, os, shutil, struct
from pathlib import Path

here = Path(__file__).resolve().parent
repo = here.parent
out = here / "corpus"


def put(target, name, data):
    folder = out / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def safetensors(header, data=b""):
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + data


# Safetensors: valid files of each dtype, metadata, zero-size tensors, and a few near misses.
put("FuzzSafeTensors", "f32", safetensors({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, bytes(16)))
put("FuzzSafeTensors", "mixed", safetensors({
    "__metadata__": {"format": "pt", "epoch": "3"},
    "a": {"dtype": "F16", "shape": [3], "data_offsets": [0, 6]},
    "b": {"dtype": "BF16", "shape": [1, 2], "data_offsets": [6, 10]},
    "c": {"dtype": "I64", "shape": [], "data_offsets": [10, 18]},
    "empty": {"dtype": "F32", "shape": [0, 4], "data_offsets": [18, 18]},
}, bytes(18)))
put("FuzzSafeTensors", "f64_u8", safetensors({
    "x": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]},
    "y": {"dtype": "U8", "shape": [4], "data_offsets": [8, 12]},
}, bytes(12)))
put("FuzzSafeTensors", "overlap", safetensors({
    "p": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
    "q": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
}, bytes(12)))
put("FuzzSafeTensors", "badshape", safetensors({"w": {"dtype": "F32", "shape": [2, -1], "data_offsets": [0, 8]}}, bytes(8)))
put("FuzzSafeTensors", "empty_header", struct.pack("<Q", 2) + b"{}")

# Split JSON (CoOp read_split) and few-shot JSON (ours and the CoOp export), one target.
split = {
    "train": [["a/1.jpg", 0, "a_cat"], ["b/2.jpg", 1, "dog"], ["a/3.jpg", 0, "a_cat"]],
    "val": [["b/4.jpg", 1, "dog"]],
    "test": [["a/5.jpg", 0, "a_cat"], ["b/6.jpg", 1, "dog"]],
}
put("FuzzSplitJSON", "split", json.dumps(split))
put("FuzzSplitJSON", "split_pretty", json.dumps(split, indent=2, ensure_ascii=False).replace("dog", "dög"))
put("FuzzSplitJSON", "split_gap", json.dumps({"train": [["x.jpg", 2, "c"]], "val": [], "test": []}))
put("FuzzSplitJSON", "fewshot", json.dumps({"dataset": "fuzz", "shots": 1, "seed": 1,
                                             "train": [["a/1.jpg", 0], ["b/2.jpg", 1]], "val": [["b/4.jpg", 1]]}))
put("FuzzSplitJSON", "fewshot_coop", json.dumps({"train": [["a/1.jpg", 0, "a_cat"]], "val": [["b/4.jpg", 1, "dog"]]}))
put("FuzzSplitJSON", "numbers", '{"train": [["a.jpg", 1.0, "x"], ["b.jpg", 1e3, "y"], ["c.jpg", true, "z"]], "val": [], "test": null}')

# Config: the shipped YAML files, and YAML + NUL-separated --set assignments.
for folder in ("datasets", "methods"):
    for path in sorted((repo / "configs" / folder).glob("*.yaml"))[:4]:
        put("FuzzConfig", f"{folder}_{path.stem}", path.read_bytes())
put("FuzzConfig", "user_named", "dataset: {name: eurosat}\nmethod: {name: coop}\ntrain: {epochs: 5, shots: 4}\n")
put("FuzzConfig", "user_defined",
    "dataset:\n  name: mine\n  layout: image-folder\n  folder: mine\n  template: \"a photo of {}.\"\n"
    "  classNames: {replaceUnderscores: false, rename: {a: b}}\ncavpt: {topK: 2, layers: [11, 12]}\n")
put("FuzzConfig", "sets", "train:\n  epochs: 3\n\0train.seed=7\0cavpt.layers=[1, -1]\0optim.visual.lr=1e-3\0method.name=vpt_cavpt")
put("FuzzConfig", "anchors", "a: &x {epochs: 2}\ntrain: *x\noptim: {<<: {momentum: 0.5}}\n")
put("FuzzConfig", "bad_set", "\0nokey\0=3\0train.epochs=[[1]]\0eval.split=val")

# Tokenizer: text with the cleaning steps' traps (HTML entities, accents, CJK, emoji, contractions).
for i, text in enumerate([
    "a photo of a cat.",
    "A centered satellite photo of Annual Crop Land.",
    "&amp;lt;b&amp;gt; don't   stop   it's  WE'LL &#39;quoted&#39;",
    "naïve café Ångström ﬁ ligature 12345 3.14",
    "日本語のテキストと한국어 and emoji 🐱‍👤 👍🏽",
    "tabs\tand\nnewlines\r\n and \u200b zero width \ufeff",
    "a" * 300,
]):
    put("FuzzTokenizer", f"text{i}", text)

# JPEG: the small fixture images (baseline RGB, grayscale, Adobe CMYK) and Pillow variants.
try:
    from PIL import Image
    base = Image.open(repo / "Tests/Fixtures/images/landscape_coffee.jpg").convert("RGB").resize((24, 16))
    for name, kwargs, mode in [("baseline", {"quality": 75}, "RGB"), ("progressive", {"progressive": True}, "RGB"),
                               ("gray", {}, "L"), ("cmyk", {}, "CMYK"), ("subsample444", {"subsampling": 0}, "RGB"),
                               ("restart", {"quality": 50, "optimize": True}, "RGB")]:
        buffer = io.BytesIO()
        base.convert(mode).save(buffer, "JPEG", **kwargs)
        put("FuzzJPEG", name, buffer.getvalue())
except ImportError:
    for path in sorted((repo / "Tests/Fixtures/images").glob("*.jpg")):
        if path.stat().st_size < 8192:
            put("FuzzJPEG", path.stem, path.read_bytes())
