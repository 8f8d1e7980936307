"""Exports a complete emu2 package from an official Emu2, Emu2-Chat or Emu2-Gen checkpoint, one component at a time
(the 37B model is never in memory at once): tokenizer.json, the vision and LLM graphs, for Emu2-Gen the UNet and the
VAE decoder, and a manifest.yaml that `emu2 info` validates.

    /usr/bin/python3 python/export_package.py /models/Emu2-Gen /packages/emu2-gen --variant emu2-gen --dtype float16
    /usr/bin/python3 python/export_package.py /models/Emu2-Chat /packages/emu2-chat-int4 --variant emu2-chat --quantize int4

Details of what is read and the memory each step needs: docs/export-real-model.md and
docs/export-real-visual-decoder.md.
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from emu2ref import manifest as mf  # noqa: E402
from emu2ref import quantize as qz  # noqa: E402
from emu2ref.export_diffusion import export_visual_decoder_from_checkpoint  # noqa: E402
from emu2ref.export_llm import check_checkpoint_options, export_vision_llm_from_checkpoint  # noqa: E402


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line naming the flag (argparse's own also prints the whole usage first)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message}\n")


def main() -> None:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="the downloaded model folder (BAAI/Emu2, BAAI/Emu2-Chat or BAAI/Emu2-Gen)")
    parser.add_argument("out", help="the package folder to write")
    parser.add_argument("--variant", required=True, choices=["emu2", "emu2-chat", "emu2-gen"])
    parser.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    parser.add_argument("--decoder-parts", type=int, default=1,
                        help="write the decoder as N graphs of consecutive layers, to place on N devices "
                             "(emu2 --device-map part0=...,part1=...; default 1)")
    qz.add_arguments(parser)
    args = parser.parse_args()
    try:
        plan = qz.plan_from_args(args)
        # Before any work: a block size that does not divide a width, more parts than layers.
        if plan or args.decoder_parts != 1:
            check_checkpoint_options(args.checkpoint, args.variant, plan, args.decoder_parts)
    except ValueError as err:
        parser.error(str(err))
    os.makedirs(args.out, exist_ok=True)

    print("1/4 tokenizer.json", file=sys.stderr)
    subprocess.run(["node", "--import", "tsx", os.path.join(ROOT, "tools", "build-tokenizer.ts"), "--variant",
                    "chat" if args.variant == "emu2-chat" else "base", "--out", os.path.join(args.out, "tokenizer.json")],
                   check=True, cwd=ROOT)
    print("2/4 visual encoder and LLM graphs", file=sys.stderr)
    sections = export_vision_llm_from_checkpoint(args.checkpoint, args.out, args.dtype, args.variant,
                                                 quantization=plan, decoder_parts=args.decoder_parts)
    manifest = mf.real_manifest(args.variant, args.dtype)
    manifest["vision"].update(sections["vision"])
    manifest["llm"].update(sections["llm"])
    if "decoder_parts" in sections["llm"]:
        del manifest["llm"]["decoder_file"]
    if plan:
        manifest["quantization"] = mf.quantization_section(plan)
    if args.variant == "emu2-gen":
        print("3/4 visual decoder (UNet, VAE decoder)", file=sys.stderr)
        manifest["visual_decoder"] = export_visual_decoder_from_checkpoint(args.checkpoint, args.out, args.dtype)
    print("4/4 manifest.yaml", file=sys.stderr)
    mf.dump_manifest(manifest, os.path.join(args.out, "manifest.yaml"))
    print(f"done: check it with `npx emu2 info {args.out}`", file=sys.stderr)


if __name__ == "__main__":
    main()
