"""PyTorch reference of cavpt-dist docs/DESIGN.md (§1 frozen CLIP, §3 prompt-tuning methods, CAVPT and losses,
§4 SGD and schedules), written for clarity, not speed; make_fixtures.py runs it in float64 to write goldens.

Notation (docs/DESIGN.md): b images, S image tokens (class token + patches), d image width, D embedding width,
K classes, K_N selected classes per image, L layers, P visual prompt length, M text context length.
Every function works in the dtype of the tensors it is given (float64 for goldens, float32 for the
precision check in make_fixtures.py).
"""

import dataclasses
import json
import math

import torch
import torch.nn.functional as F

TEXT_CONTEXT_LENGTH = 77       # M in DESIGN is the number of learned "X" tokens, not this
HEAD_DIM = 64                  # heads = width / 64 in every CLIP
LAYER_NORM_EPS = 1e-5
CONTEXT_TOKENS = 16            # M: learned CoOp context vectors
VISUAL_PROMPT_TOKENS = 10      # P: VPT prompt tokens per layer
CAVPT_EXTRA_TOKENS = 10        # rows of cavpt.{l}.kv_extra
CAVPT_ATTENTION_DIM = 32       # W_q, W_k: d -> 32


# ----------------------------------------------------------------------------------------------------
# Frozen CLIP (DESIGN §1)
# ----------------------------------------------------------------------------------------------------

class CLIP:
    """Frozen CLIP weights under OpenAI / open_clip names, with the architecture read off the shapes."""

    BENIGN_BUFFERS = ("attn_mask",)

    def __init__(self, state, dtype=torch.float64):
        self.weights = {name: tensor.to(dtype) for name, tensor in state.items()
                        if name.split(".")[-1] not in self.BENIGN_BUFFERS}
        w = self.weights
        self.vision_width, _, self.patch_size, _ = w["visual.conv1.weight"].shape
        self.vision_layers = _count_blocks(w, "visual.transformer.resblocks.")
        self.vision_heads = self.vision_width // HEAD_DIM
        self.image_tokens = w["visual.positional_embedding"].shape[0]          # S = grid² + 1
        self.resolution = self.patch_size * math.isqrt(self.image_tokens - 1)
        self.vocab_size, self.text_width = w["token_embedding.weight"].shape
        self.text_layers = _count_blocks(w, "transformer.resblocks.")
        self.text_heads = self.text_width // HEAD_DIM
        self.embed_dim = w["text_projection"].shape[1]
        self.dtype = dtype

    @property
    def logit_scale(self):
        return self.weights["logit_scale"].exp()


def _count_blocks(weights, prefix):
    return len({name[len(prefix):].split(".")[0] for name in weights if name.startswith(prefix)})


def layer_norm(x, weights, prefix):
    return F.layer_norm(x, x.shape[-1:], weights[prefix + ".weight"], weights[prefix + ".bias"], LAYER_NORM_EPS)


def linear(x, weights, prefix):
    # y = x Wᵀ + b with W stored [out, in] like PyTorch
    return x @ weights[prefix + ".weight"].T + weights[prefix + ".bias"]


def quick_gelu(z):
    return z * torch.sigmoid(1.702 * z)


def stop_gradient(x):
    return x.detach()


def causal_mask(length, dtype):
    # additive mask: position i may attend to j <= i only
    return torch.full((length, length), float("-inf"), dtype=dtype).triu(1)


def scaled_dot_product_attention(q, k, v, mask=None):
    # q, k, v: [b, heads, n, head_dim]
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores + mask
    return scores.softmax(dim=-1) @ v


def multi_head_attention(x, weights, prefix, heads, mask=None):
    """torch.nn.MultiheadAttention with packed in_proj, as CLIP stores it.   x: [b, n, width]"""
    b, n, width = x.shape
    qkv = x @ weights[prefix + ".in_proj_weight"].T + weights[prefix + ".in_proj_bias"]    # [b, n, 3·width]
    q, k, v = (t.reshape(b, n, heads, width // heads).transpose(1, 2) for t in qkv.split(width, dim=-1))
    out = scaled_dot_product_attention(q, k, v, mask).transpose(1, 2).reshape(b, n, width)
    return linear(out, weights, prefix + ".out_proj")


def residual_block(x, weights, prefix, heads, mask=None):
    """Pre-LN block: x += out_proj(MHA(ln_1(x))); x += c_proj(QuickGELU(c_fc(ln_2(x))))."""
    x = x + multi_head_attention(layer_norm(x, weights, prefix + ".ln_1"), weights, prefix + ".attn", heads, mask)
    hidden = quick_gelu(linear(layer_norm(x, weights, prefix + ".ln_2"), weights, prefix + ".mlp.c_fc"))
    return x + linear(hidden, weights, prefix + ".mlp.c_proj")


def encode_image(clip, pixels, layer_prompts=None, carried_prompts=None):
    """ViT image features (after proj, before normalisation).   pixels: [b, 3, R, R] -> [b, D]

    layer_prompts(l, x) -> [b, n, d] or None: tokens appended to the input of layer l (0-based), given the
      residual stream x entering that layer (class token + patches); their outputs are dropped after the
      layer (deep VPT, CAVPT).
    carried_prompts [1, P, d]: appended once after ln_pre and carried through every layer (shallow VPT).
    Prompt tokens get no positional embedding.
    """
    w = clip.weights
    b = pixels.shape[0]
    patches = F.conv2d(pixels, w["visual.conv1.weight"], stride=clip.patch_size)       # [b, d, grid, grid]
    patches = patches.flatten(2).transpose(1, 2)                                         # [b, grid², d]
    class_token = w["visual.class_embedding"].expand(b, 1, -1)
    x = torch.cat([class_token, patches], dim=1) + w["visual.positional_embedding"]     # [b, S, d]
    x = layer_norm(x, w, "visual.ln_pre")
    if carried_prompts is not None:
        x = torch.cat([x, carried_prompts.expand(b, -1, -1)], dim=1)                     # [b, S+P, d]
    for layer in range(clip.vision_layers):
        prefix = f"visual.transformer.resblocks.{layer}"
        extra = layer_prompts(layer, x) if layer_prompts is not None else None
        if extra is None:
            x = residual_block(x, w, prefix, clip.vision_heads)
        else:
            tokens = x.shape[1]
            x = residual_block(torch.cat([x, extra], dim=1), w, prefix, clip.vision_heads)[:, :tokens]
    return layer_norm(x[:, 0], w, "visual.ln_post") @ w["visual.proj"]


def encode_text(clip, tokens, context=None):
    """Text features (after text_projection, before normalisation).   tokens: [n, ≤77] -> [n, D]

    context [M, text width]: CoOp's learned vectors, replacing the embeddings at positions 1…M (the X's).
    Runs on all 77 positions; the causal mask makes this equal to running on the shortest prefix that
    holds every EOT (what the Swift side does).
    """
    w = clip.weights
    x = w["token_embedding.weight"][tokens]                                              # [n, 77, width]
    if context is not None:
        n, m = tokens.shape[0], context.shape[0]
        x = torch.cat([x[:, :1], context.expand(n, -1, -1), x[:, 1 + m:]], dim=1)
    x = x + w["positional_embedding"][: tokens.shape[1]]
    mask = causal_mask(tokens.shape[1], x.dtype)
    for layer in range(clip.text_layers):
        x = residual_block(x, w, f"transformer.resblocks.{layer}", clip.text_heads, mask)
    eot = tokens.argmax(dim=-1)                   # EOT has the largest id in each sequence
    x = layer_norm(x[torch.arange(x.shape[0]), eot], w, "ln_final")
    return x @ w["text_projection"]


def clip_logits(clip, image_features, text_features):
    """exp(logit_scale) · normalize(image) · normalize(text)ᵀ   -> [b, K]"""
    return clip.logit_scale * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T


# ----------------------------------------------------------------------------------------------------
# Methods (DESIGN §3)
# ----------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Method:
    """One row of the paper's Table 1 plus the cavpt.* settings (DESIGN §3.2), after --set overrides."""
    learned_text: bool = False              # CoOp context `text.ctx`
    visual_prompts: str = "none"            # "none" | "shallow" | "deep"
    cavpt: bool = False
    cavpt_layers: list = None               # 1-based; None = last layer
    top_k: int = 0                          # K_N before capping at K; 0 = all classes
    queries: str = "template"               # "template" | "learned"
    query_depth: int = 2
    residual: str = "classToken"            # "classToken" | "query"
    output_projection: bool = True
    non_target: str = "uniform"             # "uniform" | "ignore"
    alpha: float = 1.0
    guidance_epochs: int = 0


PRESETS = {
    "zsclip": Method(),
    "coop": Method(learned_text=True),
    "vpt_shallow": Method(visual_prompts="shallow"),
    "vpt_deep": Method(visual_prompts="deep"),
    "vpt_cavpt": Method(visual_prompts="deep", cavpt=True),
    "vlp_deep": Method(learned_text=True, visual_prompts="deep"),
    "vlp_cavpt": Method(learned_text=True, visual_prompts="deep", cavpt=True),
    "dpt_released": Method(learned_text=True, visual_prompts="deep", cavpt=True, top_k=10, queries="learned",
                           query_depth=1, residual="query", output_projection=False, non_target="ignore",
                           alpha=0.3, guidance_epochs=30),
}

# config key -> Method field
CONFIG_KEYS = {
    "cavpt.layers": "cavpt_layers", "cavpt.topK": "top_k", "cavpt.queries": "queries",
    "cavpt.queryDepth": "query_depth", "cavpt.residual": "residual",
    "cavpt.outputProjection": "output_projection", "cavpt.nonTarget": "non_target",
    "cavpt.alpha": "alpha", "cavpt.guidanceEpochs": "guidance_epochs",
}


def make_method(preset, overrides=()):
    """Preset plus `key=value` overrides written as on the command line (`cavpt.layers=[1,2]`)."""
    method = dataclasses.replace(PRESETS[preset])
    for assignment in overrides:
        key, value = assignment.split("=", 1)
        try:
            value = json.loads(value)        # numbers, true/false, [1,2]
        except json.JSONDecodeError:
            pass                             # bare words: template, classToken, ...
        setattr(method, CONFIG_KEYS[key], value)
    return method


def cavpt_layers(method, clip):
    if not method.cavpt:
        return []
    return list(method.cavpt_layers) if method.cavpt_layers is not None else [clip.vision_layers]


def vpt_layers(method, clip):
    """0-based layers that take a row of `visual.prompts`, in layer order (CAVPT layers take none)."""
    if method.visual_prompts == "shallow":
        return [0]
    if method.visual_prompts == "deep":
        taken = {l - 1 for l in cavpt_layers(method, clip)}
        return [l for l in range(clip.vision_layers) if l not in taken]
    return []


def trained_parameter_shapes(method, clip, num_classes):
    """Canonical name -> shape of every trained tensor (DESIGN §3.2); weights stored [out, in]."""
    d, D = clip.vision_width, clip.embed_dim
    shapes = {}
    if method.learned_text:
        shapes["text.ctx"] = (CONTEXT_TOKENS, clip.text_width)
    rows = len(vpt_layers(method, clip))
    if rows > 0:
        shapes["visual.prompts"] = (rows, VISUAL_PROMPT_TOKENS, d)
    for l in cavpt_layers(method, clip):
        p = f"cavpt.{l}."
        shapes[p + "query.0.weight"], shapes[p + "query.0.bias"] = (d, D), (d,)
        if method.query_depth == 2:
            shapes[p + "query.2.weight"], shapes[p + "query.2.bias"] = (d, d), (d,)
        shapes[p + "kv_extra"] = (CAVPT_EXTRA_TOKENS, d)
        shapes[p + "attn.q.weight"] = (CAVPT_ATTENTION_DIM, d)
        shapes[p + "attn.k.weight"] = (CAVPT_ATTENTION_DIM, d)
        shapes[p + "attn.v.weight"] = (d, d)
        shapes[p + "ln_a.weight"], shapes[p + "ln_a.bias"] = (d,), (d,)
        shapes[p + "classifier.weight"] = (num_classes, d)
        shapes[p + "ln_b.weight"], shapes[p + "ln_b.bias"] = (d,), (d,)
        if method.output_projection:
            shapes[p + "out.weight"], shapes[p + "out.bias"] = (d, d), (d,)
    return shapes


def coop_prompt(class_name):
    """CoOp's prompt text: M X's, the class name, a full stop ("X X … X <classname>.")."""
    return "X " * CONTEXT_TOKENS + class_name + "."


def select_classes(zero_shot_logits, top_k):
    """Per image, the K_N classes with the highest zero-shot logits, descending (ties: lower index first)."""
    num_classes = zero_shot_logits.shape[1]
    k_n = num_classes if top_k == 0 else min(top_k, num_classes)
    return torch.sort(-zero_shot_logits, dim=1, stable=True).indices[:, :k_n]           # [b, K_N]


def cavpt_module(params, prefix, method, layer_input, query_features):
    """DESIGN §3.1 at one layer.   layer_input X_l: [b, S, d]; query_features G: [b, K_N, D]
    -> (prompts [b, K_N, d] appended to this layer's input, class-branch logits [b, K_N, K])"""
    p = lambda name: params[prefix + name]
    # 1. queries Q = MLP(G)
    queries = query_features @ p("query.0.weight").T + p("query.0.bias")
    if method.query_depth == 2:
        queries = quick_gelu(queries) @ p("query.2.weight").T + p("query.2.bias")       # [b, K_N, d]
    # 2. keys/values: the layer's tokens (no gradient into the backbone path) plus learnable extras
    b = layer_input.shape[0]
    values = torch.cat([stop_gradient(layer_input), p("kv_extra").expand(b, -1, -1)], dim=1)    # [b, S+10, d]
    # 3. single-head attention with a 32-dim score space
    scores = (queries @ p("attn.q.weight").T) @ (values @ p("attn.k.weight").T).transpose(1, 2)
    attention = (scores / math.sqrt(CAVPT_ATTENTION_DIM)).softmax(dim=-1)                 # [b, K_N, S+10]
    attended = (attention @ values) @ p("attn.v.weight").T                               # O: [b, K_N, d]
    # 4. class branch
    class_logits = F.layer_norm(attended, attended.shape[-1:], p("ln_a.weight"), p("ln_a.bias"),
                                LAYER_NORM_EPS) @ p("classifier.weight").T               # [b, K_N, K]
    # 5. prompt branch
    residual = queries if method.residual == "query" else layer_input[:, :1].expand_as(attended)
    prompts = F.layer_norm(attended + residual, attended.shape[-1:], p("ln_b.weight"), p("ln_b.bias"),
                           LAYER_NORM_EPS)
    if method.output_projection:
        prompts = prompts @ p("out.weight").T + p("out.bias")
    return prompts, class_logits


def class_aware_loss(class_logits_per_layer, selected, labels, non_target):
    """L_ca (DESIGN §3.1 step 6), mean over every (layer, image, slot) entry that counts; 0 if none does."""
    entries = []
    for class_logits in class_logits_per_layer:                                         # [b, K_N, K]
        num_classes = class_logits.shape[-1]
        log_probs = class_logits.log_softmax(dim=-1)
        is_target = selected == labels[:, None]                                          # [b, K_N]
        target_log_prob = log_probs.gather(-1, labels[:, None, None].expand(-1, selected.shape[1], 1))[..., 0]
        if non_target == "ignore":
            entries.append(-target_log_prob[is_target])
        else:
            # target distribution: one-hot(y) in the label's slot, uniform 1/K elsewhere
            uniform_ce = -log_probs.mean(dim=-1)
            entries.append(torch.where(is_target, -target_log_prob, uniform_ce).flatten())
    entries = torch.cat(entries)
    return entries.mean() if entries.numel() > 0 else entries.sum()


@dataclasses.dataclass
class ClassPrompts:
    """Tokenised prompts of the K classes: the template for frozen features, CoOp's X…X for learned ones."""
    template_tokens: torch.Tensor      # [K, 77]
    coop_tokens: torch.Tensor          # [K, 77]


def make_class_prompts(tokenizer, class_names, template):
    return ClassPrompts(tokenizer([template.format(c) for c in class_names]),
                        tokenizer([coop_prompt(c) for c in class_names]))


def method_loss(clip, method, params, pixels, labels, prompts, epoch=0):
    """One forward pass of a method on a batch (no augmentation) -> scalar loss (DESIGN §3, §3.3).
    params: canonical name -> tensor (requires_grad for gradients)."""
    # Frozen side: template text features, plain image features, zero-shot class selection.
    with torch.no_grad():
        template_features = encode_text(clip, prompts.template_tokens)                   # [K, D]
        plain_image_features = encode_image(clip, pixels)                                # [b, D]
        zero_shot_logits = clip_logits(clip, plain_image_features, template_features)
    learned_features = (encode_text(clip, prompts.coop_tokens, params["text.ctx"])
                        if method.learned_text else None)
    text_features = learned_features if method.learned_text else template_features

    layers_with_vpt = vpt_layers(method, clip)
    layers_with_cavpt = {l - 1: l for l in cavpt_layers(method, clip)}                   # 0-based -> name
    selected = select_classes(zero_shot_logits, method.top_k) if layers_with_cavpt else None
    if method.queries == "learned" and not method.learned_text:
        raise ValueError("cavpt.queries=learned needs a method with learned text prompts (coop, vlp_*, dpt_released)")
    query_source = learned_features if method.queries == "learned" else template_features
    class_logits_per_layer = []
    b = pixels.shape[0]

    def layer_prompts(layer, x):
        if layer in layers_with_cavpt:
            prompts_l, class_logits = cavpt_module(params, f"cavpt.{layers_with_cavpt[layer]}.", method,
                                                   x, query_source[selected])
            class_logits_per_layer.append(class_logits)
            return prompts_l
        if method.visual_prompts == "deep":
            return params["visual.prompts"][layers_with_vpt.index(layer)].expand(b, -1, -1)
        return None

    if method.visual_prompts == "none" and not layers_with_cavpt:
        image_features = plain_image_features
    else:
        carried = params["visual.prompts"] if method.visual_prompts == "shallow" else None
        image_features = encode_image(clip, pixels, layer_prompts, carried)

    main_loss = F.cross_entropy(clip_logits(clip, image_features, text_features), labels)
    if epoch < method.guidance_epochs:
        # released code's general-knowledge guidance (DESIGN §3.3)
        main_loss = (F.cross_entropy(clip_logits(clip, plain_image_features, text_features), labels)
                     + F.cross_entropy(clip_logits(clip, image_features, template_features), labels)
                     + 0.1 * main_loss)
    if not layers_with_cavpt:
        return main_loss
    return main_loss + method.alpha * class_aware_loss(class_logits_per_layer, selected, labels, method.non_target)


# ----------------------------------------------------------------------------------------------------
# Optimisation (DESIGN §4)
# ----------------------------------------------------------------------------------------------------

def sgd_step(param, grad, momentum_buffer, lr, momentum=0.9, weight_decay=5e-4):
    """torch.optim.SGD (dampening 0, no Nesterov): buf = μ·buf + (g + wd·p); p −= lr·buf.
    The first step starts the buffer at g + wd·p. Returns (param, momentum_buffer)."""
    step = grad + weight_decay * param
    momentum_buffer = step.clone() if momentum_buffer is None else momentum * momentum_buffer + step
    return param - lr * momentum_buffer, momentum_buffer


def learning_rate(epoch, lr, warmup_epochs, warmup_lr, epochs):
    """Per-epoch lr: constant warmup_lr for epoch < W, then lr·½(1 + cos(π(e − W)/E)), E = total epochs."""
    if epoch < warmup_epochs:
        return warmup_lr
    return lr * 0.5 * (1 + math.cos(math.pi * (epoch - warmup_epochs) / epochs))
