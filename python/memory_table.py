"""The README's memory table: bytes of each official model's package in float16, int8 and int4, computed from the
real shapes, and which common GPU and RAM sizes hold it.

    /usr/bin/python3 python/memory_table.py            # prints the table (markdown)
    /usr/bin/python3 python/memory_table.py --check    # exits 1 when README.md's copy differs

Shapes: configs/models/<model>.yaml (vision, LLM, vocabulary), the EVA-CLIP MLP width and the SDXL UNet / VAE
layouts of python/emu2ref (their defaults are the official configs). The modules are built with their parameters on
PyTorch's meta device, so nothing is allocated; every parameter is counted.

Bytes: float16 = 2 per weight. int8 / int4 (`--quantize intN --quantize-heads`, block size 32, zero points): every
linear layer of the LLM (decoder q/k/v/o, gate/up/down; lm_head, project_up, project_down) stores N*K*bits/8 bytes
plus, per 32-value block, a float16 scale and a zero point (bits/8 bytes); embed_tokens, norms, the visual encoder and
the visual decoder stay float16. "+ KV" adds a float16 KV cache of one 2048-token sequence (2 x layers x hidden x 2
bytes per token). A size "fits" when weights + KV take at most 90% of it (the rest is left to activations and the
runtime); two GPUs fit when each holds half of that. An estimate of what is needed, not a measurement.
"""
import argparse
import contextlib
import os
import sys

import yaml
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from emu2ref.eva_vit import EvaViT  # noqa: E402
from emu2ref.llama import Emu2LLM  # noqa: E402
from emu2ref.unet import UNet2DConditionModel  # noqa: E402
from emu2ref.vae import AutoencoderKLDecoder  # noqa: E402

MODELS = {"Emu2": "emu2", "Emu2-Chat": "emu2-chat", "Emu2-Gen": "emu2-gen"}
# EVA-02-CLIP-E-plus: MLP width 15360 (the official visual.blocks.0.mlp.fc1.weight is [15360, 1792]).
EVA_MLP_HIDDEN = 15360
BLOCK = 32
CONTEXT = 2048
GPUS = [("8 GB (RTX 4060)", 8), ("12 GB (RTX 3060/4070)", 12), ("16 GB (RTX 4080, T4)", 16),
        ("24 GB (RTX 3090/4090, L4)", 24), ("48 GB (RTX A6000, L40S)", 48), ("80 GB (A100/H100)", 80)]
RAM = [16, 32, 64, 128]
BEGIN, END = "<!-- memory-table:begin (python/memory_table.py) -->", "<!-- memory-table:end -->"


@contextlib.contextmanager
def meta_parameters():
    """Every parameter registered while active lives on the meta device (shape only, no memory)."""
    original = nn.Module.register_parameter

    def register(module, name, param):
        if param is not None:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        original(module, name, param)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = original


def linear_shapes(module):
    return [m.weight.shape for m in module.modules() if isinstance(m, nn.Linear)]


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def model_bytes(manifest: dict, bits: int) -> dict:
    """-> {"weights": bytes, "kv": bytes per 2048-token sequence}."""
    v, l = manifest["vision"], manifest["llm"]
    vision = EvaViT(v["image_size"], v["patch_size"], v["width"], v["layers"], v["heads"], EVA_MLP_HIDDEN, device="meta")
    llm = Emu2LLM(manifest["tokenizer"]["vocab_size"], l["hidden_size"], l["num_layers"], l["num_heads"],
                  l["intermediate_size"], l["rms_norm_eps"], v["width"], device="meta")
    total = 2 * count(vision)
    quantizable = linear_shapes(llm.model.layers) + [llm.lm_head.weight.shape, llm.project_up.weight.shape,
                                                     llm.project_down.weight.shape]
    quantized_params = sum(n * k for n, k in quantizable)
    total += 2 * (count(llm) - quantized_params)
    if bits == 16:
        total += 2 * quantized_params
    else:
        total += sum(n * k * bits // 8 + n * k // BLOCK * (2 + bits / 8) for n, k in quantizable)
    if "visual_decoder" in manifest:
        with meta_parameters():
            total += 2 * (count(UNet2DConditionModel({})) + count(AutoencoderKLDecoder({})))
    return {"weights": total, "kv": 2 * l["num_layers"] * l["hidden_size"] * 2 * CONTEXT}


def table() -> str:
    rows = ["| model | weights | bytes | + KV (2048 tokens) | one GPU | two GPUs (`--decoder-parts 2`) | CPU RAM |",
            "| --- | --- | ---: | ---: | --- | --- | --- |"]
    for title, name in MODELS.items():
        with open(os.path.join(ROOT, "configs", "models", f"{name}.yaml")) as f:
            manifest = yaml.safe_load(f)
        for label, bits in (("float16", 16), ("int8", 8), ("int4", 4)):
            b = model_bytes(manifest, bits)
            need = (b["weights"] + b["kv"]) / 0.9 / 2 ** 30
            gpus = [g for g, size in GPUS if size >= need]
            # Split in two, each GPU holds about half (the decoder parts are nearly equal; the rest is small).
            pairs = [f"2 x {g}" for g, size in GPUS if size >= need / 2]
            ram = [f"{size} GB" for size in RAM if size >= need]
            rows.append(f"| {title} | {label} | {b['weights'] / 2 ** 30:.1f} GiB | {(b['weights'] + b['kv']) / 2 ** 30:.1f} GiB "
                        f"| {gpus[0] + ' and up' if gpus else 'none'} | {pairs[0] + ' and up' if pairs else 'none'} "
                        f"| {ram[0] + ' and up' if ram else 'more than 128 GB'} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with README.md's table instead of printing")
    args = parser.parse_args()
    text = table()
    if not args.check:
        print(text)
        return
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    if BEGIN not in readme or END not in readme:
        sys.exit(f"README.md: no {BEGIN} ... {END} section")
    current = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    if current != text:
        sys.exit("README.md: the memory table differs from python/memory_table.py's output; paste it again")


if __name__ == "__main__":
    main()
