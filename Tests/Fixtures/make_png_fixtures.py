#!/usr/bin/env python3
"""PNG fixtures for the libpng decoder: small images in every PNG colour layout, and the RGB bytes
Pillow's Image.open(f).convert("RGB") gives for each (the contract cavpt-dist's decoder meets).

Writes Tests/Fixtures/images/png/<name>.png and <name>.rgb, plus manifest.json (name → width,
height). Needs Pillow and numpy (developer-time only).
"""
import json
import os

import numpy as np
from PIL import Image

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "images", "png")


def main():
    os.makedirs(HERE, exist_ok=True)
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, size=(13, 17, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, size=(13, 17), dtype=np.uint8)
    images = {
        "rgb": Image.fromarray(base, "RGB"),
        "rgba": Image.fromarray(np.dstack([base, alpha]), "RGBA"),
        "gray": Image.fromarray(base[:, :, 0], "L"),
        "gray_alpha": Image.fromarray(np.dstack([base[:, :, 1], alpha]), "LA"),
        "palette": Image.fromarray(base, "RGB").quantize(colors=23),
        "bilevel": Image.fromarray(base[:, :, 2] > 128).convert("1"),
        "rgb16": None,
        "interlaced": Image.fromarray(base, "RGB"),
    }
    manifest = {}
    for name, image in images.items():
        path = os.path.join(HERE, name + ".png")
        if name == "rgb16":
            # 16-bit RGB: Pillow reads it as 8-bit RGB from the high bytes.
            import zlib, struct
            data16 = (base.astype(np.uint16) * 257 + rng.integers(0, 256, size=base.shape).astype(np.uint16) % 7).astype(">u2")
            raw = b"".join(b"\x00" + data16[y].tobytes() for y in range(base.shape[0]))
            def chunk(t, d):
                return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
            png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", base.shape[1], base.shape[0], 16, 2, 0, 0, 0))
            png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
            open(path, "wb").write(png)
        elif name == "interlaced":
            # Adam7, written by hand (Pillow does not write interlaced PNGs).
            import zlib, struct
            arr = np.asarray(image)
            passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
            raw = b""
            for x0, y0, dx, dy in passes:
                sub = arr[y0::dy, x0::dx]
                if sub.size == 0:
                    continue
                raw += b"".join(b"\x00" + row.tobytes() for row in sub)
            def chunk(t, d):
                return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
            png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", arr.shape[1], arr.shape[0], 8, 2, 0, 0, 1))
            png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
            open(path, "wb").write(png)
        else:
            image.save(path)
        rgb = Image.open(path).convert("RGB")
        open(os.path.join(HERE, name + ".rgb"), "wb").write(rgb.tobytes())
        manifest[name] = {"width": rgb.width, "height": rgb.height, "mode": Image.open(path).mode}
    json.dump(manifest, open(os.path.join(HERE, "manifest.json"), "w"), indent=1, sort_keys=True)
    print(f"wrote {len(manifest)} PNG fixtures to {HERE}: " + ", ".join(f"{k} ({v['mode']})" for k, v in manifest.items()))


if __name__ == "__main__":
    main()
