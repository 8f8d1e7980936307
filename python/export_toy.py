"""Exports the trained emu2-toy checkpoint as the package the emu2 CLI embeds, with the project's exporter.

    /usr/bin/python3 python/export_toy.py                  # fixtures/checkpoints/emu2-toy.pt -> fixtures/models/emu2-toy
    /usr/bin/python3 python/export_toy.py --out DIR        # the same package into DIR (the CI test compares the two)
    /usr/bin/python3 python/export_toy.py --out DIR --quantize int4 ...   # a quantized export (flags as export_package.py)
    /usr/bin/python3 python/export_toy.py --out DIR --dtype float32       # float32 graphs (what quantization is judged by)
    /usr/bin/python3 python/export_toy.py --checkpoint C --decoder D --out DIR   # any pair of checkpoints

The visual decoder (unet.onnx, vae_decoder.onnx and the manifest's visual_decoder section, for `emu2 generate`)
comes from the decoder checkpoint python/train_toy_decoder.py writes (--decoder; by default, for the committed
checkpoint, fixtures/checkpoints/emu2-toy-decoder.pt; another --checkpoint gets none unless --decoder names one). It
must have been trained on this checkpoint's visual encoder: the sha256 it records has to equal the encoder's, or the
export stops.

Deterministic: the same checkpoint gives the same bytes. float16 weights keep the package small (the LLaMA
vocabulary's two 32274 x 64 matrices are most of it); the graphs compute in float16 as transformers does with a half
model (python/emu2ref/export_llm.py).
"""
import argparse
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from emu2ref import manifest as mf  # noqa: E402
from emu2ref import quantize as qz  # noqa: E402
from emu2ref.export_diffusion import export_visual_decoder  # noqa: E402
from emu2ref.export_llm import export_vision_llm  # noqa: E402
from emu2toy import data, decoder, model  # noqa: E402
from export_package import OneLineParser  # noqa: E402

CHECKPOINT = os.path.join(ROOT, "fixtures", "checkpoints", "emu2-toy.pt")
DECODER_CHECKPOINT = os.path.join(ROOT, "fixtures", "checkpoints", "emu2-toy-decoder.pt")
PACKAGE = os.path.join(ROOT, "fixtures", "models", "emu2-toy")
DTYPE = "float16"
DESCRIPTION = ("emu2-toy, a miniature Emu2-Chat trained on a synthetic world of colored shapes "
               "(python/emu2toy/world.py): it captions and answers questions about such images, learns new names "
               "for their colors and shapes from examples in the prompt, draws them from their captions, and knows "
               "nothing else")


def toy_manifest(sections: dict, dtype: str = DTYPE) -> dict:
    manifest = {
        "format": mf.FORMAT,
        "name": "emu2-toy",
        "description": DESCRIPTION,
        "variant": model.VARIANT,
        "dtype": dtype,
        "tokenizer": mf.tokenizer_section(model.VARIANT),
        "vision": {**mf.vision_section(n_query=model.N_QUERY, video_n_query=model.N_QUERY), **sections["vision"]},
        "llm": {**mf.llm_section(**model.LLM), **sections["llm"]},
        "prompt": {**mf.prompt_section("chat"), "system_message": data.SYSTEM_MESSAGE,
                   "short_system_message": data.SYSTEM_MESSAGE},
        # Trained on one canonical answer per question: greedy decoding, room for the longest caption.
        "generation": {"max_new_tokens": 16, "min_new_tokens": 1, "num_beams": 1, "length_penalty": 1.0,
                       "repetition_penalty": 1.0, "do_sample": False, "temperature": 1.0, "top_k": 0, "top_p": 1.0},
    }
    return manifest


def export_toy(checkpoint: str, out: str, quantization: dict = None, decoder_checkpoint: str = None,
               dtype: str = DTYPE) -> None:
    """quantization: graph name -> quantize.Quantization (quantize.plan_from_args); none for the embedded package.
    decoder_checkpoint: the visual decoder's (python/train_toy_decoder.py), exported unquantized; none: no decoder.
    dtype: of the weights and the graphs' computation (the scales of quantized weights too)."""
    vision, llm, _ = model.load_checkpoint(checkpoint)
    if decoder_checkpoint is not None:
        unet, vae, state = decoder.load_checkpoint(decoder_checkpoint)
        digest = decoder.encoder_digest(vision)
        if state["encoder_sha256"] != digest:
            raise ValueError(f"{decoder_checkpoint}: trained on the visual encoder {state['encoder_sha256'][:12]}..., "
                             f"but {checkpoint}'s is {digest[:12]}...: retrain it (python/train_toy_decoder.py)")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    subprocess.run(["node", "--import", "tsx", os.path.join(ROOT, "tools", "build-tokenizer.ts"), "--variant", "chat",
                    "--out", os.path.join(out, "tokenizer.json")], check=True, cwd=ROOT)
    sections = export_vision_llm(out, vision, llm, dtype=dtype, quantization=quantization)
    manifest = toy_manifest(sections, dtype)
    if quantization:
        manifest["quantization"] = mf.quantization_section(quantization)
    if decoder_checkpoint is not None:
        section = export_visual_decoder(out, unet, vae, {"unet": unet.config, "vae": vae.config}, dtype=dtype)
        # Fewer steps than Emu2-Gen's 50: the toy's images are flat shapes (python/emu2toy/decoder.py).
        manifest["visual_decoder"] = {**section, "num_inference_steps": decoder.NUM_INFERENCE_STEPS,
                                      "guidance_scale": decoder.GUIDANCE_SCALE}
    mf.dump_manifest(manifest, os.path.join(out, "manifest.yaml"))


def main() -> None:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=CHECKPOINT)
    parser.add_argument("--out", default=PACKAGE)
    parser.add_argument("--decoder", help="visual decoder checkpoint (default: with the committed --checkpoint, "
                        "fixtures/checkpoints/emu2-toy-decoder.pt, trained on its encoder; with another, none)")
    parser.add_argument("--dtype", default=DTYPE, choices=["float16", "float32"],
                        help="weights and computation (default float16, as the embedded package)")
    qz.add_arguments(parser)
    args = parser.parse_args()
    try:
        plan = qz.plan_from_args(args)
    except ValueError as err:
        parser.error(str(err))
    decoder_checkpoint = args.decoder
    if decoder_checkpoint is None and os.path.abspath(args.checkpoint) == CHECKPOINT:
        decoder_checkpoint = DECODER_CHECKPOINT
    export_toy(args.checkpoint, args.out, plan, decoder_checkpoint, args.dtype)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
