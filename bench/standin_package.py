"""The real-width stand-in of `npm run bench:real`: a whole emu2 package (Emu2-Chat layout) with Emu2's real layer
shapes, few layers and seeded random weights, exported by the package exporter (python/emu2ref/export_llm.py):

    LLM: hidden 6656, 52 heads x 128, intermediate 17920, the real vocabulary (32274), 2 decoder layers
    visual encoder: width 1792, 16 heads, MLP 15360, 448 px (patch 14), 2 layers

About 6.6 GB of float32 weights on disk; the export holds the torch modules (6.6 GB) plus one tensor being written,
so it needs about 9 GB of memory (the --int8 export below 13 GB). The bench's PyTorch peer rebuilds the same weights
with `standin_modules`. The LLM graphs and manifest.yaml come first; the visual encoder (visual_encoder.onnx) after
them.

    /usr/bin/python3 bench/standin_package.py ~/.cache/emu2-bench/real-width
    /usr/bin/python3 bench/standin_package.py ~/.cache/emu2-bench/real-width --llm-only   # no visual encoder
    /usr/bin/python3 bench/standin_package.py ~/.cache/emu2-bench/real-width-int8 --int8

--int8 writes the same seeded weights as an int8 package (`export_package.py --quantize int8 --quantize-heads
--accuracy-level 4 --block-size 128`: the decoder's linear layers, lm_head, project_up and project_down as
MatMulNBits, embed_tokens float32), LLM graphs only (2.3 GB): what bench:real's int8 rows decode with.
Prints one JSON line (export seconds and the export's peak resident set) when it exported anything. A package
already there is kept, and its decoder exported again if an earlier exporter wrote it (bench/export_form.py).
"""
import argparse
import json
import os
import resource
import shutil
import sys
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))

from build_tiny_packages import build_tokenizer  # noqa: E402
from emu2ref import manifest as mf  # noqa: E402
from emu2ref import quantize as qz  # noqa: E402
from emu2ref.export_llm import export_vision_llm  # noqa: E402
from emu2ref.llama import build_vision_llm  # noqa: E402
from export_form import decoder_is_current  # noqa: E402

VARIANT = "emu2-chat"
SEED = 2024
VISION = {"image_size": 448, "patch_size": 14, "width": 1792, "layers": 2, "heads": 16, "mlp_hidden": 15360}
LLM = {"hidden_size": 6656, "num_layers": 2, "num_heads": 52, "intermediate_size": 17920,
       "max_position_embeddings": 2048, "rms_norm_eps": 1e-6}
N_QUERY = 256
TOKEN_LLM = {"hidden_size": 32, "num_layers": 1, "num_heads": 4, "intermediate_size": 32,
             "max_position_embeddings": 2048, "rms_norm_eps": 1e-6}


def standin_modules(vision_only: bool = False):
    """(vision, llm) with the stand-in's seeded weights (build_vision_llm's scaling). build_vision_llm draws the
    vision weights first, so vision_only gets the same tower with a token-sized LLM (0.6 GB instead of 6.6 GB)."""
    vocab_size = 32000 + len(mf.special_tokens(VARIANT))
    llm = TOKEN_LLM if vision_only else LLM
    return build_vision_llm({"vision": VISION, "llm": {**llm, "vocab_size": vocab_size}}, SEED)


LLM_GRAPHS = {"embed_tokens", "project_up", "decoder", "lm_head", "project_down"}
# --int8: accuracy level 4 (activations quantized to int8 per block), without which ONNX Runtime's CPU MatMulNBits
# runs int8 weights hundreds of times slower (bench:quantized's int8 row); blocks of 128 (ONNX Runtime's own
# quantizer's default), which decoded one stand-in layer in 26 ms against 34 ms with blocks of 32 (556 against 619
# MB of weights and scales, one thread).
INT8 = qz.Quantization(8, 128, accuracy_level=4)
INT8_PLAN = {graph: INT8 for graph in ("decoder",) + qz.HEADS}


def standin_manifest(sections: dict, plan: dict) -> dict:
    manifest = {
        "format": mf.FORMAT,
        "name": "emu2-real-width-standin" + ("-int8" if plan else ""),
        "description": ("random-weight stand-in with Emu2-Chat's layer shapes, 2 LLM and 2 vision layers (bench only)"
                        + ("; int8 LLM graphs, no visual encoder" if plan else "")),
        "variant": VARIANT,
        "dtype": "float32",
        "tokenizer": mf.tokenizer_section(VARIANT),
        "vision": {**mf.vision_section(image_size=VISION["image_size"], patch_size=VISION["patch_size"],
                                       width=VISION["width"], layers=VISION["layers"], heads=VISION["heads"],
                                       n_query=N_QUERY, video_n_query=64), **sections["vision"]},
        "llm": {**mf.llm_section(**LLM), **sections["llm"]},
        "prompt": mf.prompt_section(mf.TEMPLATES[VARIANT]),
        "generation": mf.generation_section(chat=True),
    }
    if plan:
        manifest["quantization"] = mf.quantization_section(plan)
    return manifest


def export_int8(out: str, start: float) -> None:
    """The LLM graphs of the --int8 package, then manifest.yaml (written last: a rerun redoes a half-written one, and
    one of other quantization settings)."""
    manifest_path = os.path.join(out, "manifest.yaml")
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            # One built with other quantization settings (an earlier block size) or an earlier decoder is built again.
            if (yaml.safe_load(f).get("quantization") == mf.quantization_section(INT8_PLAN)
                    and decoder_is_current(os.path.join(out, "decoder.onnx"), LLM["num_layers"])):
                return
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    vision, llm = standin_modules()
    build_tokenizer(VARIANT, os.path.join(out, "tokenizer.json"))
    sections = export_vision_llm(out, vision, llm, dtype="float32", only=LLM_GRAPHS, quantization=INT8_PLAN)
    mf.dump_manifest(standin_manifest(sections, INT8_PLAN), os.path.join(out, "manifest.yaml"))
    print(json.dumps({"package": out, "export_s": round(time.time() - start, 1),
                      "export_peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--int8", action="store_true", help="the int8 package of the same weights (LLM graphs only)")
    parser.add_argument("--llm-only", action="store_true",
                        help="stop once the LLM graphs are there and current, without the visual encoder")
    args = parser.parse_args()
    start = time.time()
    if args.int8:
        export_int8(args.out, start)
        return
    manifest_path = os.path.join(args.out, "manifest.yaml")
    vision_path = os.path.join(args.out, "visual_encoder.onnx")
    # Two phases, each finished by a file written last: the LLM graphs (then manifest.yaml), and the visual encoder
    # (its trace runs the tower on a 448 px image: long on a CPU without an optimized BLAS). A rerun skips a
    # finished phase; a half-written one starts again.
    if not os.path.exists(manifest_path):
        shutil.rmtree(args.out, ignore_errors=True)
        os.makedirs(args.out)
    if os.path.exists(manifest_path) and not decoder_is_current(os.path.join(args.out, "decoder.onnx"),
                                                                LLM["num_layers"]):
        # A stand-in exported with an earlier decoder (bench/export_form.py): the same seeded weights give the
        # current graph; the other graphs and the encoder stay.
        print("re-exporting the stand-in's decoder (an earlier export's)", file=sys.stderr)
        vision, llm = standin_modules()
        export_vision_llm(args.out, vision, llm, dtype="float32", only={"decoder"})
        del vision, llm
    if os.path.exists(manifest_path) and (args.llm_only or os.path.exists(vision_path)):
        return
    if not os.path.exists(manifest_path):
        vision, llm = standin_modules()
        build_tokenizer(VARIANT, os.path.join(args.out, "tokenizer.json"))
        sections = export_vision_llm(args.out, vision, llm, dtype="float32", only=LLM_GRAPHS)
        manifest = standin_manifest(sections, {})
        mf.dump_manifest(manifest, manifest_path)
        del vision, llm
        if args.llm_only:
            return
        print(f"LLM graphs and manifest written ({time.time() - start:.0f} s); tracing the visual encoder",
              file=sys.stderr)
    vision, llm = standin_modules(vision_only=True)
    scratch = os.path.join(args.out, ".visual-encoder-partial")
    shutil.rmtree(scratch, ignore_errors=True)
    export_vision_llm(scratch, vision, llm, dtype="float32", only={"visual_encoder"})
    os.replace(os.path.join(scratch, "visual_encoder.onnx"), vision_path)
    shutil.rmtree(scratch)
    print(json.dumps({"package": args.out, "export_s": round(time.time() - start, 1),
                      "export_peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


if __name__ == "__main__":
    main()
