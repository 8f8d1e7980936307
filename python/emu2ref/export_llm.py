"""Exports the visual encoder and the LLM of a package as the graphs of docs/package-format.md (visual_encoder,
embed_tokens, project_up, decoder with KV cache, lm_head, project_down), and writes parity goldens: seeded random
inputs and the PyTorch outputs for every graph, which the TypeScript tests run through ONNX Runtime.

    export_vision_llm(out_dir, vision, llm, dtype, parity_dir) -> {"vision": {...}, "llm": {...}}
    export_vision_llm_from_checkpoint(checkpoint_dir, out_dir, dtype, variant) -> the same, for the official weights

Every graph goes through one streaming path, so the tiny packages test the code that exports the 37B model: the
module is traced with its parameters passed in as inputs (graph inputs named by parameter, values never seen by the
exporter), then each weight input is replaced by an initializer read from a source one tensor at a time (the
in-memory module, or a checkpoint shard) and written in the target dtype, into `<graph>.onnx_data` when the graph
passes 2 GB. For a checkpoint the traced module holds stride-0 placeholders (`torch.zeros(1).expand(shape)`), so no
weight is ever materialized in full (the 60-layer decoder traces in about 1 GB). Weights used only through a 2-D
Transpose (every Linear) are stored transposed and the Transpose is dropped.

float16 packages compute in float16 as transformers does with a half model (RMSNorm, rotary tables and softmax in
float32 inside): the module is traced in float64, which stands for "the model dtype", and every float64 type,
cast and constant is then rewritten to float16 (constants clamped to the float16 range, so the mask value
finfo(float64).min becomes finfo(float16).min, HF's mask value in half precision). The explicit float32 islands of
the module survive the rewrite because they are real casts in a float64 trace.
"""
import copy
import json
import os
import tempfile

import numpy as np
import onnx
import torch
from onnx import TensorProto, numpy_helper
from torch import nn

from .checkpoint import Checkpoint
from .eva_vit import EvaViT
from .golden import GoldenWriter
from .llama import Emu2LLM, position_ids_for
from .noise import normals
from .onnx_export import OPSET, TWO_GB, quiet_export, remove_previous_export
from . import quantize as qz

# Headroom under protobuf's 2 GB limit for the graph itself.
EXTERNAL_THRESHOLD = TWO_GB - (1 << 24)
# External tensors start on page boundaries so ONNX Runtime can memory-map them.
EXTERNAL_ALIGNMENT = 4096
PIXEL_SEED = 11
DTYPES = {"float32": torch.float32, "float16": torch.float16}
# The dtype a graph is traced in: float16 is traced as float64 and rewritten (module docstring).
_TRACE_DTYPES = {"float32": torch.float32, "float16": torch.float64}


class _Linear(nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)


class _Embed(nn.Module):
    def __init__(self, llm):
        super().__init__()
        self.llm = llm

    def forward(self, input_ids):
        return self.llm.embed_tokens(input_ids)


class _Decoder(nn.Module):
    """Flat inputs/outputs: (inputs_embeds, attention_mask, position_ids, past.0.key, past.0.value, ...) ->
    (last_hidden_state, new_key_values.0.key, new_key_values.0.value, ...); with layers = (start, stop), one part of a
    split decoder (Emu2LLM.decode).

    new_key_values are this run's own keys and values [B,h,T,d]; the cache appends them itself (a host cache into
    free slots of its buffers, a WebGPU cache by a Concat on the device). The graph attends the past where it is fed
    (Emu2LLM.decode's past_apart) and has no presents: ONNX Runtime runs every node of a graph whatever the caller
    fetches, so a present output alone would copy the whole cache on every token (docs/package-format.md).

    reference=True gives the reference's own outputs instead, (last_hidden_state, present.0.key, ...): the past and
    new rows concatenated, attended as HF does (the parity goldens)."""

    def __init__(self, llm, layers=None, reference=False):
        super().__init__()
        self.llm = llm
        self.layers = layers
        self.reference = reference

    def forward(self, inputs_embeds, attention_mask, position_ids, *past):
        pairs = [(past[2 * i], past[2 * i + 1]) for i in range(len(past) // 2)]
        hidden, presents = self.llm.decode(inputs_embeds, attention_mask, position_ids, pairs, self.layers,
                                           past_apart=not self.reference)
        return (hidden,) + tuple(t for kv in presents for t in kv)


def decoder_names(layers: int, start: int = 0):
    """past and present names of layers start .. layers-1 (global layer indices, also in a part's graph); presents
    are the reference's outputs (the parity goldens), not the exported graph's."""
    past = [f"past_key_values.{i}.{kind}" for i in range(start, layers) for kind in ("key", "value")]
    present = [f"present.{i}.{kind}" for i in range(start, layers) for kind in ("key", "value")]
    return past, present


def new_rows_names(layers: int, start: int = 0):
    """The names of the decoder's new_key_values outputs (this run's rows: the presents' last T) of layers start ..
    layers-1."""
    return [f"new_key_values.{i}.{kind}" for i in range(start, layers) for kind in ("key", "value")]


def decoder_part_ranges(layers: int, parts: int) -> list:
    """Consecutive layer ranges [(start, stop)] of a decoder split into `parts` graphs (earlier parts one larger)."""
    if not 1 <= parts <= layers:
        raise ValueError(f"--decoder-parts {parts}: expected 1 to the LLM's {layers} layers")
    sizes = [layers // parts + (1 if k < layers % parts else 0) for k in range(parts)]
    return [(sum(sizes[:k]), sum(sizes[:k + 1])) for k in range(parts)]


def _example_inputs(vision: EvaViT, llm: Emu2LLM) -> dict:
    """Seeded inputs of every graph (also the parity goldens' inputs). The decoder case has a non-empty past and
    left padding; the graph traced from it runs with any past length, zero included (the first step)."""
    g = torch.Generator().manual_seed(7)
    size = vision.image_size
    attn = llm.model.layers[0].self_attn
    hidden = llm.model.embed_tokens.embedding_dim
    # Drawn from the package's seeded normal generator (docs/package-format.md) so the test can remake them rather
    # than store 600k floats.
    pixels = torch.from_numpy(normals(PIXEL_SEED, 3 * size * size).astype("float32").reshape(1, 3, size, size))
    ids = torch.randint(0, llm.model.embed_tokens.num_embeddings, (2, 5), generator=g)
    features = torch.randn(2, 4, llm.project_up.in_features, generator=g)
    states = torch.randn(1, 2, hidden, generator=g)
    past_names, _ = decoder_names(len(llm.model.layers))
    batch, past_len, new = 2, 3, 2
    mask = torch.ones(batch, past_len + new, dtype=torch.long)
    mask[1, 0] = 0
    decoder = {"inputs_embeds": torch.randn(batch, new, hidden, generator=g), "attention_mask": mask,
               "position_ids": position_ids_for(mask, new)}
    decoder.update((n, torch.randn(batch, attn.heads, past_len, attn.head_dim, generator=g)) for n in past_names)
    return {"visual_encoder": {"pixel_values": pixels}, "embed_tokens": {"input_ids": ids},
            "project_up": {"image_features": features}, "lm_head": {"hidden_states": states},
            "project_down": {"hidden_states": states}, "decoder": decoder}


def _decoder_spec(layers: int, part=None):
    start, stop = part or (0, layers)
    past_names, _ = decoder_names(stop, start)
    axes = {"inputs_embeds": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "total"},
            "position_ids": {0: "batch", 1: "tokens"}, "last_hidden_state": {0: "batch", 1: "tokens"}}
    axes.update({n: {0: "batch", 2: "past"} for n in past_names})
    new_names = new_rows_names(stop, start)
    axes.update({n: {0: "batch", 2: "tokens"} for n in new_names})
    return (lambda v, m: _Decoder(m, part)), ["last_hidden_state"] + new_names, axes


def _graph_specs(layers: int, decoder_parts: int = 1) -> dict:
    """name -> (wrapper factory over (vision, llm), output names, dynamic axes). A split decoder is the graphs
    decoder_part0, decoder_part1, ... of consecutive layers in place of decoder."""
    tokens = {0: "batch", 1: "tokens"}
    specs = {
        "visual_encoder": (lambda v, m: v, ["last_hidden_state"],
                           {"pixel_values": {0: "batch"}, "last_hidden_state": {0: "batch"}}),
        "embed_tokens": (lambda v, m: _Embed(m), ["inputs_embeds"], {"input_ids": tokens, "inputs_embeds": tokens}),
        "project_up": (lambda v, m: _Linear(m.project_up), ["image_embeds"],
                       {"image_features": {0: "images", 1: "queries"}, "image_embeds": {0: "images", 1: "queries"}}),
        "decoder": _decoder_spec(layers),
        "lm_head": (lambda v, m: _Linear(m.lm_head), ["logits"], {"hidden_states": tokens, "logits": tokens}),
        "project_down": (lambda v, m: _Linear(m.project_down), ["visual_embeds"],
                         {"hidden_states": tokens, "visual_embeds": tokens}),
    }
    if decoder_parts > 1:
        del specs["decoder"]
        for k, part in enumerate(decoder_part_ranges(layers, decoder_parts)):
            specs[f"decoder_part{k}"] = _decoder_spec(layers, part)
    return specs


def _sections(vision: EvaViT, llm: Emu2LLM, decoder_parts: int = 1) -> dict:
    """The manifest's vision and llm fields the graphs fix. A split decoder lists its parts in llm.decoder_parts
    instead of llm.decoder_file (the caller drops decoder_file from its defaults)."""
    attn = llm.model.layers[0].self_attn
    block = vision.blocks[0]
    sections = {
        "vision": {"file": "visual_encoder.onnx", "image_size": vision.image_size,
                   "patch_size": vision.patch_embed.proj.kernel_size[0], "width": vision.pos_embed.shape[-1],
                   "layers": len(vision.blocks), "heads": block.attn.heads},
        "llm": {"embed_tokens_file": "embed_tokens.onnx", "decoder_file": "decoder.onnx",
                "lm_head_file": "lm_head.onnx", "project_up_file": "project_up.onnx",
                "project_down_file": "project_down.onnx", "hidden_size": llm.model.embed_tokens.embedding_dim,
                "num_layers": len(llm.model.layers), "num_heads": attn.heads, "head_dim": attn.head_dim,
                "intermediate_size": llm.model.layers[0].mlp.gate_proj.out_features,
                "max_position_embeddings": llm.max_position_embeddings,
                "rms_norm_eps": llm.model.norm.eps},
    }
    if decoder_parts > 1:
        del sections["llm"]["decoder_file"]
        sections["llm"]["decoder_parts"] = [
            {"file": f"decoder_part{k}.onnx", "layers": stop - start}
            for k, (start, stop) in enumerate(decoder_part_ranges(len(llm.model.layers), decoder_parts))]
    return sections


def check_quantization(plan: dict, vision: EvaViT, llm: Emu2LLM) -> None:
    """Fails before anything is written when a block size does not divide an input width of a graph to quantize."""
    layer = llm.model.layers[0]
    widths = {"decoder": [("the LLM hidden size", layer.mlp.gate_proj.in_features),
                          ("the LLM intermediate size", layer.mlp.down_proj.in_features)],
              "lm_head": [("the LLM hidden size", llm.lm_head.in_features)],
              "project_up": [("the vision width", llm.project_up.in_features)],
              "project_down": [("the LLM hidden size", llm.project_down.in_features)],
              "visual_encoder": [("the vision width", vision.blocks[0].mlp.fc1.in_features),
                                 ("the vision MLP width", vision.blocks[0].mlp.fc2.in_features)]}
    for graph, q in plan.items():
        for what, k in widths[graph]:
            qz.check_width(q, k, f"{what} ({graph})")


def _export_all(out_dir: str, trace_vision, trace_llm, dtype: str, tensor_for, only=None, quantization=None,
                decoder_parts: int = 1) -> None:
    """Traces each graph from (trace_vision, trace_llm) and fills its weights from tensor_for(root, name), where
    root is "vision" or "llm" and name a parameter name of EvaViT or Emu2LLM. quantization maps graph names to the
    Quantization of their MatMul weights (quantize.py)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: expected float32 or float16")
    quantization = quantization or {}
    check_quantization(quantization, trace_vision, trace_llm)
    os.makedirs(out_dir, exist_ok=True)
    trace_dtype = _TRACE_DTYPES[dtype]
    examples = _example_inputs(trace_vision, trace_llm)
    roots = {"vision": trace_vision, "llm": trace_llm}
    for name, (wrap, outputs, axes) in _graph_specs(len(trace_llm.model.layers), decoder_parts).items():
        if only is not None and name not in only:
            continue
        module = wrap(trace_vision, trace_llm)
        root_names = {}
        for root, root_module in roots.items():
            ids = {id(p): n for n, p in root_module.named_parameters()}
            root_names.update({n: (root, ids[id(p)]) for n, p in module.named_parameters() if id(p) in ids})
        example = examples["decoder" if name.startswith("decoder") else name]
        # A part's past inputs are those of its own layers.
        example = {k: v for k, v in example.items() if not k.startswith("past_key_values.") or k in axes}
        inputs = {k: v.to(trace_dtype) if v.is_floating_point() else v for k, v in example.items()}
        export_streamed(module, inputs, os.path.join(out_dir, f"{name}.onnx"), outputs, axes, dtype,
                        lambda n: tensor_for(*root_names[n]),
                        quantization.get("decoder" if name.startswith("decoder") else name))


def export_vision_llm(out_dir: str, vision: EvaViT, llm: Emu2LLM, dtype: str = "float32",
                      parity_dir: str = None, quantization: dict = None, decoder_parts: int = 1,
                      only: set = None) -> dict:
    """Writes the six graphs into out_dir; returns the manifest's "vision" and "llm" fields it knows (n_query,
    video_n_query, mean, std and resample are the caller's). With parity_dir, also writes goldens of seeded inputs
    and the float32 PyTorch outputs of every graph. quantization: graph name -> quantize.Quantization; only: the
    names of the graphs to write (default all)."""
    trace_dtype = _TRACE_DTYPES.get(dtype)
    if trace_dtype is None:
        raise ValueError(f"dtype {dtype!r}: expected float32 or float16")
    if trace_dtype == torch.float32:
        trace_vision, trace_llm = vision, llm
    else:
        trace_vision, trace_llm = copy.deepcopy(vision).to(trace_dtype), copy.deepcopy(llm).to(trace_dtype)
    weights = {"vision": dict(vision.named_parameters()), "llm": dict(llm.named_parameters())}
    _export_all(out_dir, trace_vision, trace_llm, dtype, lambda root, name: weights[root][name],
                quantization=quantization, decoder_parts=decoder_parts, only=only)
    if parity_dir:
        _write_parity(parity_dir, vision, llm, dtype)
    return _sections(vision, llm, decoder_parts)


def _write_parity(parity_dir: str, vision: EvaViT, llm: Emu2LLM, dtype: str) -> None:
    examples = _example_inputs(vision, llm)
    specs = _graph_specs(len(llm.model.layers))
    writer = GoldenWriter(parity_dir)
    past_names, present_names = decoder_names(len(llm.model.layers))
    with torch.no_grad():
        for name, (wrap, outputs, _) in specs.items():
            cases = [(name, examples[name])]
            if name == "decoder":
                cases.append(("decoder_first_step", _first_step(examples[name], past_names)))
                cases.append(("decoder_one_token", _one_token(examples[name], past_names)))
                # The reference's presents (HF's attention over the concatenated cache): the test checks the
                # graph's new_key_values against their last rows, and its hidden state computed without them.
                outputs = ["last_hidden_state"] + present_names
                wrap = lambda v, m: _Decoder(m, reference=True)  # noqa: E731
            for case, feeds in cases:
                result = wrap(vision, llm)(*feeds.values())
                result = result if isinstance(result, tuple) else (result,)
                # The pixels are remade by the test from PIXEL_SEED (docs/package-format.md's generator).
                for input_name, value in feeds.items() if case != "visual_encoder" else ():
                    writer.add(f"{case}.{input_name}", value)
                for output_name, value in zip(outputs, result):
                    writer.add(f"{case}.{output_name}", value)
    pixels = examples["visual_encoder"]["pixel_values"]
    writer.meta = {"dtype": dtype, "layers": len(llm.model.layers), "visual_encoder_pixel_seed": PIXEL_SEED,
                   "visual_encoder_pixel_shape": list(pixels.shape),
                   "cases": ["visual_encoder", "embed_tokens", "project_up", "lm_head", "project_down", "decoder",
                             "decoder_first_step", "decoder_one_token"]}
    writer.save()


def _first_step(feeds: dict, past_names: list) -> dict:
    """The same prompt run as a first step: zero-length past, all tokens new, left padding kept."""
    mask = feeds["attention_mask"][:, -feeds["inputs_embeds"].shape[1]:].clone()
    mask[1, 0] = 0
    first = {"inputs_embeds": feeds["inputs_embeds"], "attention_mask": mask,
             "position_ids": position_ids_for(mask, mask.shape[1])}
    shape = feeds[past_names[0]].shape
    first.update({n: torch.zeros(shape[0], shape[1], 0, shape[3]) for n in past_names})
    return first


def _one_token(feeds: dict, past_names: list) -> dict:
    """A generation step: one new token on the traced case's past, the second row padded twice on the left."""
    batch, past_len = feeds["attention_mask"].shape[0], feeds[past_names[0]].shape[2]
    mask = torch.ones(batch, past_len + 1, dtype=torch.long)
    mask[1, :2] = 0
    step = {"inputs_embeds": feeds["inputs_embeds"][:, -1:], "attention_mask": mask,
            "position_ids": position_ids_for(mask, 1)}
    step.update((n, feeds[n]) for n in past_names)
    return step


# ---- the streaming export ----

def export_streamed(module: nn.Module, inputs: dict, path: str, output_names: list, dynamic_axes: dict, dtype: str,
                    tensor_for, quantization: "qz.Quantization" = None) -> None:
    """Traces module on inputs without its weights, then writes every parameter from tensor_for(parameter name) in
    dtype, one at a time (module docstring); with a quantization, the weights of MatMuls as MatMulNBits."""
    name = os.path.basename(path)
    weights = dict(module.named_parameters())
    with tempfile.TemporaryDirectory() as tmp:
        traced = os.path.join(tmp, name)
        # Plain tensors, not Parameters: the exporter deep-copies its arguments, and a Parameter's deepcopy clones
        # the full tensor where a plain tensor's copies its storage (one element for a stride-0 placeholder).
        args = tuple(inputs.values()) + tuple(w.detach() for w in weights.values())
        with torch.no_grad(), quiet_export():
            # Traced with torch.jit.trace first: torch.onnx.export's own tracer clones every input, which would
            # materialize the placeholders (all 74 GB of them for the real model).
            script = torch.jit.trace(_WeightsAsInputs(module, list(weights)), args, check_trace=False)
            torch.onnx.export(script, args, traced, input_names=list(inputs) + list(weights),
                              output_names=output_names, dynamic_axes=dynamic_axes, opset_version=OPSET,
                              do_constant_folding=False)
        model = onnx.load(traced)
    if dtype == "float16":
        _float64_to_float16(model)
    data_file = remove_previous_export(path)
    _attach_weights(model, set(inputs), DTYPES[dtype], tensor_for, os.path.join(os.path.dirname(path), data_file),
                    quantization)
    onnx.save_model(model, path)


class _WeightsAsInputs(nn.Module):
    """The module with its parameters passed in as trailing arguments. Traced so, weights are plain graph inputs
    whose values the exporter never sees: given as parameters (even with export_params=False), the exporter's shape
    inference evaluates every op on them, which for the real decoder materializes and keeps transposed copies of
    every weight (12 GB and minutes for two of its 60 layers), and it merges parameters of equal value."""

    def __init__(self, module: nn.Module, names: list):
        super().__init__()
        # Not registered as a submodule, so the tracer sees no parameters at all.
        self.__dict__["inner"] = module
        self.slots = [(module.get_submodule(n.rpartition(".")[0]), n.rpartition(".")[2]) for n in names]

    def forward(self, *args):
        # torch 1.13's functional_call refuses to run under the tracer; this is the same swap, undone afterwards.
        count = len(args) - len(self.slots)
        saved = [owner._parameters[leaf] for owner, leaf in self.slots]
        try:
            for (owner, leaf), value in zip(self.slots, args[count:]):
                owner._parameters[leaf] = value
            return self.inner(*args[:count])
        finally:
            for (owner, leaf), value in zip(self.slots, saved):
                owner._parameters[leaf] = value


def _attach_weights(model, declared_inputs: set, dtype: torch.dtype, tensor_for, data_path: str,
                    quantization: "qz.Quantization" = None) -> None:
    graph = model.graph
    consumers: dict = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    # The wrappers pass a whole model's parameters; a graph keeps the ones it uses.
    for value in [v for v in graph.input if v.name not in declared_inputs and v.name not in consumers]:
        graph.input.remove(value)
    weight_inputs = [v for v in graph.input if v.name not in declared_inputs]
    transposed, dropped, rename = {}, set(), {}
    for value in weight_inputs:
        uses = consumers.get(value.name, [])
        if uses and all(_is_matrix_transpose(n) for n in uses):
            transposed[value.name] = uses[0].output[0]
            for node in uses:
                dropped.add(id(node))
                rename[node.output[0]] = uses[0].output[0]
    kept = [n for n in graph.node if id(n) not in dropped]
    for node in kept:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in weight_inputs}
    # A Linear weight W [N, K] used only as the right operand of MatMuls (x @ W^T) becomes MatMulNBits weights.
    quantized = {}  # weight name -> its Quantization (int8 layers of an int4 graph differ)
    if quantization is not None:
        kept_consumers: dict = {}
        for node in kept:
            for i in node.input:
                kept_consumers.setdefault(i, []).append(node)
        for name, product in transposed.items():
            uses = kept_consumers.get(product, [])
            if uses and all(n.op_type == "MatMul" and list(n.input).index(product) == 1 for n in uses):
                n_out, k = shapes[name]
                q = quantized[name] = quantization.for_layer(name)
                qz.check_width(q, k, name)
                for node in uses:
                    replacement = qz.matmul_nbits_node(node.input[0], name, node.output[0], n_out, k, q,
                                                       not q.symmetric, f"{name}/MatMulNBits")
                    kept[next(i for i, n in enumerate(kept) if n is node)] = replacement
        if quantized:
            model.opset_import.append(onnx.helper.make_opsetid(qz.MS_DOMAIN, 1))
    del graph.node[:]
    graph.node.extend(kept)

    element_size = torch.tensor([], dtype=dtype).element_size()

    def stored_bytes(name):
        count = int(np.prod(shapes[name]))
        if name not in quantized:
            return count * element_size
        blocks = count // quantized[name].block_size
        return count * quantized[name].bits // 8 + blocks * (element_size + 1)

    external = sum(stored_bytes(v.name) for v in weight_inputs) > EXTERNAL_THRESHOLD
    data = open(data_path, "wb") if external else None
    scale_dtype = np.float16 if dtype == torch.float16 else np.float32

    def store(array, name):
        init = numpy_helper.from_array(array, name) if not external else \
            _external_tensor(array, name, data, os.path.basename(data_path))
        graph.initializer.append(init)

    try:
        for value in weight_inputs:
            tensor = tensor_for(value.name).detach()
            if list(tensor.shape) != shapes[value.name]:
                raise ValueError(f"{value.name}: weight shape {list(tensor.shape)}, graph expects {shapes[value.name]}")
            if value.name in quantized:
                # From the source precision, not the package's float type: one rounding only.
                packed, scales, zero_points = qz.quantize(tensor.float().numpy(), quantized[value.name], scale_dtype)
                store(packed, f"{value.name}.quant")
                store(scales, f"{value.name}.scales")
                if zero_points is not None:
                    store(zero_points, f"{value.name}.zero_points")
                continue
            tensor = tensor.to(dtype)
            if value.name in transposed:
                tensor = tensor.t()
            store(tensor.contiguous().numpy(), transposed.get(value.name, value.name))
    finally:
        if data is not None:
            data.close()
    for value in weight_inputs:
        graph.input.remove(value)


def _is_matrix_transpose(node) -> bool:
    if node.op_type != "Transpose":
        return False
    perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
    return perm == [1, 0]


def _external_tensor(array: np.ndarray, name: str, data, location: str) -> TensorProto:
    pad = (-data.tell()) % EXTERNAL_ALIGNMENT
    data.write(b"\0" * pad)
    offset = data.tell()
    raw = array.tobytes()
    data.write(raw)
    tensor = TensorProto()
    tensor.name = name
    tensor.data_type = onnx.mapping.NP_TYPE_TO_TENSOR_TYPE[array.dtype]
    tensor.dims.extend(array.shape)
    tensor.data_location = TensorProto.EXTERNAL
    for key, val in (("location", location), ("offset", str(offset)), ("length", str(len(raw)))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, val
    return tensor


_FP16_MAX = float(np.finfo(np.float16).max)


def _half(tensor: TensorProto) -> TensorProto:
    array = np.clip(numpy_helper.to_array(tensor), -_FP16_MAX, _FP16_MAX).astype(np.float16)
    return numpy_helper.from_array(array, tensor.name)


def _float64_to_float16(model) -> None:
    """Rewrites a graph traced in float64 (standing for the model dtype) to float16: graph inputs and outputs, casts
    to float64, float64 constants (clamped to the float16 range). float32 parts stay float32."""
    graph = model.graph
    for value in list(graph.input) + list(graph.output):
        if value.type.tensor_type.elem_type == TensorProto.DOUBLE:
            value.type.tensor_type.elem_type = TensorProto.FLOAT16
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.DOUBLE:
                attr.i = TensorProto.FLOAT16
            elif attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.DOUBLE:
                attr.t.CopyFrom(_half(attr.t))
    # Intermediate types recorded by the tracer are float64; ONNX Runtime infers them again.
    del graph.value_info[:]
    leftover = [n.name or n.op_type for n in graph.node for a in n.attribute
                if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.DOUBLE]
    if leftover:
        raise ValueError(f"float64 left in the float16 graph: {leftover[:5]}")


# ---- the official checkpoints ----

# n_query per image (the official configs): Emu2-Chat pools to 256 tokens, Emu2 and Emu2-Gen to 64; video frames to 64.
VARIANT_N_QUERY = {"emu2": 64, "emu2-chat": 256, "emu2-gen": 64}


def _placeholders(module: nn.Module, dtype: torch.dtype) -> None:
    """Replaces every parameter by a stride-0 tensor of its shape: traceable, and a few bytes whatever its size."""
    for name, param in list(module.named_parameters()):
        owner = module.get_submodule(name.rpartition(".")[0]) if "." in name else module
        setattr(owner, name.rpartition(".")[2],
                nn.Parameter(torch.zeros(1, dtype=dtype).expand(param.shape), requires_grad=False))


def _checkpoint_model(checkpoint_dir: str, variant: str, vision_heads: int = None, llama_config: str = None):
    """-> (Checkpoint, EvaViT, Emu2LLM) of the checkpoint's shapes, built on the meta device (no weight memory)."""
    if variant not in VARIANT_N_QUERY:
        raise ValueError(f"variant {variant!r}: expected one of {sorted(VARIANT_N_QUERY)}")
    ckpt = Checkpoint(checkpoint_dir)
    config_json = ckpt.config_json()
    if llama_config:
        with open(llama_config) as f:
            config_json = json.load(f)
    if vision_heads is None:
        vision = config_json.get("vision_config", {})
        vision_heads = vision["width"] // vision["head_width"] if "width" in vision and "head_width" in vision else 16
    vision_config = ckpt.vision_config(vision_heads)
    vision = EvaViT(**vision_config, device="meta").eval()
    llm = Emu2LLM(**ckpt.llm_config(config_json), vision_width=vision_config["width"], device="meta").eval()
    return ckpt, vision, llm


def check_checkpoint_options(checkpoint_dir: str, variant: str, quantization: dict, decoder_parts: int = 1,
                             vision_heads: int = None, llama_config: str = None) -> None:
    """The block size (check_quantization) and decoder part count against a checkpoint's shapes, before any work."""
    ckpt, vision, llm = _checkpoint_model(checkpoint_dir, variant, vision_heads, llama_config)
    ckpt.release()
    check_quantization(quantization, vision, llm)
    decoder_part_ranges(len(llm.model.layers), decoder_parts)


def export_vision_llm_from_checkpoint(checkpoint_dir: str, out_dir: str, dtype: str = "float16",
                                      variant: str = "emu2", vision_heads: int = None,
                                      llama_config: str = None, quantization: dict = None,
                                      decoder_parts: int = 1) -> dict:
    """Exports the six graphs of an official Emu2 / Emu2-Chat / Emu2-Gen checkpoint (checkpoint.py lists the
    layouts read) and returns the manifest's "vision" and "llm" sections, n_query and video_n_query included; the
    caller adds mean, std and resample (manifest.vision_section). One graph at a time, one tensor at a time: peak
    memory is one .bin shard (or one tensor for safetensors) plus the traced graph.

    What the weights cannot tell comes from llama_config (a config.json path), else the checkpoint folder's own
    config.json (HF repos: num_attention_heads, rms_norm_eps, vision_config.width / head_width), else the official
    values (52 LLM heads, eps 1e-6, 2048 positions, 16 vision heads); vision_heads overrides the vision head count.
    quantization: graph name -> quantize.Quantization (quantize.plan_from_args)."""
    ckpt, vision, llm = _checkpoint_model(checkpoint_dir, variant, vision_heads, llama_config)
    # Traced with stride-0 placeholders of the shapes.
    trace_dtype = _TRACE_DTYPES[dtype]
    _placeholders(vision, trace_dtype)
    _placeholders(llm, trace_dtype)
    keys = {"vision": ckpt.vision_keys(n for n, _ in vision.named_parameters()),
            "llm": ckpt.llm_keys(n for n, _ in llm.named_parameters())}
    missing = [k for m in keys.values() for k in m.values() if k not in ckpt.key_file]
    if missing:
        raise KeyError(f"{checkpoint_dir}: missing {len(missing)} weights, e.g. {missing[:3]}")
    _check_rotary(ckpt, llm)

    def tensor_for(root, name):
        return ckpt.read(keys[root][name])

    decoder_part_ranges(len(llm.model.layers), decoder_parts)  # a bad count fails before any work
    _export_all(out_dir, vision, llm, dtype, tensor_for, quantization=quantization, decoder_parts=decoder_parts)
    ckpt.release()
    sections = _sections(vision, llm, decoder_parts)
    sections["vision"].update({"n_query": VARIANT_N_QUERY[variant], "video_n_query": 64})
    return sections


def _check_rotary(ckpt: Checkpoint, llm: Emu2LLM) -> None:
    """Checkpoints written by transformers < 4.31 store rotary_emb.inv_freq; it must be the one Emu2LLM derives."""
    stored = [k for k in ckpt.key_file if k.startswith(ckpt.lm_prefix) and k.endswith("rotary_emb.inv_freq")]
    if stored:
        value = ckpt.read(stored[0]).float()
        if value.shape != llm.rotary.inv_freq.shape or not torch.allclose(value, llm.rotary.inv_freq, rtol=1e-2):
            raise ValueError(f"{stored[0]} differs from the rotary frequencies of base 10000")


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Export the visual encoder and LLM graphs of an official Emu2 "
                                                 "checkpoint (docs/export-real-model.md).")
    parser.add_argument("checkpoint", help="BAAI/Emu2, BAAI/Emu2-Chat or BAAI/Emu2-Gen folder, or a native weights file")
    parser.add_argument("out", help="package folder to write the six graphs into")
    parser.add_argument("--variant", required=True, choices=sorted(VARIANT_N_QUERY))
    parser.add_argument("--dtype", default="float16", choices=sorted(DTYPES))
    parser.add_argument("--vision-heads", type=int, help="vision attention heads (default: config.json, else 16)")
    parser.add_argument("--llama-config", help="a LLaMA config.json (default: the checkpoint's, else the official)")
    parser.add_argument("--decoder-parts", type=int, default=1,
                        help="write the decoder as N graphs of consecutive layers (default 1: one decoder graph)")
    qz.add_arguments(parser)
    args = parser.parse_args()
    try:
        plan = qz.plan_from_args(args)
    except ValueError as err:
        parser.error(str(err))
    sections = export_vision_llm_from_checkpoint(args.checkpoint, args.out, args.dtype, args.variant,
                                                 args.vision_heads, args.llama_config, plan, args.decoder_parts)
    if plan:
        sections["quantization"] = {graph: q.manifest_entry() for graph, q in plan.items()}
    with open(os.path.join(args.out, "vision_llm_sections.json"), "w") as f:
        json.dump(sections, f, indent=1)
        f.write("\n")
    print(json.dumps(sections, indent=1))


if __name__ == "__main__":
    main()
