"""Writes the golden fixtures in Tests/Fixtures/golden/ (tiny vocabulary, tiny random CLIP in OpenAI and
Hugging Face layouts, encoder, gradient, SGD and schedule goldens) from reference.py, deterministically.

    python3 Tests/Fixtures/make_fixtures.py                 # regenerate the committed fixtures
    python3 Tests/Fixtures/make_fixtures.py --vitb32 OUTDIR # random ViT-B/32-shaped model + goldens (~600 MB;
                                                            # for a manual full-size parity check, never commit)

Needs torch, safetensors and open_clip_torch; transformers is optional (cross-check of the HF layout).
Conventions the Swift tests rely on are written down in golden/README.md.
"""

import argparse
import gzip
import io
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref                                          # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "golden")
FULL_VOCAB = os.path.normpath(os.path.join(HERE, "..", "..", "Sources", "CLIP", "Resources", "bpe_simple_vocab_16e6.txt.gz"))
TINY_VOCAB_MERGES = 500
CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711])

TINY_A = dict(vision_width=64, vision_layers=2, patch_size=8, resolution=32,
              text_width=128, text_layers=2, context_length=77, vocab_size=1014, embed_dim=64)
VIT_B32 = dict(vision_width=768, vision_layers=12, patch_size=32, resolution=224,
               text_width=512, text_layers=12, context_length=77, vocab_size=49408, embed_dim=512)

FEATURE_TEXTS = [
    "a photo of a cat.",
    "A DOG'S toy -- 42 times, isn't it?!",
    "  extra   whitespace\tand\nnewlines  ",
    "café naïve résumé 東京 🙂",
    "the quick brown fox jumps over the lazy dog " * 12,        # far past 77 tokens: truncated, EOT last
]
CLASS_NAMES = ["cat", "golden retriever", "airplane", "red fox", "Boeing 747-400", "crème brûlée", "sea lion"]
TEMPLATE = "a photo of a {}."
TOP_K = ["cavpt.topK=3"]

# (case name, preset, --set overrides, epoch)
GRADIENT_CASES = [
    ("zsclip", "zsclip", [], 0),
    ("coop", "coop", [], 0),
    ("vpt_shallow", "vpt_shallow", [], 0),
    ("vpt_deep", "vpt_deep", [], 0),
    ("vlp_deep", "vlp_deep", [], 0),
    ("vpt_cavpt", "vpt_cavpt", TOP_K, 0),               # paper: template, depth 2, classToken, projection, uniform
    ("vpt_cavpt_ignore", "vpt_cavpt", TOP_K + ["cavpt.nonTarget=ignore"], 0),
    ("vpt_cavpt_depth1", "vpt_cavpt", TOP_K + ["cavpt.queryDepth=1"], 0),
    ("vpt_cavpt_residual_query", "vpt_cavpt", TOP_K + ["cavpt.residual=query"], 0),
    ("vpt_cavpt_no_projection", "vpt_cavpt", TOP_K + ["cavpt.outputProjection=false"], 0),
    ("vpt_cavpt_two_layers", "vpt_cavpt", TOP_K + ["cavpt.layers=[1,2]"], 0),
    ("vlp_cavpt", "vlp_cavpt", TOP_K, 0),
    ("vlp_cavpt_learned", "vlp_cavpt", TOP_K + ["cavpt.queries=learned"], 0),
    ("dpt_released_guidance", "dpt_released", TOP_K, 0),
    ("dpt_released_after", "dpt_released", TOP_K, 30),
    ("dpt_released_all_classes", "dpt_released", [], 30),   # default topK 10, capped at K = 7
]


# ----------------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------------

def normal(generator, shape, std, mean=0.0):
    return torch.randn(shape, generator=generator, dtype=torch.float64) * std + mean


def uniform(generator, shape, bound):
    return (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound


def relative_error(actual, expected):
    """max |a − e| / max |e|: the measure the Swift tests use."""
    scale = expected.abs().max().item()
    return (actual - expected).abs().max().item() / (scale if scale > 0 else 1.0)


def save(tensors, name, directory=GOLDEN, metadata=None):
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, os.path.join(directory, name), metadata=metadata)


def f32(t):
    return t.detach().to(torch.float32)


def random_pixels(generator, count, resolution):
    """Uniform [0,1] RGB images normalised with CLIP's mean and std, stored F32 (the values used)."""
    images = torch.rand((count, 3, resolution, resolution), generator=generator, dtype=torch.float64)
    return ((images - CLIP_MEAN.double()[:, None, None]) / CLIP_STD.double()[:, None, None]).float()


# ----------------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------------

def write_tiny_vocab(path):
    """The full file's header line and first 500 merges, with no trailing newline (a trailing newline
    would make open_clip add an empty merge and a 1015th token). gzip with mtime 0 for determinism."""
    lines = gzip.open(FULL_VOCAB).read().decode("utf-8").split("\n")
    text = "\n".join(lines[:1 + TINY_VOCAB_MERGES]).encode("utf-8")
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as archive:
        archive.write(text)
    with open(path, "wb") as f:
        f.write(buffer.getvalue())


def make_tokenizer(bpe_path, expected_vocab):
    from open_clip.tokenizer import SimpleTokenizer
    tokenizer = SimpleTokenizer(bpe_path=bpe_path, context_length=77)
    assert tokenizer.vocab_size == expected_vocab, tokenizer.vocab_size
    assert (tokenizer.sot_token_id, tokenizer.eot_token_id) == (expected_vocab - 2, expected_vocab - 1)
    return tokenizer


# ----------------------------------------------------------------------------------------------------
# Random CLIP in OpenAI names, and the Hugging Face layout
# ----------------------------------------------------------------------------------------------------

def random_clip_state(config, seed):
    """Random frozen CLIP weights, OpenAI / open_clip names, F32 values (stored as they will be loaded).

    Block matrices (in_proj, out_proj, c_fc, c_proj) N(0, 1/width); conv1 and token embedding N(0, 0.02²);
    text positional N(0, 0.01²); visual positional, proj and text_projection N(0, 1/width); class embedding
    N(0, 0.01²); LayerNorm weights 1 + N(0, 0.1²), biases N(0, 0.02²); logit_scale log(1/0.07).
    Why not 0.02 everywhere: then attention was near uniform, QuickGELU near linear and the image features
    nearly independent of the image (300 random images all had the same zero-shot top 3), so a wrong
    attention scale or GELU stayed inside the 1e-4 tolerance and CAVPT's per-image selection went untested.
    """
    g = torch.Generator().manual_seed(seed)
    state = {}

    def block(prefix, width):
        state[prefix + ".ln_1.weight"] = normal(g, width, 0.1, 1.0)
        state[prefix + ".ln_1.bias"] = normal(g, width, 0.02)
        state[prefix + ".attn.in_proj_weight"] = normal(g, (3 * width, width), width ** -0.5)
        state[prefix + ".attn.in_proj_bias"] = normal(g, 3 * width, 0.02)
        state[prefix + ".attn.out_proj.weight"] = normal(g, (width, width), width ** -0.5)
        state[prefix + ".attn.out_proj.bias"] = normal(g, width, 0.02)
        state[prefix + ".ln_2.weight"] = normal(g, width, 0.1, 1.0)
        state[prefix + ".ln_2.bias"] = normal(g, width, 0.02)
        state[prefix + ".mlp.c_fc.weight"] = normal(g, (4 * width, width), width ** -0.5)
        state[prefix + ".mlp.c_fc.bias"] = normal(g, 4 * width, 0.02)
        state[prefix + ".mlp.c_proj.weight"] = normal(g, (width, 4 * width), width ** -0.5)
        state[prefix + ".mlp.c_proj.bias"] = normal(g, width, 0.02)

    d, p = config["vision_width"], config["patch_size"]
    tokens = (config["resolution"] // p) ** 2 + 1
    state["visual.conv1.weight"] = normal(g, (d, 3, p, p), 0.02)
    state["visual.class_embedding"] = normal(g, d, 0.01)
    state["visual.positional_embedding"] = normal(g, (tokens, d), d ** -0.5)
    state["visual.ln_pre.weight"] = normal(g, d, 0.1, 1.0)
    state["visual.ln_pre.bias"] = normal(g, d, 0.02)
    for i in range(config["vision_layers"]):
        block(f"visual.transformer.resblocks.{i}", d)
    state["visual.ln_post.weight"] = normal(g, d, 0.1, 1.0)
    state["visual.ln_post.bias"] = normal(g, d, 0.02)
    state["visual.proj"] = normal(g, (d, config["embed_dim"]), d ** -0.5)

    w, n = config["text_width"], config["context_length"]
    state["token_embedding.weight"] = normal(g, (config["vocab_size"], w), 0.02)
    state["positional_embedding"] = normal(g, (n, w), 0.01)
    for i in range(config["text_layers"]):
        block(f"transformer.resblocks.{i}", w)
    state["ln_final.weight"] = normal(g, w, 0.1, 1.0)
    state["ln_final.bias"] = normal(g, w, 0.02)
    state["text_projection"] = normal(g, (w, config["embed_dim"]), w ** -0.5)
    state["logit_scale"] = torch.tensor(math.log(1 / 0.07), dtype=torch.float64)
    state = {k: v.float() for k, v in state.items()}
    # a benign buffer real OpenAI checkpoints carry: loaders must ignore it
    state["attn_mask"] = torch.full((n, n), float("-inf")).triu(1)
    return state


HF_BLOCK_RENAMES = [(".ln_1.", ".layer_norm1."), (".ln_2.", ".layer_norm2."), (".attn.out_proj.", ".self_attn.out_proj."),
                    (".mlp.c_fc.", ".mlp.fc1."), (".mlp.c_proj.", ".mlp.fc2.")]


def openai_to_hf(state):
    """The same weights under Hugging Face CLIPModel names (q/k/v split, projections transposed)."""
    hf = {}
    for name, tensor in state.items():
        if name == "attn_mask":
            continue
        if name.startswith("visual.transformer.resblocks.") or name.startswith("transformer.resblocks."):
            tower = "vision_model" if name.startswith("visual.") else "text_model"
            rest = name.split("resblocks.", 1)[1]
            if ".attn.in_proj_" in rest:
                layer, kind = rest.split(".attn.in_proj_")
                for part, chunk in zip("qkv", tensor.chunk(3, dim=0)):
                    hf[f"{tower}.encoder.layers.{layer}.self_attn.{part}_proj.{kind}"] = chunk
                continue
            rest = "." + rest
            for old, new in HF_BLOCK_RENAMES:
                rest = rest.replace(old, new)
            hf[f"{tower}.encoder.layers{rest}"] = tensor
            continue
        hf[{
            "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
            "visual.class_embedding": "vision_model.embeddings.class_embedding",
            "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
            "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
            "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
            "visual.ln_post.weight": "vision_model.post_layernorm.weight",
            "visual.ln_post.bias": "vision_model.post_layernorm.bias",
            "visual.proj": "visual_projection.weight",
            "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
            "positional_embedding": "text_model.embeddings.position_embedding.weight",
            "ln_final.weight": "text_model.final_layer_norm.weight",
            "ln_final.bias": "text_model.final_layer_norm.bias",
            "text_projection": "text_projection.weight",
            "logit_scale": "logit_scale",
        }[name]] = tensor.T if name in ("visual.proj", "text_projection") else tensor
    # benign buffers real HF checkpoints carry (I64): loaders must ignore them
    hf["vision_model.embeddings.position_ids"] = torch.arange(state["visual.positional_embedding"].shape[0])[None]
    hf["text_model.embeddings.position_ids"] = torch.arange(state["positional_embedding"].shape[0])[None]
    return hf


def hf_to_openai(hf):
    """Inverse of openai_to_hf (without the buffers), so the reference runs the HF file's exact values."""
    state = {}
    for name, tensor in hf.items():
        if name.endswith("position_ids"):
            continue
        if ".encoder.layers." in name:
            tower, rest = name.split(".encoder.layers.")
            prefix = "visual.transformer.resblocks." if tower == "vision_model" else "transformer.resblocks."
            layer, sub = rest.split(".", 1)
            if sub.startswith("self_attn.q_proj."):
                kind = sub.rsplit(".", 1)[1]
                parts = [hf[f"{tower}.encoder.layers.{layer}.self_attn.{p}_proj.{kind}"] for p in "qkv"]
                state[f"{prefix}{layer}.attn.in_proj_{kind}"] = torch.cat(parts)
                continue
            if sub.startswith("self_attn.k_proj.") or sub.startswith("self_attn.v_proj."):
                continue
            sub = "." + sub
            for old, new in HF_BLOCK_RENAMES:
                sub = sub.replace(new, old)
            state[f"{prefix}{layer}{sub}"] = tensor
            continue
        inverse = {v: k for k, v in {
            "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
            "visual.class_embedding": "vision_model.embeddings.class_embedding",
            "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
            "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
            "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
            "visual.ln_post.weight": "vision_model.post_layernorm.weight",
            "visual.ln_post.bias": "vision_model.post_layernorm.bias",
            "visual.proj": "visual_projection.weight",
            "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
            "positional_embedding": "text_model.embeddings.position_embedding.weight",
            "ln_final.weight": "text_model.final_layer_norm.weight",
            "ln_final.bias": "text_model.final_layer_norm.bias",
            "text_projection": "text_projection.weight",
            "logit_scale": "logit_scale"}.items()}
        openai_name = inverse[name]
        state[openai_name] = tensor.T if openai_name in ("visual.proj", "text_projection") else tensor
    return state


# ----------------------------------------------------------------------------------------------------
# Encoder goldens and independent cross-checks
# ----------------------------------------------------------------------------------------------------

def encoder_outputs(clip, pixels, tokens):
    with torch.no_grad():
        image_features = ref.encode_image(clip, pixels.to(clip.dtype))
        text_features = ref.encode_text(clip, tokens)
        logits = ref.clip_logits(clip, image_features, text_features)
    return image_features, text_features, logits


def open_clip_outputs(state, config, pixels, tokens):
    """The same weights through open_clip's own CLIP code (float64)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    model = CLIP(embed_dim=config["embed_dim"], quick_gelu=True,
                 vision_cfg=CLIPVisionCfg(layers=config["vision_layers"], width=config["vision_width"],
                                          head_width=64, patch_size=config["patch_size"],
                                          image_size=config["resolution"]),
                 text_cfg=CLIPTextCfg(context_length=config["context_length"], vocab_size=config["vocab_size"],
                                      width=config["text_width"], heads=config["text_width"] // 64,
                                      layers=config["text_layers"]))
    weights = {k: v for k, v in state.items() if k != "attn_mask"}
    model.load_state_dict(weights, strict=True)
    model = model.double().eval()
    with torch.no_grad():
        image_features = model.encode_image(pixels.double())
        text_features = model.encode_text(tokens)
        logits = model.logit_scale.exp() * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
    return image_features, text_features, logits


def transformers_outputs(hf_state, config, pixels, tokens):
    """The HF-named weights through transformers.CLIPModel (float64), or None if it is not installed."""
    try:
        from transformers import CLIPConfig, CLIPModel
    except ImportError:
        return None
    common = dict(intermediate_size=4 * config["text_width"], num_hidden_layers=config["text_layers"],
                  hidden_act="quick_gelu", layer_norm_eps=1e-5)
    hf_config = CLIPConfig(
        text_config=dict(common, vocab_size=config["vocab_size"], hidden_size=config["text_width"],
                         num_attention_heads=config["text_width"] // 64,
                         max_position_embeddings=config["context_length"],
                         bos_token_id=config["vocab_size"] - 2, eos_token_id=config["vocab_size"] - 1,
                         pad_token_id=0),
        vision_config=dict(common, hidden_size=config["vision_width"], intermediate_size=4 * config["vision_width"],
                           num_hidden_layers=config["vision_layers"],
                           num_attention_heads=config["vision_width"] // 64,
                           image_size=config["resolution"], patch_size=config["patch_size"]),
        projection_dim=config["embed_dim"])
    hf_config._attn_implementation = "eager"
    model = CLIPModel(hf_config)
    missing, unexpected = model.load_state_dict({k: v.double() if v.is_floating_point() else v
                                                 for k, v in hf_state.items()}, strict=False)
    assert not missing and all(k.endswith("position_ids") for k in unexpected), (missing, unexpected)
    model = model.double().eval()
    with torch.no_grad():
        image_features = model.get_image_features(pixel_values=pixels.double())
        text_features = model.get_text_features(input_ids=tokens)
        image_features = getattr(image_features, "pooler_output", image_features)
        text_features = getattr(text_features, "pooler_output", text_features)
        logits = model.logit_scale.exp() * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
    return image_features, text_features, logits


def compare(label, actual, expected):
    names = ("image_features", "text_features", "logits")
    errors = {n: relative_error(a.double(), e.double()) for n, a, e in zip(names, actual, expected)}
    print(f"  {label}: " + ", ".join(f"{n} {e:.2e}" for n, e in errors.items()))
    return errors


def sensitivity_checks(clip, pixels, tokens, expected):
    """How far common implementation mistakes move the goldens (they must exceed the 1e-4 tolerance)."""
    print("  sensitivity (relative change of the goldens under a deliberate mistake):")
    saved = (ref.quick_gelu, ref.causal_mask, ref.scaled_dot_product_attention)
    try:
        ref.quick_gelu = F.gelu
        compare("GELU instead of QuickGELU", encoder_outputs(clip, pixels, tokens), expected)
        ref.quick_gelu = saved[0]
        ref.causal_mask = lambda n, dtype: torch.zeros((n, n), dtype=dtype)
        compare("no causal mask", encoder_outputs(clip, pixels, tokens), expected)
        ref.causal_mask = saved[1]
        # scores / sqrt(width) instead of / sqrt(head_dim): q shrinks by sqrt(heads)
        ref.scaled_dot_product_attention = lambda q, k, v, mask=None: saved[2](q / math.sqrt(q.shape[1]), k, v, mask)
        compare("attention scale 1/sqrt(width)", encoder_outputs(clip, pixels, tokens), expected)
    finally:
        ref.quick_gelu, ref.causal_mask, ref.scaled_dot_product_attention = saved


def write_encoder_goldens(state, hf_state, config, tokenizer, texts, pixels, directory, prefix, cross_check=True):
    tokens = tokenizer(texts)
    clip = ref.CLIP(state)
    hf_clip = ref.CLIP({k: v.float() for k, v in hf_to_openai(hf_state).items()})       # F16 values, upcast
    outputs = encoder_outputs(clip, pixels, tokens)
    hf_outputs = encoder_outputs(hf_clip, pixels, tokens)
    tensors = {"pixels": pixels, "tokens": tokens}
    for key, value in zip(("image_features", "text_features", "logits"), outputs):
        tensors[key] = f32(value)
    for key, value in zip(("image_features", "text_features", "logits"), hf_outputs):
        tensors["hf_" + key] = f32(value)
    save(tensors, f"{prefix}_features.safetensors", directory, metadata={"texts": json.dumps(texts)})
    with open(os.path.join(directory, f"{prefix}_texts.json"), "w") as f:
        json.dump(texts, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{prefix}: encoder goldens; tokens per text (incl. SOT/EOT):",
          [int((t != 0).sum()) for t in tokens])
    if not cross_check:
        return
    print(" cross-checks (max abs diff / max abs value):")
    # DESIGN §3: running the text encoder on the shortest prefix holding every EOT changes nothing
    short = tokens.argmax(dim=1) < 76                     # texts that were not truncated
    prefix = int(tokens[short].argmax(dim=1).max()) + 1
    with torch.no_grad():
        truncated = ref.encode_text(clip, tokens[short, :prefix])
    print(f"  text encoder on the first {prefix} positions vs all 77 (untruncated texts): "
          f"{relative_error(truncated, outputs[1][short]):.2e}")
    compare("open_clip CLIP vs reference (F32 weights, float64)", open_clip_outputs(state, config, pixels, tokens), outputs)
    hf_check = transformers_outputs(hf_state, config, pixels, tokens)
    if hf_check is None:
        print("  transformers not installed: HF layout checked only through hf_to_openai")
    else:
        compare("transformers CLIPModel vs reference (F16 weights, float64)", hf_check, hf_outputs)
    compare("F16-rounded vs F32 weights (how much the hf_ goldens differ)", hf_outputs, outputs)
    compare("reference in float32 vs float64", encoder_outputs(ref.CLIP(state, torch.float32), pixels, tokens), outputs)
    sensitivity_checks(clip, pixels, tokens, outputs)


# ----------------------------------------------------------------------------------------------------
# Gradient goldens
# ----------------------------------------------------------------------------------------------------

def random_trained_parameters(shapes, seed):
    """Prompts and context N(0, 0.02²); kv_extra N(0, 0.02²); Linear weights and biases U(±1/sqrt(fan_in))
    (PyTorch's default init); LayerNorm weights 1 + N(0, 0.1²), biases N(0, 0.1²), so their gradients and the
    gradients through them are not those of the identity. Values rounded to F32 (what the files hold)."""
    g = torch.Generator().manual_seed(seed)
    params = {}
    for name, shape in shapes.items():
        if name in ("text.ctx", "visual.prompts") or name.endswith("kv_extra"):
            value = normal(g, shape, 0.02)
        elif ".ln_" in name:
            value = normal(g, shape, 0.1, 1.0 if name.endswith("weight") else 0.0)
        else:
            weight_shape = shapes[name.rsplit(".", 1)[0] + ".weight"]
            value = uniform(g, shape, weight_shape[1] ** -0.5)
        params[name] = value.float()
    return params


def loss_and_gradients(clip, method, params, pixels, labels, prompts, epoch, dtype):
    leaves = {k: v.to(dtype).requires_grad_(True) for k, v in params.items()}
    loss = ref.method_loss(clip, method, leaves, pixels.to(dtype), labels, prompts, epoch)
    grads = torch.autograd.grad(loss, list(leaves.values())) if leaves else []
    return loss.detach(), dict(zip(leaves.keys(), grads))


def choose_batch(clip, prompts, count, resolution, top_k):
    """Six images picked from 64 random ones: each with a clear zero-shot top-K boundary and clear order (so a
    float32 implementation selects the same classes in the same order), as many different top-K sets as
    possible (so selecting per image is tested); labels: even images take a class inside their top-K (a
    different slot each time), odd ones a class outside it."""
    candidates = random_pixels(torch.Generator().manual_seed(100), 64, resolution)
    with torch.no_grad():
        logits = ref.clip_logits(clip, ref.encode_image(clip, candidates.double()),
                                 ref.encode_text(clip, prompts.template_tokens))
    ranked = ref.select_classes(logits, 0)
    ordered = logits.gather(1, ranked)
    boundary_gap = ordered[:, top_k - 1] - ordered[:, top_k]
    order_gap = (ordered[:, :-1] - ordered[:, 1:]).min(dim=1).values
    usable = [i for i in range(len(candidates)) if boundary_gap[i] > 0.05 and order_gap[i] > 1e-3]
    chosen, seen = [], set()
    for i in usable:                                   # first pass: one image per new top-K set
        top = tuple(sorted(ranked[i, :top_k].tolist()))
        if top not in seen and len(chosen) < count:
            chosen.append(i)
            seen.add(top)
    chosen += [i for i in usable if i not in chosen][:count - len(chosen)]
    pixels, ranked, logits = candidates[chosen], ranked[chosen], logits[chosen]
    labels = torch.tensor([ranked[i, (i // 2) % top_k] if i % 2 == 0 else
                           ranked[i, top_k + (i // 2) % (ranked.shape[1] - top_k)] for i in range(count)])
    print(f"gradient batch: candidates {chosen}, {len(seen)} distinct top-{top_k} sets, "
          f"min boundary gap {boundary_gap[chosen].min():.3f}, min adjacent gap {order_gap[chosen].min():.4f}, "
          f"labels {labels.tolist()}")
    print("  zero-shot ranking per image:", ranked.tolist())
    return pixels, labels, logits


def write_gradient_goldens(state, tokenizer):
    clip = ref.CLIP(state)
    clip32 = ref.CLIP(state, torch.float32)
    prompts = ref.make_class_prompts(tokenizer, CLASS_NAMES, TEMPLATE)
    x_token = tokenizer.encoder["x</w>"]
    assert (prompts.coop_tokens[:, 1:1 + ref.CONTEXT_TOKENS] == x_token).all(), "each X must be one token"
    assert (prompts.coop_tokens[:, 1 + ref.CONTEXT_TOKENS] != x_token).all()
    pixels, labels, zero_shot_logits = choose_batch(clip, prompts, 6, TINY_A["resolution"], 3)
    save({"pixels": pixels, "labels": labels}, "grad_inputs.safetensors")
    with open(os.path.join(GOLDEN, "classes.txt"), "w") as f:
        f.write("\n".join(CLASS_NAMES) + "\n")

    params_by_structure = {}
    listed = []
    for case, preset, overrides, epoch in GRADIENT_CASES:
        method = ref.make_method(preset, overrides)
        shapes = ref.trained_parameter_shapes(method, clip, len(CLASS_NAMES))
        structure = tuple(shapes.items())
        if structure not in params_by_structure and shapes:
            # cases with the same trained tensors share one params file (keeps golden/ small)
            params = random_trained_parameters(shapes, 1000 + len(params_by_structure))
            params_by_structure[structure] = (f"params_{case}.safetensors", params)
            save(params, f"params_{case}.safetensors")
        params_file, params = params_by_structure.get(structure, (None, {}))

        loss, grads = loss_and_gradients(clip, method, params, pixels, labels, prompts, epoch, torch.float64)
        tensors = {"loss": f32(loss).reshape(1)}
        tensors.update({"grad." + k: f32(v) for k, v in grads.items()})
        if method.cavpt:
            with torch.no_grad():
                tensors["selected"] = ref.select_classes(zero_shot_logits, method.top_k)
        save(tensors, f"grad_{case}.safetensors")

        # float32 run of the same reference: the goldens must be reachable by a float32 implementation
        loss32, grads32 = loss_and_gradients(clip32, method, params, pixels, labels, prompts, epoch, torch.float32)
        worst = max([relative_error(loss32.double(), loss)] +
                    [relative_error(grads32[k].double(), v) for k, v in grads.items()])
        smallest = min([v.abs().max().item() for v in grads.values()], default=float("nan"))
        print(f"  {case:28s} loss {loss.item():.6f}  float32-vs-float64 worst {worst:.1e}  "
              f"smallest max|grad| {smallest:.1e}")
        assert worst < 1e-4, f"{case}: float32 reference differs by {worst}"
        listed.append({"name": case, "preset": preset, "set": overrides, "epoch": epoch,
                       "params": params_file, "golden": f"grad_{case}.safetensors",
                       "trained": {k: list(v) for k, v in shapes.items()}})

    document = {"model": "tiny_a_openai.safetensors", "vocab": "tiny_vocab.txt.gz", "classes": "classes.txt",
                "template": TEMPLATE, "pixels": "grad_inputs.safetensors", "labels": "grad_inputs.safetensors",
                "tolerance": 1e-3, "cases": listed}
    with open(os.path.join(GOLDEN, "grad_cases.json"), "w") as f:
        json.dump(document, f, indent=1)
        f.write("\n")
    stop_gradient_check(clip, prompts, pixels, labels, params_by_structure)


def stop_gradient_check(clip, prompts, pixels, labels, params_by_structure):
    """Removing DESIGN §3.1's stopgrad on the CAVPT keys/values must visibly change the visual-prompt gradient."""
    method = ref.make_method("vpt_cavpt", TOP_K)
    shapes = ref.trained_parameter_shapes(method, clip, len(CLASS_NAMES))
    params = params_by_structure[tuple(shapes.items())][1]
    _, expected = loss_and_gradients(clip, method, params, pixels, labels, prompts, 0, torch.float64)
    saved = ref.stop_gradient
    ref.stop_gradient = lambda x: x
    try:
        _, changed = loss_and_gradients(clip, method, params, pixels, labels, prompts, 0, torch.float64)
    finally:
        ref.stop_gradient = saved
    print(f"  sensitivity: without stopgrad on X_l, grad.visual.prompts changes by "
          f"{relative_error(changed['visual.prompts'], expected['visual.prompts']):.2e}")


# ----------------------------------------------------------------------------------------------------
# SGD and schedule goldens
# ----------------------------------------------------------------------------------------------------

def write_sgd_golden():
    """Three torch.optim.SGD steps (float32, foreach off) with a different lr each step."""
    g = torch.Generator().manual_seed(7)
    param0 = torch.randn((4, 5), generator=g)
    grads = [torch.randn((4, 5), generator=g) for _ in range(3)]
    lrs = [0.01, 0.005, 0.002]
    param = torch.nn.Parameter(param0.clone())
    optimizer = torch.optim.SGD([param], lr=lrs[0], momentum=0.9, weight_decay=5e-4, dampening=0,
                                nesterov=False, foreach=False)
    tensors = {"param": param0, "lr": torch.tensor(lrs), "momentum": torch.tensor([0.9]),
               "weight_decay": torch.tensor([5e-4])}
    reference_param, reference_buffer = param0.double(), None
    for step, (grad, lr) in enumerate(zip(grads, lrs), start=1):
        optimizer.param_groups[0]["lr"] = lr
        param.grad = grad.clone()
        optimizer.step()
        tensors[f"grad{step}"] = grad
        tensors[f"param{step}"] = param.detach().clone()
        tensors[f"momentum_buffer{step}"] = optimizer.state[param]["momentum_buffer"].clone()
        reference_param, reference_buffer = ref.sgd_step(reference_param, grad.double(), reference_buffer, lr)
        assert relative_error(reference_param.float(), tensors[f"param{step}"]) < 1e-6
    save(tensors, "sgd.safetensors")
    print("sgd: torch.optim.SGD agrees with reference.sgd_step")


def dassl_schedule(lr, warmup_epochs, warmup_lr, epochs, torch1_semantics):
    """Per-epoch lr of Dassl's ConstantWarmupScheduler wrapping CosineAnnealingLR(T_max = epochs), with
    WARMUP_RECOUNT true (its default), stepped once per epoch. A re-statement of its stepping logic for the
    README comparison: the wrapper sets the constant lr, and at epoch W asks the cosine scheduler, still at
    its step 0, for an lr. PyTorch 1.x answers base_lr there (torch1_semantics); the installed torch is run
    as it is."""
    if torch1_semantics:
        rates = [warmup_lr] * warmup_epochs + [lr]
        while len(rates) < epochs:                         # CosineAnnealingLR's recursive form
            step = len(rates) - warmup_epochs
            rates.append((1 + math.cos(math.pi * step / epochs)) / (1 + math.cos(math.pi * (step - 1) / epochs))
                         * rates[-1])
        return rates
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    optimizer.param_groups[0]["lr"] = warmup_lr
    warmup_steps, rates = 0, []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if warmup_steps >= warmup_epochs:
            cosine.step()
        else:
            warmup_steps += 1
            optimizer.param_groups[0]["lr"] = cosine.get_lr()[0] if warmup_steps >= warmup_epochs else warmup_lr
    return rates


def write_schedule_golden():
    import warnings
    schedules = []
    for lr, warmup, warmup_lr, epochs in [(0.002, 1, 1e-5, 200), (0.01, 10, 1e-5, 200)]:
        rates = [ref.learning_rate(e, lr, warmup, warmup_lr, epochs) for e in range(epochs)]
        schedules.append({"lr": lr, "warmupEpochs": warmup, "warmupLR": warmup_lr, "epochs": epochs,
                          "lrPerEpoch": rates})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for label, torch1 in ((f"Dassl on torch 1.x", True), (f"Dassl on torch {torch.__version__}", False)):
                dassl = dassl_schedule(lr, warmup, warmup_lr, epochs, torch1)
                print(f"schedule lr {lr} warmup {warmup}: DESIGN vs {label}: max |diff| "
                      f"{max(abs(a - b) for a, b in zip(rates, dassl)):.3e} (epoch {warmup}: {rates[warmup]:.6g} vs "
                      f"{dassl[warmup]:.6g}; epoch {epochs - 1}: {rates[-1]:.6g} vs {dassl[-1]:.6g})")
    with open(os.path.join(GOLDEN, "schedule.json"), "w") as f:
        json.dump({"schedules": schedules}, f, indent=1)
        f.write("\n")


# ----------------------------------------------------------------------------------------------------

def make_committed_fixtures():
    os.makedirs(GOLDEN, exist_ok=True)
    torch.set_num_threads(1)              # same summation order on every run
    torch.set_grad_enabled(True)
    vocab_path = os.path.join(GOLDEN, "tiny_vocab.txt.gz")
    write_tiny_vocab(vocab_path)
    tokenizer = make_tokenizer(vocab_path, TINY_A["vocab_size"])
    print(f"tiny vocab: V = {tokenizer.vocab_size}, SOT = {tokenizer.sot_token_id}, EOT = {tokenizer.eot_token_id}")

    state = random_clip_state(TINY_A, seed=0)
    save(state, "tiny_a_openai.safetensors")
    hf_state = {k: v.half() if v.is_floating_point() else v for k, v in openai_to_hf(state).items()}
    save(hf_state, "tiny_a_hf_f16.safetensors")
    pixels = random_pixels(torch.Generator().manual_seed(1), 4, TINY_A["resolution"])
    write_encoder_goldens(state, hf_state, TINY_A, tokenizer, FEATURE_TEXTS, pixels, GOLDEN, "tiny_a")

    write_gradient_goldens(state, tokenizer)
    write_sgd_golden()
    write_schedule_golden()
    total = sum(os.path.getsize(os.path.join(GOLDEN, f)) for f in os.listdir(GOLDEN))
    print(f"golden/: {len(os.listdir(GOLDEN))} files, {total / 1e6:.2f} MB")


def make_vitb32(directory):
    os.makedirs(directory, exist_ok=True)
    tokenizer = make_tokenizer(FULL_VOCAB, VIT_B32["vocab_size"])
    state = random_clip_state(VIT_B32, seed=32)
    save(state, "vitb32_openai.safetensors", directory)
    hf_state = {k: v.half() if v.is_floating_point() else v for k, v in openai_to_hf(state).items()}
    save(hf_state, "vitb32_hf_f16.safetensors", directory)
    pixels = random_pixels(torch.Generator().manual_seed(2), 2, VIT_B32["resolution"])
    texts = ["a photo of a golden retriever.", "A satellite photo of Annual Crop Land, 2023!", "🙂 crème brûlée"]
    write_encoder_goldens(state, hf_state, VIT_B32, tokenizer, texts, pixels, directory, "vitb32", cross_check=True)
    print(f"wrote {directory}: vitb32_openai.safetensors, vitb32_hf_f16.safetensors, vitb32_features.safetensors, "
          f"vitb32_texts.json (vocab: {FULL_VOCAB})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vitb32", metavar="OUTDIR", help="write the full-size random model and goldens there")
    arguments = parser.parse_args()
    if arguments.vitb32:
        make_vitb32(arguments.vitb32)
    else:
        make_committed_fixtures()
