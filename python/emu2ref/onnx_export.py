"""ONNX export shared by every graph of a package: opset 17, float16 storage on request, external data past 2 GB."""
import contextlib
import os
import tempfile
import warnings

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
TWO_GB = 2 ** 31


def export_graph(module, args, path, input_names, output_names, dynamic_axes, dtype) -> None:
    """torch.onnx.export, then (for float16) weights stored at half precision, then external data where the graph
    would pass protobuf's 2 GB limit."""
    name = os.path.basename(path)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = os.path.join(tmp, name)
        with torch.no_grad(), quiet_export():
            torch.onnx.export(module, args, tmp_path, input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic_axes, opset_version=OPSET, do_constant_folding=True)
        model = onnx.load(tmp_path)
    if dtype == "float16":
        store_float16(model)
    data_file = remove_previous_export(path)
    if sum(init.ByteSize() for init in model.graph.initializer) > TWO_GB - (1 << 24):
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location=data_file,
                        size_threshold=1024)
    else:
        onnx.save_model(model, path)


@contextlib.contextmanager
def quiet_export():
    """torch.onnx.export without three warnings that say nothing about the graph. Two are about llama.py's own
    symbolics (its fixed-shape reshapes): torch 1.13 hands an autograd.Function's symbolic a torch.Graph whose op()
    it calls deprecated (later versions hand it a GraphContext with the same op()), and says it cannot infer the
    shape of the Constants they make (a Constant's shape is its value's). The third comes with a module traced first
    (export_llm.py's streamed export): a ScriptMethod has no Python signature to match the args against, which are
    positional already."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*_graph_op' is deprecated", category=FutureWarning)
        warnings.filterwarnings("ignore", message="The shape inference of prim::Constant type is missing")
        warnings.filterwarnings("ignore", message="no signature found for <torch.ScriptMethod")
        yield


def store_float16(model) -> None:
    """float16 weights and float16 graph inputs/outputs, float32 arithmetic: every float initializer is stored as
    float16 and cast back to float32 where it is used; inputs are cast up and outputs down. This halves the files and
    keeps the SDXL VAE from overflowing (its activations exceed the float16 range), at float32 compute cost."""
    graph = model.graph
    casts = []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        array = numpy_helper.to_array(init)
        half = numpy_helper.from_array(array.astype(np.float16), f"{init.name}.float16")
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT))
        graph.initializer.remove(init)
        graph.initializer.append(half)
    for value in graph.input:
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        inner = f"{value.name}.float32"
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name == value.name:
                    node.input[i] = inner
        value.type.tensor_type.elem_type = TensorProto.FLOAT16
        casts.append(helper.make_node("Cast", [value.name], [inner], to=TensorProto.FLOAT))
    tail = []
    for value in graph.output:
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        inner = f"{value.name}.float32"
        for node in graph.node:
            for i, name in enumerate(node.output):
                if name == value.name:
                    node.output[i] = inner
        value.type.tensor_type.elem_type = TensorProto.FLOAT16
        tail.append(helper.make_node("Cast", [inner], [value.name], to=TensorProto.FLOAT16))
    nodes = casts + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(nodes)


def remove_previous_export(path: str) -> str:
    """Deletes an earlier export of this graph (the .onnx and its external data, which would otherwise be appended
    to); returns the external data file's name."""
    data_file = f"{os.path.basename(path)}_data"
    for stale in (path, os.path.join(os.path.dirname(path), data_file)):
        if os.path.exists(stale):
            os.remove(stale)
    return data_file
