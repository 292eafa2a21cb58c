#!/usr/bin/env python3
"""Fixtures for the safetensors reader and the weight-name mapping (Tests/CLIPTests).

    python3 Tests/Fixtures/make_weight_io_fixtures.py

Writes (committed; the tests need no Python):
  Tests/Fixtures/safetensors/dtypes.safetensors  F32/F16/BF16/F64 and I64/I32 tensors written by the
                                                 `safetensors` package, with __metadata__
  Tests/Fixtures/safetensors/dtypes.json         the F32 value of every float element (as IEEE bit
                                                 patterns, so NaN/inf/-0 compare exactly) and the integers
  Tests/Fixtures/safetensors/clip_names.json     parameter names and shapes of the same tiny CLIP as
                                                 built by open_clip (OpenAI names) and by transformers
                                                 (Hugging Face CLIPModel names), plus the architecture

Needs: torch, safetensors, open_clip_torch, transformers.
"""
import json
import os

import numpy as np
import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "safetensors")


def bits(t):
    return t.float().contiguous().view(torch.int32).flatten().tolist()


def dtypes():
    g = torch.Generator().manual_seed(0)
    special = torch.tensor([0.0, -0.0, 1.0, -2.5, 65504.0, 6.0e-8, 1.0e-5, float("inf"), float("-inf"), float("nan")])
    tensors = {
        "f32": torch.randn(2, 3, generator=g),
        "f16": torch.cat([torch.randn(14, generator=g), special]).reshape(4, 6).half(),
        "bf16": torch.cat([torch.randn(6, generator=g) * 1000, special]).reshape(2, 8).bfloat16(),
        "f64": torch.randn(3, generator=g).double(),
        "scalar": torch.tensor(4.6052, dtype=torch.float16),
        "empty": torch.zeros(0, 4),
        "labels": torch.tensor([3, 0, 9, -1, 2**40], dtype=torch.int64),
        "i32": torch.tensor([[1, -2], [3, 2**31 - 1]], dtype=torch.int32),
    }
    path = os.path.join(OUT, "dtypes.safetensors")
    save_file(tensors, path, metadata={"format": "pt", "note": "cavpt-dist fixture"})
    expected = {"metadata": {"format": "pt", "note": "cavpt-dist fixture"}, "floats": {}, "integers": {}}
    for name, t in tensors.items():
        if t.dtype in (torch.int64, torch.int32):
            expected["integers"][name] = {"shape": list(t.shape), "values": t.flatten().tolist()}
        else:
            # torch's own conversion to float32 is the reference (for F64: round to nearest).
            expected["floats"][name] = {"shape": list(t.shape), "dtype": str(t.dtype), "bits": bits(t)}
    with open(os.path.join(OUT, "dtypes.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


def names():
    import open_clip
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    from transformers import CLIPConfig, CLIPModel

    arch = dict(vision_width=128, vision_layers=3, patch=8, resolution=32, embed=32,
                text_width=64, text_layers=2, vocab=1515, context=77, vision_mlp=512, text_mlp=256)
    oc = CLIP(embed_dim=arch["embed"],
              vision_cfg=CLIPVisionCfg(layers=arch["vision_layers"], width=arch["vision_width"],
                                       patch_size=arch["patch"], image_size=arch["resolution"]),
              text_cfg=CLIPTextCfg(context_length=arch["context"], vocab_size=arch["vocab"],
                                   width=arch["text_width"], heads=arch["text_width"] // 64,
                                   layers=arch["text_layers"]),
              quick_gelu=True)
    hf = CLIPModel(CLIPConfig(
        text_config=dict(hidden_size=arch["text_width"], intermediate_size=arch["text_mlp"],
                         num_hidden_layers=arch["text_layers"], num_attention_heads=arch["text_width"] // 64,
                         vocab_size=arch["vocab"], max_position_embeddings=arch["context"]),
        vision_config=dict(hidden_size=arch["vision_width"], intermediate_size=arch["vision_mlp"],
                           num_hidden_layers=arch["vision_layers"], num_attention_heads=arch["vision_width"] // 64,
                           image_size=arch["resolution"], patch_size=arch["patch"]),
        projection_dim=arch["embed"]))
    import transformers
    result = {
        "architecture": arch,
        "open_clip_version": open_clip.__version__,
        "transformers_version": transformers.__version__,
        "openai": {k: list(v.shape) for k, v in oc.state_dict().items()},
        "huggingface": {k: list(v.shape) for k, v in hf.state_dict().items()},
    }
    with open(os.path.join(OUT, "clip_names.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print("openai", len(result["openai"]), "huggingface", len(result["huggingface"]))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    dtypes()
    names()
