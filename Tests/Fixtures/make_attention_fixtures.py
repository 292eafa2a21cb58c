#!/usr/bin/env python3
"""Golden class-token attention maps (CAVPT paper, Figs. 1 and 4) from the float64 reference.

For the tiny golden model and the gradient batch (grad_inputs.safetensors), the last image layer's
attention probabilities of the class token over every key (class, patches and that layer's prompts),
averaged over heads, restricted to the patch keys: [b, grid, grid]. One map per method, with the
trained tensors of the gradient goldens (params_*.safetensors). Writes golden/attention.safetensors
(`attention.<case>`) and prints the cases. Needs torch, safetensors and open_clip_torch.
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference as ref                              # noqa: E402
from make_fixtures import CLASS_NAMES, TEMPLATE, make_tokenizer   # noqa: E402

GOLDEN = os.path.join(HERE, "golden")
CASES = ["zsclip", "vpt_shallow", "vpt_deep", "vpt_cavpt", "vlp_cavpt"]


def main():
    state = load_file(os.path.join(GOLDEN, "tiny_a_openai.safetensors"))
    clip = ref.CLIP(state)
    tokenizer = make_tokenizer(os.path.join(GOLDEN, "tiny_vocab.txt.gz"), state["token_embedding.weight"].shape[0])
    prompts = ref.make_class_prompts(tokenizer, CLASS_NAMES, TEMPLATE)
    inputs = load_file(os.path.join(GOLDEN, "grad_inputs.safetensors"))
    pixels, labels = inputs["pixels"].double(), inputs["labels"].long()
    cases = {c["name"]: c for c in json.load(open(os.path.join(GOLDEN, "grad_cases.json")))["cases"]}
    last = f"visual.transformer.resblocks.{clip.vision_layers - 1}"
    out = {}
    for name in CASES:
        case = cases[name]
        method = ref.make_method(case["preset"], case["set"])
        params = {k: v.double() for k, v in load_file(os.path.join(GOLDEN, case["params"])).items()} if case["params"] else {}
        captured = []
        original = ref.residual_block

        def hooked(x, weights, prefix, heads, mask=None):
            if prefix == last:
                captured.append(x.detach())
            return original(x, weights, prefix, heads, mask)

        ref.residual_block = hooked
        try:
            with torch.no_grad():
                ref.method_loss(clip, method, params, pixels, labels, prompts, case["epoch"])
        finally:
            ref.residual_block = original
        x = captured[-1]                                           # the prompted pass comes last
        w = clip.weights
        h = ref.layer_norm(x, w, last + ".ln_1")
        b, n, width = h.shape
        heads = clip.vision_heads
        qkv = h @ w[last + ".attn.in_proj_weight"].T + w[last + ".attn.in_proj_bias"]
        q, k, _ = (t.reshape(b, n, heads, width // heads).transpose(1, 2) for t in qkv.split(width, dim=-1))
        scores = (q[:, :, :1] @ k.transpose(-1, -2)) / (width // heads) ** 0.5     # [b, heads, 1, n]
        probabilities = scores.softmax(dim=-1).mean(dim=1)[:, 0]                  # [b, n]
        grid = clip.resolution // clip.patch_size
        patches = probabilities[:, 1:1 + grid * grid].reshape(b, grid, grid)
        out[f"attention.{name}"] = patches.float().contiguous()
        print(f"  {name:12s} tokens in the last layer {n}, patch mass {patches.sum(dim=(1, 2)).mean():.4f}")
    save_file(out, os.path.join(GOLDEN, "attention.safetensors"))
    print(f"wrote {os.path.join(GOLDEN, 'attention.safetensors')}")


if __name__ == "__main__":
    main()
