#!/usr/bin/env python3
"""Image-pipeline fixtures for DataTests: small JPEGs made from scikit-image's sample photos, and
what Pillow + torchvision make of them (decode, test transform, train crop + flip), plus
torchvision RandomResizedCrop draws, boxes and statistics.

Run from anywhere (developer time only; tests read the committed outputs):
    python3 Tests/Fixtures/make_image_fixtures.py
Needs pillow, scikit-image, torch, torchvision. Outputs go to Tests/Fixtures/images/:
*.jpg inputs, *.rgb raw uint8 [H, W, 3] arrays, and manifest.json describing them.
"""
import json
import math
import os

import numpy as np
import skimage.data
import torch
import torchvision
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "images")
BICUBIC = T.InterpolationMode.BICUBIC
SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)


def save_raw(name, image):
    array = np.asarray(image, dtype=np.uint8)
    assert array.ndim == 3 and array.shape[2] == 3, array.shape
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(array.tobytes())
    return name


def photo(name):
    return Image.fromarray(getattr(skimage.data, name)())


# (file, source photo, crop box in the photo or None, size, mode, save options, store decode?, test resolutions)
SOURCES = [
    ("landscape_coffee.jpg", "coffee", None, (320, 240), "RGB", dict(quality=90), False, [224, 64]),
    ("portrait_astronaut.jpg", "astronaut", (96, 0, 416, 512), (150, 200), "RGB",
     dict(quality=92, subsampling=0), True, [224, 64]),
    ("gray_camera.jpg", "camera", None, (120, 96), "L", dict(quality=90), True, [64]),
    ("cmyk_chelsea.jpg", "chelsea", None, (120, 80), "CMYK", dict(quality=90), True, [64]),
    ("small_rocket.jpg", "rocket", None, (40, 60), "RGB", dict(quality=88, subsampling=1, progressive=True),
     True, [64]),
    ("wide_astronaut.jpg", "astronaut", (0, 200, 512, 328), (200, 50), "RGB", dict(quality=90), True, [64]),
]


def make_images():
    entries = []
    for file, source, crop, size, mode, options, store_decode, resolutions in SOURCES:
        img = photo(source)
        if crop is not None:
            img = img.crop(crop)
        img = img.convert("RGB").resize(size, Image.LANCZOS).convert(mode)
        path = os.path.join(OUT, file)
        img.save(path, "JPEG", **options)

        decoded = Image.open(path).convert("RGB")   # what Dassl's read_image does
        stem = file[:-4]
        entry = dict(file=file, mode=mode, width=decoded.width, height=decoded.height,
                     decoded=save_raw(stem + ".rgb", decoded) if store_decode else None, test=[], train=[])
        for r in resolutions:
            expected = T.CenterCrop(r)(T.Resize(r, interpolation=BICUBIC)(decoded))
            entry["test"].append(dict(resolution=r, file=save_raw(f"{stem}.test{r}.rgb", expected)))
        entries.append(entry)
    return entries


def add_train_crops(entries):
    """RandomResizedCrop boxes from torchvision, then crop + resize + flip by torchvision on PIL."""
    cases = [(entries[0], 3, True, 64), (entries[1], 11, False, 64)]
    cases += [(entry, 100 + k, k % 2 == 0, 32) for entry in entries for k in range(2)]
    for entry, seed, flip, r in cases:
        decoded = Image.open(os.path.join(OUT, entry["file"])).convert("RGB")
        torch.manual_seed(seed)
        i, j, h, w = T.RandomResizedCrop.get_params(decoded, list(SCALE), list(RATIO))
        out = F.resized_crop(decoded, i, j, h, w, [r, r], interpolation=BICUBIC)
        if flip:
            out = F.hflip(out)
        name = f"{entry['file'][:-4]}.train{r}.seed{seed}.rgb"
        entry["train"].append(dict(box=[i, j, h, w], flip=flip, resolution=r, file=save_raw(name, out)))


def resize_cases():
    """Pillow crop + resize for boxes and sizes around the pass-order rule (Pillow 13 resamples
    vertically first when the height loses more than twice the pixels the width loses), up and down."""
    source = "portrait_astronaut.jpg"  # 150x200, its Pillow decode is stored
    decoded = Image.open(os.path.join(OUT, source)).convert("RGB")
    # (top, left, height, width) box, then output (width, height)
    specs = [
        ((10, 20, 90, 72), (64, 64)),     # height loses 26 > 2 * 8: vertical first
        ((10, 20, 80, 72), (64, 64)),     # 16 == 2 * 8: horizontal first
        ((10, 20, 81, 72), (64, 64)),     # 17 > 16: vertical first
        ((0, 0, 200, 150), (7, 5)),       # strong reduction
        ((5, 7, 30, 20), (41, 50)),       # upscale both
        ((5, 7, 30, 20), (13, 50)),       # shrink width, grow height
        ((5, 7, 30, 20), (33, 11)),       # grow width, shrink height
        ((100, 100, 1, 1), (9, 9)),       # one pixel
        ((0, 0, 200, 150), (150, 37)),    # height only
        ((0, 0, 200, 150), (29, 200)),    # width only
        ((20, 60, 170, 23), (20, 19)),    # tall crop
    ]
    cases = []
    for n, ((top, left, height, width), (out_w, out_h)) in enumerate(specs):
        out = decoded.crop((left, top, left + width, top + height)).resize((out_w, out_h), Image.BICUBIC)
        cases.append(dict(file=source, box=[top, left, height, width], width=out_w, height=out_h,
                          expected=save_raw(f"resize{n}.rgb", out)))
    return cases


def replayed_get_params(width, height):
    """torchvision's get_params, step for step on the same torch generator, recording each draw."""
    area = height * width
    log_ratio = torch.log(torch.tensor(RATIO))
    draws = []
    for _ in range(10):
        lo, hi = log_ratio[0].item(), log_ratio[1].item()
        u_area = torch.empty(1).uniform_(SCALE[0], SCALE[1]).item()
        u_log = torch.empty(1).uniform_(log_ratio[0], log_ratio[1])
        draws.append(dict(kind="uniform", lo=SCALE[0], hi=SCALE[1], value=u_area))
        draws.append(dict(kind="uniform", lo=lo, hi=hi, value=u_log.item()))
        target_area = area * u_area
        aspect_ratio = torch.exp(u_log).item()
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = torch.randint(0, height - h + 1, size=(1,)).item()
            j = torch.randint(0, width - w + 1, size=(1,)).item()
            draws.append(dict(kind="integer", upper=height - h + 1, value=i))
            draws.append(dict(kind="integer", upper=width - w + 1, value=j))
            return (i, j, h, w), draws, False
    in_ratio = float(width) / float(height)
    if in_ratio < min(RATIO):
        w, h = width, int(round(width / min(RATIO)))
    elif in_ratio > max(RATIO):
        h, w = height, int(round(height * max(RATIO)))
    else:
        w, h = width, height
    return ((height - h) // 2, (width - w) // 2, h, w), draws, True


def rrc_cases():
    cases = []
    sizes = [(320, 240), (150, 200), (400, 100), (100, 400), (60, 40), (1000, 30), (30, 1000), (7, 5)]
    for width, height in sizes:
        for seed in range(6):
            dummy = torch.empty(3, height, width)
            torch.manual_seed(seed)
            reference = T.RandomResizedCrop.get_params(dummy, list(SCALE), list(RATIO))
            torch.manual_seed(seed)
            box, draws, fallback = replayed_get_params(width, height)
            assert tuple(box) == tuple(reference), (width, height, seed, box, reference)
            cases.append(dict(width=width, height=height, seed=seed, draws=draws, box=list(box), fallback=fallback))
    return cases


def rrc_stats(samples=20000):
    stats = []
    for width, height in [(320, 240), (400, 100), (100, 400)]:
        torch.manual_seed(1234)
        areas, log_aspects, fallbacks, aspects = [], [], 0, []
        for _ in range(samples):
            (i, j, h, w), _, fallback = replayed_get_params(width, height)
            areas.append(h * w / (height * width))
            log_aspects.append(math.log(w / h))
            if fallback:
                fallbacks += 1
            else:
                aspects.append(w / h)
        stats.append(dict(width=width, height=height, samples=samples,
                          meanAreaFraction=float(np.mean(areas)), stdAreaFraction=float(np.std(areas)),
                          meanLogAspect=float(np.mean(log_aspects)), fallbackRate=fallbacks / samples,
                          minAspect=min(aspects), maxAspect=max(aspects)))
    return stats


def main():
    os.makedirs(OUT, exist_ok=True)
    entries = make_images()
    add_train_crops(entries)
    manifest = dict(
        generator="Tests/Fixtures/make_image_fixtures.py",
        versions=dict(pillow=Image.__version__, torchvision=torchvision.__version__, torch=torch.__version__),
        images=entries, resizeCases=resize_cases(), rrcCases=rrc_cases(), rrcStats=rrc_stats())
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total / 1024:.0f} KiB to {OUT}")


if __name__ == "__main__":
    main()
