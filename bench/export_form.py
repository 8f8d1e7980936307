"""Whether a cached stand-in's decoder has the exporter's current form. The bench's stand-ins live outside git
(~/.cache/emu2-bench) and outlast changes to python/emu2ref: a bench that timed an earlier export's graph would
measure code the package exporter no longer writes. The cached decoder's node types, in order, are compared with
those of a token-sized decoder of as many layers exported now (a second or two); weights, widths and quantization
do not enter (MatMulNBits counts as the MatMul it replaces)."""
import os
import tempfile

import onnx

from emu2ref.eva_vit import EvaViT
from emu2ref.export_llm import export_vision_llm
from emu2ref.llama import Emu2LLM


def decoder_ops(path: str) -> list:
    graph = onnx.load(path, load_external_data=False).graph
    return ["MatMul" if node.op_type == "MatMulNBits" else node.op_type for node in graph.node]


def current_decoder_ops(layers: int) -> list:
    vision = EvaViT(image_size=28, patch_size=14, width=32, layers=1, heads=2, mlp_hidden=32).eval()
    llm = Emu2LLM(vocab_size=32, hidden_size=32, num_layers=layers, num_heads=4, intermediate_size=32,
                  rms_norm_eps=1e-6, vision_width=32).eval()
    with tempfile.TemporaryDirectory() as scratch:
        export_vision_llm(scratch, vision, llm, "float32", only={"decoder"})
        return decoder_ops(os.path.join(scratch, "decoder.onnx"))


def decoder_is_current(path: str, layers: int) -> bool:
    return os.path.exists(path) and decoder_ops(path) == current_decoder_ops(layers)
