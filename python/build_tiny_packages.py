"""Builds the two tiny emu2 packages the tests and demos run on, and the goldens the TypeScript runtime must match.

    /usr/bin/python3 python/build_tiny_packages.py            # rewrites fixtures/models/* and fixtures/golden/*
    /usr/bin/python3 python/build_tiny_packages.py --out DIR  # writes DIR/models/* and DIR/golden/* instead

Deterministic: seeded weights, fixed inputs. Needs Debian's python3-torch, python3-onnx, python3-numpy, python3-pil,
python3-sentencepiece, python3-yaml, and node with the project's npm dependencies (for tokenizer.json).
"""
import argparse
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import torch  # noqa: E402

from emu2ref import manifest as mf  # noqa: E402
from emu2ref.export_diffusion import build_visual_decoder, export_visual_decoder  # noqa: E402
from emu2ref.export_llm import export_vision_llm  # noqa: E402
from emu2ref.golden_diffusion import write_diffusion_goldens  # noqa: E402
from emu2ref.golden_llm import write_llm_goldens, write_quantized_llm_goldens  # noqa: E402
from emu2ref.golden_video import write_video_goldens  # noqa: E402
from emu2ref.eva_vit import pool_visual_features  # noqa: E402
from emu2ref.llama import build_vision_llm  # noqa: E402
from emu2ref.preprocess import load_rgb, preprocess  # noqa: E402
from emu2ref.reference_blas import require_reference_blas  # noqa: E402
from emu2ref import quantize as qz  # noqa: E402
from emu2ref.tokenizer import load_reference_tokenizer  # noqa: E402

VISION = {"image_size": 448, "patch_size": 14, "width": 32, "layers": 2, "heads": 2, "mlp_hidden": 64}
LLM = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 64,
       "max_position_embeddings": 2048, "rms_norm_eps": 1e-6}

# The quantized variants store every linear layer of the LLM (the decoder's, lm_head, project_up, project_down) and
# the visual encoder's (at int8) as MatMulNBits. The int4 variant's layers are 32 or 64 wide, so blocks of 16; it
# keeps v_proj, down_proj and the heads at int8, as llama.cpp's Q4_K_M keeps attn_v, ffn_down and the output at more
# bits (docs/package-format.md gives the figures that chose this).
ALL_LINEAR = ["--quantize-heads", "--quantize-vision"]

PACKAGES = {
    "emu2-tiny": {"variant": "emu2-gen", "seed": 1234, "n_query": 64,
                  "description": "tiny random-weight Emu2-Gen layout for tests and demos (real vocabulary, nonsense output)"},
    "emu2-chat-tiny": {"variant": "emu2-chat", "seed": 5678, "n_query": 256,
                       "description": "tiny random-weight Emu2-Chat layout for tests and demos (real vocabulary, nonsense output)",
                       "quantized": {"int8": ["--quantize", "int8"] + ALL_LINEAR,
                                     "int4": ["--quantize", "int4", "--block-size", "16", "--scale-search",
                                              "--int8-layers", "v_proj,down_proj,lm_head,project_up,project_down"]
                                             + ALL_LINEAR},
                       "split": 2},
}


def quantization_plan(flags: list) -> dict:
    """The exporter's flags (python/export_package.py) -> graph name -> Quantization."""
    parser = argparse.ArgumentParser()
    qz.add_arguments(parser)
    return qz.plan_from_args(parser.parse_args(flags))


def build_tokenizer(variant: str, out_file: str) -> None:
    kind = "chat" if variant == "emu2-chat" else "base"
    subprocess.run(["node", "--import", "tsx", os.path.join(ROOT, "tools", "build-tokenizer.ts"),
                    "--variant", kind, "--out", out_file], check=True, cwd=ROOT)


def build_package(name: str, spec: dict, models_dir: str, golden_dir: str) -> None:
    variant, seed = spec["variant"], spec["seed"]
    pkg = os.path.join(models_dir, name)
    golden = os.path.join(golden_dir, name)
    for folder in (pkg, golden):
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)

    build_tokenizer(variant, os.path.join(pkg, "tokenizer.json"))
    tokens = mf.special_tokens(variant)
    vocab_size = 32000 + len(tokens)

    vision, llm = build_vision_llm({"vision": VISION, "llm": {**LLM, "vocab_size": vocab_size}}, seed)
    sections = export_vision_llm(pkg, vision, llm, dtype="float32", parity_dir=os.path.join(golden, "llm-graphs"))

    manifest = {
        "format": mf.FORMAT,
        "name": name,
        "description": spec["description"],
        "variant": variant,
        "dtype": "float32",
        "tokenizer": mf.tokenizer_section(variant),
        "vision": {**mf.vision_section(image_size=VISION["image_size"], patch_size=VISION["patch_size"],
                                       width=VISION["width"], layers=VISION["layers"], heads=VISION["heads"],
                                       n_query=spec["n_query"], video_n_query=64), **sections["vision"]},
        "llm": {**mf.llm_section(**LLM), **sections["llm"]},
        "prompt": mf.prompt_section(mf.TEMPLATES[variant]),
        "generation": mf.generation_section(chat=False),
    }

    tokenizer = load_reference_tokenizer(os.path.join(pkg, "tokenizer.json"))
    package_config = {
        "n_query": spec["n_query"], "image_size": VISION["image_size"],
        "mean": manifest["vision"]["mean"], "std": manifest["vision"]["std"],
        "image_token_id": tokens["<image>"], "img_token_id": tokens["[IMG]"],
        "eos_token_id": 2, "pad_token_id": tokens["[PAD]"], "template": manifest["prompt"]["template"],
        "system_message": manifest["prompt"].get("system_message"),
    }
    regression = write_llm_goldens(os.path.join(golden, "llm"), vision, llm, tokenizer, package_config)
    if variant == "emu2-chat":
        # Emu2-Chat takes videos: frames pooled to video_n_query, spliced at [gIMG] rows.
        write_video_goldens(os.path.join(golden, "video"), vision, llm, tokenizer,
                            {**package_config, "video_n_query": manifest["vision"]["video_n_query"],
                             "video_token_id": tokens["[gIMG]"]})

    if variant == "emu2-gen":
        unet, vae, decoder_config = build_visual_decoder({"cross_attention_dim": VISION["width"]}, seed + 1)
        manifest["visual_decoder"] = export_visual_decoder(pkg, unet, vae, decoder_config, dtype="float32",
                                                           parity_dir=os.path.join(golden, "diffusion-graphs"))
        # Autoencoding (image-only prompt): encoder features go straight to the UNet; the null condition is the
        # features of an all-zero normalized image (emu/emu.py).
        with torch.no_grad():
            pixels = torch.from_numpy(preprocess(load_rgb(os.path.join(ROOT, "fixtures", "images", "landscape.png")),
                                                 VISION["image_size"]))[None]
            image_features = pool_visual_features(vision(pixels), spec["n_query"])
            null_features = pool_visual_features(vision(torch.zeros_like(pixels)), spec["n_query"])
        write_diffusion_goldens(os.path.join(golden, "diffusion"), unet, vae, manifest["visual_decoder"],
                                regression["cond"], regression["uncond"], seed=seed,
                                image_features=image_features, null_image_features=null_features)

    mf.dump_manifest(manifest, os.path.join(pkg, "manifest.yaml"))
    print(f"built {pkg} and {golden}", file=sys.stderr)

    # Same weights, quantized: checked against this package's goldens (greedy ids, logits cosine) and against the
    # PyTorch model with the dequantized weights (their own goldens).
    for suffix, flags in spec.get("quantized", {}).items():
        variant_dir = os.path.join(models_dir, f"{name}-{suffix}")
        shutil.rmtree(variant_dir, ignore_errors=True)
        os.makedirs(variant_dir)
        shutil.copyfile(os.path.join(pkg, "tokenizer.json"), os.path.join(variant_dir, "tokenizer.json"))
        plan = quantization_plan(flags)
        export_vision_llm(variant_dir, vision, llm, dtype="float32", quantization=plan)
        mf.dump_manifest({**manifest, "name": f"{name}-{suffix}",
                          "description": f"{spec['description']}; python/export_package.py {' '.join(flags)}",
                          "quantization": mf.quantization_section(plan)},
                         os.path.join(variant_dir, "manifest.yaml"))
        write_quantized_llm_goldens(os.path.join(golden_dir, f"{name}-{suffix}", "llm"), llm, plan,
                                    os.path.join(golden, "llm"), tokens["<image>"])
        print(f"built {variant_dir}", file=sys.stderr)

    # The decoder as consecutive-layer parts (one layer each), same weights: its runs equal this package's.
    if spec.get("split"):
        split_dir = os.path.join(models_dir, f"{name}-split")
        shutil.rmtree(split_dir, ignore_errors=True)
        os.makedirs(split_dir)
        shutil.copyfile(os.path.join(pkg, "tokenizer.json"), os.path.join(split_dir, "tokenizer.json"))
        split = export_vision_llm(split_dir, vision, llm, dtype="float32", decoder_parts=spec["split"])
        llm_section = {k: v for k, v in manifest["llm"].items() if k != "decoder_file"}
        mf.dump_manifest({**manifest, "name": f"{name}-split",
                          "description": f"{spec['description']}; decoder in {spec['split']} parts",
                          "llm": {**llm_section, "decoder_parts": split["llm"]["decoder_parts"]}},
                         os.path.join(split_dir, "manifest.yaml"))
        print(f"built {split_dir}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="write DIR/models and DIR/golden instead of fixtures/")
    parser.add_argument("--only", choices=sorted(PACKAGES), help="build one package")
    args = parser.parse_args()
    require_reference_blas("build_tiny_packages.py")
    base = args.out or os.path.join(ROOT, "fixtures")
    for name, spec in PACKAGES.items():
        if args.only and name != args.only:
            continue
        build_package(name, spec, os.path.join(base, "models"), os.path.join(base, "golden"))


if __name__ == "__main__":
    main()
