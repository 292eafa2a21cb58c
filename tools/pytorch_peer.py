#!/usr/bin/env python3
"""PyTorch peer of `cavpt-dist bench step`: one training step (forward + backward w.r.t. the prompts
only) of a prompt-tuning method on CLIP ViT-B/32, ViT-B/16 or ViT-L/14 shapes (--arch) with random
frozen weights, on the CPU, in fp32 or under torch.autocast("cpu", torch.bfloat16) as a PyTorch user
would write it; eagerly, or with --compile through torch.compile (inductor, or --backend zentorch,
AMD's EPYC backend, which needs the zentorch package and its torch version).

Prints one line: `<method> … median <s>s/step min <s> (<img/s> img/s) peak RSS <MB> MB`.
Methods: vpt-deep (10 prompts per layer, fixed text features), coop (16 learned context tokens,
frozen image side), vlp (both), zs-eval (image forward + logits, no gradient)."""
import argparse
import math
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    """CLIP's pre-LN residual attention block (QuickGELU MLP)."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.in_proj = nn.Linear(d, 3 * d)
        self.out_proj = nn.Linear(d, d)
        self.c_fc, self.c_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def attention(self, x, mask):
        n, S, d = x.shape
        hd = d // self.heads
        q, k, v = self.in_proj(x).split(d, dim=-1)
        q, k, v = (t.view(n, S, self.heads, hd).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
        if mask is not None:
            scores = scores + mask[:S, :S]
        o = scores.softmax(-1) @ v
        return self.out_proj(o.transpose(1, 2).reshape(n, S, d))

    def forward(self, x, mask=None):
        x = x + self.attention(self.ln_1(x), mask)
        h = self.c_fc(self.ln_2(x))
        return x + self.c_proj(h * torch.sigmoid(1.702 * h))


# width, layers, patch of the image tower; text width; embedding width (heads = width / 64).
ARCHS = {"ViT-B/32": (768, 12, 32, 512, 512), "ViT-B/16": (768, 12, 16, 512, 512), "ViT-L/14": (1024, 24, 14, 768, 768)}


class CLIP(nn.Module):
    def __init__(self, arch):
        super().__init__()
        dv, layers, patch, dt, D = ARCHS[arch]
        tokens = (224 // patch) ** 2 + 1
        self.conv1 = nn.Conv2d(3, dv, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(dv ** -0.5 * torch.randn(dv))
        self.visual_positional = nn.Parameter(dv ** -0.5 * torch.randn(tokens, dv))
        self.ln_pre, self.ln_post = nn.LayerNorm(dv), nn.LayerNorm(dv)
        self.visual_blocks = nn.ModuleList(Block(dv, dv // 64) for _ in range(layers))
        self.visual_proj = nn.Parameter(dv ** -0.5 * torch.randn(dv, D))
        self.token_embedding = nn.Embedding(49408, dt)
        self.text_positional = nn.Parameter(0.01 * torch.randn(77, dt))
        self.text_blocks = nn.ModuleList(Block(dt, dt // 64) for _ in range(12))
        self.ln_final = nn.LayerNorm(dt)
        self.text_projection = nn.Parameter(dt ** -0.5 * torch.randn(dt, D))
        self.register_buffer("causal", torch.full((77, 77), float("-inf")).triu_(1))
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)
            p.requires_grad_(False)

    def image(self, pixels, prompts=None):
        n = pixels.shape[0]
        x = self.conv1(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(n, 1, -1), x], 1) + self.visual_positional
        x = self.ln_pre(x)
        for layer, block in enumerate(self.visual_blocks):
            if prompts is not None:   # VPT-Deep: fresh prompts per layer, dropped after it
                x = block(torch.cat([x, prompts[layer].expand(n, -1, -1)], 1))[:, :-prompts.shape[1]]
            else:
                x = block(x)
        return self.ln_post(x[:, 0]) @ self.visual_proj

    def text(self, embeddings, eot):
        x = embeddings + self.text_positional[: embeddings.shape[1]]
        for block in self.text_blocks:
            x = block(x, self.causal)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), eot] @ self.text_projection


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="vpt-deep", choices=["vpt-deep", "coop", "vlp", "zs-eval"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--arch", default="ViT-B/32", choices=sorted(ARCHS))
    p.add_argument("--compile", action="store_true", help="torch.compile the forward (inductor by default)")
    p.add_argument("--backend", default="inductor", help="torch.compile backend: inductor or zentorch")
    a = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    if a.compile and a.backend == "zentorch":
        import zentorch  # noqa: F401  (registers the backend)
    model = CLIP(a.arch).eval()
    dv, layers, _, dt, D = ARCHS[a.arch]
    B, K = a.batch, a.classes
    pixels = torch.randn(B, 3, 224, 224)
    labels = torch.randint(0, K, (B,))
    visual_prompts = nn.Parameter(0.02 * torch.randn(layers, 10, dv))
    context = nn.Parameter(0.02 * torch.randn(16, dt))
    tokens = torch.randint(1, 49000, (K, 77))
    eot = torch.full((K,), 20)
    fixed_text = F.normalize(torch.randn(K, D), dim=-1)

    def learned_text():
        e = model.token_embedding(tokens)
        e = torch.cat([e[:, :1], context.expand(K, -1, -1), e[:, 17:]], 1)
        return F.normalize(model.text(e, eot), dim=-1)

    def forward():
        # The forward and loss (what torch.compile compiles); the backward runs outside it.
        if a.method == "zs-eval":
            with torch.no_grad():
                return (100 * F.normalize(model.image(pixels), dim=-1) @ fixed_text.t()).argmax(-1)
        if a.method == "coop":
            with torch.no_grad():
                features = F.normalize(model.image(pixels), dim=-1)
            text = learned_text()
        else:
            features = F.normalize(model.image(pixels, visual_prompts), dim=-1)
            text = learned_text() if a.method == "vlp" else fixed_text
        return F.cross_entropy(100 * features @ text.t(), labels)

    if a.compile:
        forward = torch.compile(forward, backend=a.backend)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.dtype == "bf16"):
            out = forward()
        if a.method != "zs-eval":
            out.backward()
        return out

    step()
    step()  # compiled forwards settle on the second call
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    how = f"compile:{a.backend}" if a.compile else "eager"
    print(f"{a.method} {a.arch} B={B} K={K} threads={a.threads} {a.dtype} {how}: median {median:.3f}s/step "
          f"min {min(times):.3f} ({B / median:.1f} img/s) peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
