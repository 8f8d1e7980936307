"""The attention forms of `npm run bench:real -- attention`: one decode step's attention of a query over a past at
Emu2's real head layout (52 heads x 128), written as ONNX graphs into the folder given:

- decoder.onnx: the package decoder's own form, exported by torch.onnx from emu2ref.llama.attend_past_apart (the
  function the decoder's layers call): the past's keys and values [B,h,P,d] attended where they lie, this run's
  own row beside them;
- mha.onnx: ONNX Runtime's com.microsoft MultiHeadAttention over keys and values given whole [B,h,P+1,d] (the past
  with this run's row as its last slot);
- gqa.onnx: ONNX Runtime's com.microsoft GroupQueryAttention with the past and present sharing one buffer of P+1
  slots (the form onnxruntime-genai decodes with: it writes this run's row into slot P and attends P+1 slots);
- read.onnx: the bandwidth probe over the same bytes (ReduceSum of the past's keys and values).

All take the query as the decoder's layers have it (after rotary). The timings and the check that the three give the
same output are bench/real_width.ts's (attentionWorker).

    /usr/bin/python3 bench/attention_forms.py ~/.cache/emu2-bench/attention --heads 52 --head-dim 128
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))

import onnx  # noqa: E402
import torch  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from emu2ref.llama import attend_past_apart  # noqa: E402
from emu2ref.onnx_export import OPSET, export_graph  # noqa: E402

FLOAT = TensorProto.FLOAT


class DecoderForm(torch.nn.Module):
    def __init__(self, head_dim: int):
        super().__init__()
        self.head_dim = head_dim

    def forward(self, q, k, v, mask, past_key, past_value):
        return attend_past_apart(q, k, v, mask, past_key, past_value, self.head_dim)


def write_decoder_form(out: str, heads: int, head_dim: int) -> None:
    one = torch.zeros(1, heads, 1, head_dim)
    past = torch.zeros(1, heads, 3, head_dim)
    names = ["q", "k", "v", "mask", "past_key", "past_value"]
    axes = {"mask": {0: "batch", 3: "total"}, "past_key": {0: "batch", 2: "past"},
            "past_value": {0: "batch", 2: "past"}, "q": {0: "batch"}, "k": {0: "batch"}, "v": {0: "batch"},
            "out": {0: "batch"}}
    export_graph(DecoderForm(head_dim), (one, one, one, torch.zeros(1, 1, 1, 4), past, past),
                 os.path.join(out, "decoder.onnx"), names, ["out"], axes, "float32")


def save(model_graph, path: str, contrib: bool) -> None:
    imports = [helper.make_opsetid("", OPSET)] + ([helper.make_opsetid("com.microsoft", 1)] if contrib else [])
    model = helper.make_model(model_graph, opset_imports=imports)
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def write_contrib_forms(out: str, heads: int, head_dim: int) -> None:
    hidden = heads * head_dim
    value = helper.make_tensor_value_info
    bnsh = lambda name, slots: value(name, FLOAT, ["batch", heads, slots, head_dim])  # noqa: E731
    mha = helper.make_node("MultiHeadAttention", ["query", "key", "value", "", "", "attention_bias"], ["out"],
                           domain="com.microsoft", num_heads=heads)
    save(helper.make_graph([mha], "mha", [
        value("query", FLOAT, ["batch", 1, hidden]), bnsh("key", "total"), bnsh("value", "total"),
        value("attention_bias", FLOAT, ["batch", 1, 1, "total"])], [value("out", FLOAT, ["batch", 1, hidden])]),
        os.path.join(out, "mha.onnx"), contrib=True)
    gqa = helper.make_node("GroupQueryAttention",
                           ["query", "key", "value", "past_key", "past_value", "seqlens_k", "total_sequence_length"],
                           ["out", "present_key", "present_value"], domain="com.microsoft", num_heads=heads,
                           kv_num_heads=heads)
    save(helper.make_graph([gqa], "gqa", [
        value("query", FLOAT, ["batch", 1, hidden]), value("key", FLOAT, ["batch", 1, hidden]),
        value("value", FLOAT, ["batch", 1, hidden]), bnsh("past_key", "slots"), bnsh("past_value", "slots"),
        value("seqlens_k", TensorProto.INT32, ["batch"]), value("total_sequence_length", TensorProto.INT32, [])],
        [value("out", FLOAT, ["batch", 1, hidden]), bnsh("present_key", "slots"), bnsh("present_value", "slots")]),
        os.path.join(out, "gqa.onnx"), contrib=True)
    read = [helper.make_node("ReduceSum", ["past_key"], ["key_sum"], keepdims=0),
            helper.make_node("ReduceSum", ["past_value"], ["value_sum"], keepdims=0),
            helper.make_node("Add", ["key_sum", "value_sum"], ["out"])]
    save(helper.make_graph(read, "read", [bnsh("past_key", "past"), bnsh("past_value", "past")],
                           [value("out", FLOAT, [])]), os.path.join(out, "read.onnx"), contrib=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--heads", type=int, required=True)
    parser.add_argument("--head-dim", type=int, required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    write_decoder_form(args.out, args.heads, args.head_dim)
    write_contrib_forms(args.out, args.heads, args.head_dim)


if __name__ == "__main__":
    main()
