#!/usr/bin/env python3
"""Convert OpenAI's CLIP checkpoint (e.g. ViT-B-32.pt) to a safetensors file with OpenAI names.

OpenAI distributes CLIP as TorchScript archives (`ViT-B-32.pt`); cavpt-dist reads safetensors. This
script runs once, on a machine with PyTorch; cavpt-dist itself never needs Python.

    pip install torch safetensors
    python3 tools/convert_openai_pt.py ViT-B-32.pt weights/ViT-B-32 \
        --vocab bpe_simple_vocab_16e6.txt.gz
    cavpt-dist zeroshot --model weights/ViT-B-32 ...

OUTPUT is a folder (written as OUTPUT/model.safetensors, plus the vocabulary when --vocab is given, so
that cavpt-dist finds it next to the weights) or a path ending in .safetensors. The tensor names are
kept exactly (visual.conv1.weight, transformer.resblocks.0.attn.in_proj_weight, ...); the three
non-parameter entries OpenAI stores beside the weights (input_resolution, context_length, vocab_size)
any attn_mask buffers and integer entries are dropped. OpenAI's weights are float16; they are kept as F16 unless
--dtype f32 is given (cavpt-dist converts to F32 on load either way, exactly).

Also accepts a plain PyTorch state dict (.pt/.pth/.bin, optionally under "state_dict", optionally with
a "module." prefix from DataParallel).
"""
import argparse
import os
import shutil
import sys

import torch
from safetensors.torch import save_file

# Entries of OpenAI's archives that are not parameters (build_model drops the same three), and the
# causal mask buffer some scripted models carry.
NON_PARAMETERS = {"input_resolution", "context_length", "vocab_size", "attn_mask"}


def is_parameter(name, value):
    if name in NON_PARAMETERS or name.endswith(".attn_mask"):
        return False
    return torch.is_tensor(value) and value.is_floating_point()


def load_state_dict(path):
    try:
        # OpenAI's files are TorchScript archives; their state_dict() holds the weights.
        return torch.jit.load(path, map_location="cpu").state_dict()
    except RuntimeError:
        pass
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        sys.exit(f"{path}: neither a TorchScript archive nor a state dict")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def describe(tensors):
    """The architecture as cavpt-dist will infer it, for the user to check."""
    try:
        width, _, patch, _ = tensors["visual.conv1.weight"].shape
        grid = int(round((tensors["visual.positional_embedding"].shape[0] - 1) ** 0.5))
        vlayers = len({k.split(".")[3] for k in tensors if k.startswith("visual.transformer.resblocks.")})
        vocab, twidth = tensors["token_embedding.weight"].shape
        tlayers = len({k.split(".")[2] for k in tensors if k.startswith("transformer.resblocks.")})
        embed = tensors["visual.proj"].shape[1]
        return (f"ViT width {width}, {vlayers} layers, patch {patch}, resolution {grid * patch}; "
                f"text width {twidth}, {tlayers} layers, vocabulary {vocab}; embedding {embed}")
    except (KeyError, IndexError, ValueError) as e:
        return f"(not an OpenAI-layout CLIP? missing {e})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="OpenAI .pt (TorchScript) or a PyTorch state dict")
    parser.add_argument("output", help="output folder, or a file name ending in .safetensors")
    parser.add_argument("--vocab", help="bpe_simple_vocab_16e6.txt.gz to copy next to the weights")
    parser.add_argument("--dtype", choices=["keep", "f32", "f16"], default="keep",
                        help="storage type (default: as in the checkpoint, F16 for OpenAI's)")
    args = parser.parse_args()

    state = load_state_dict(args.checkpoint)
    tensors, dropped = {}, []
    for name, value in state.items():
        if not is_parameter(name, value):
            dropped.append(name)
            continue
        value = value.detach().cpu()
        if args.dtype == "f32":
            value = value.float()
        elif args.dtype == "f16":
            value = value.half()
        tensors[name] = value.contiguous()

    if args.output.endswith(".safetensors"):
        out_file = args.output
        folder = os.path.dirname(os.path.abspath(out_file))
    else:
        folder = args.output
        out_file = os.path.join(folder, "model.safetensors")
    os.makedirs(folder, exist_ok=True)
    save_file(tensors, out_file, metadata={"format": "pt", "source": os.path.basename(args.checkpoint)})
    if args.vocab:
        shutil.copyfile(args.vocab, os.path.join(folder, "bpe_simple_vocab_16e6.txt.gz"))

    print(f"wrote {out_file}: {len(tensors)} tensors; {describe(tensors)}")
    if dropped:
        print(f"dropped non-parameter entries: {', '.join(sorted(dropped))}")


if __name__ == "__main__":
    main()
