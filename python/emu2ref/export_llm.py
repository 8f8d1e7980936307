"""Exports the visual encoder and the LLM of a package as the graphs of docs/package-format.md (visual_encoder,
embed_tokens, project_up, decoder with KV cache, lm_head, project_down), and writes parity goldens: seeded random
inputs and the PyTorch outputs for every graph, which the TypeScript tests run through ONNX Runtime."""
import os

import torch
from torch import nn

from .golden import GoldenWriter
from .noise import normals
from .onnx_export import export_graph

PIXEL_SEED = 11


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
    (last_hidden_state, present.0.key, present.0.value, ...)."""

    def __init__(self, llm):
        super().__init__()
        self.llm = llm

    def forward(self, inputs_embeds, attention_mask, position_ids, *past):
        pairs = [(past[2 * i], past[2 * i + 1]) for i in range(len(past) // 2)]
        hidden, presents = self.llm.decode(inputs_embeds, attention_mask, position_ids, pairs)
        return (hidden,) + tuple(t for kv in presents for t in kv)


def decoder_names(layers: int):
    past = [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    present = [f"present.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    return past, present


def position_ids_for(attention_mask, new_tokens: int):
    """HF generation: cumsum(mask) - 1 with padded positions set to 1, for the last new_tokens positions."""
    pos = attention_mask.long().cumsum(-1) - 1
    pos = pos.masked_fill(attention_mask == 0, 1)
    return pos[:, -new_tokens:]


def export_vision_llm(out_dir: str, vision, llm, dtype: str = "float32", parity_dir: str = None) -> dict:
    """Writes the six graphs into out_dir; returns {"vision": {...}, "llm": {...}} manifest fields it knows."""
    os.makedirs(out_dir, exist_ok=True)
    layers = len(llm.model.layers)
    heads = llm.model.layers[0].self_attn.heads
    head_dim = llm.model.layers[0].self_attn.head_dim
    hidden = llm.model.embed_tokens.embedding_dim
    width = llm.project_up.in_features
    size = vision.image_size
    g = torch.Generator().manual_seed(7)
    writer = GoldenWriter(parity_dir) if parity_dir else None

    def run(name, module, inputs: dict, outputs: list, dynamic: dict):
        export_graph(module, tuple(inputs.values()), os.path.join(out_dir, f"{name}.onnx"), list(inputs), outputs,
                     dynamic, dtype)

    # Drawn from the package's seeded normal generator (docs/package-format.md) so the test can remake them rather
    # than store 600k floats.
    pixels = torch.from_numpy(normals(PIXEL_SEED, 3 * size * size).astype("float32").reshape(1, 3, size, size))
    run("visual_encoder", vision, {"pixel_values": pixels}, ["last_hidden_state"],
        {"pixel_values": {0: "batch"}, "last_hidden_state": {0: "batch"}})
    ids = torch.randint(0, llm.model.embed_tokens.num_embeddings, (2, 5), generator=g)
    run("embed_tokens", _Embed(llm), {"input_ids": ids}, ["inputs_embeds"],
        {"input_ids": {0: "batch", 1: "tokens"}, "inputs_embeds": {0: "batch", 1: "tokens"}})
    features = torch.randn(2, 4, width, generator=g)
    run("project_up", _Linear(llm.project_up), {"image_features": features}, ["image_embeds"],
        {"image_features": {0: "images", 1: "queries"}, "image_embeds": {0: "images", 1: "queries"}})
    states = torch.randn(1, 2, hidden, generator=g)
    run("lm_head", _Linear(llm.lm_head), {"hidden_states": states}, ["logits"],
        {"hidden_states": {0: "batch", 1: "tokens"}, "logits": {0: "batch", 1: "tokens"}})
    run("project_down", _Linear(llm.project_down), {"hidden_states": states}, ["visual_embeds"],
        {"hidden_states": {0: "batch", 1: "tokens"}, "visual_embeds": {0: "batch", 1: "tokens"}})

    # The decoder is traced with a non-empty past and left padding; ONNX Runtime runs it with any past length,
    # zero included (the first step).
    past_names, present_names = decoder_names(layers)
    batch, past_len, new = 2, 3, 2
    mask = torch.ones(batch, past_len + new, dtype=torch.long)
    mask[1, 0] = 0
    embeds = torch.randn(batch, new, hidden, generator=g)
    past = [torch.randn(batch, heads, past_len, head_dim, generator=g) for _ in past_names]
    feeds = {"inputs_embeds": embeds, "attention_mask": mask, "position_ids": position_ids_for(mask, new)}
    feeds.update(zip(past_names, past))
    dynamic = {"inputs_embeds": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "total"},
               "position_ids": {0: "batch", 1: "tokens"}, "last_hidden_state": {0: "batch", 1: "tokens"}}
    dynamic.update({n: {0: "batch", 2: "past"} for n in past_names})
    dynamic.update({n: {0: "batch", 2: "total"} for n in present_names})
    run("decoder", _Decoder(llm), feeds, ["last_hidden_state"] + present_names, dynamic)

    if writer:
        with torch.no_grad():
            writer.add("visual_encoder.last_hidden_state", vision(pixels))
            writer.add("embed_tokens.input_ids", ids)
            writer.add("embed_tokens.inputs_embeds", llm.embed_tokens(ids))
            writer.add("project_up.image_features", features)
            writer.add("project_up.image_embeds", llm.project_up(features))
            writer.add("lm_head.hidden_states", states)
            writer.add("lm_head.logits", llm.lm_head(states))
            writer.add("project_down.hidden_states", states)
            writer.add("project_down.visual_embeds", llm.project_down(states))
            for case, case_feeds in (("decoder", feeds), ("decoder_first_step", _first_step(feeds, past_names))):
                outputs = _Decoder(llm)(*case_feeds.values())
                for name, value in case_feeds.items():
                    writer.add(f"{case}.{name}", value)
                for name, value in zip(["last_hidden_state"] + present_names, outputs):
                    writer.add(f"{case}.{name}", value)
        writer.meta = {"dtype": dtype, "layers": layers, "visual_encoder_pixel_seed": PIXEL_SEED,
                       "visual_encoder_pixel_shape": list(pixels.shape),
                       "cases": ["visual_encoder", "embed_tokens", "project_up", "lm_head", "project_down", "decoder",
                                 "decoder_first_step"]}
        writer.save()

    return {
        "vision": {"file": "visual_encoder.onnx", "image_size": size, "width": width, "layers": len(vision.blocks),
                   "heads": vision.blocks[0].attn.heads},
        "llm": {"embed_tokens_file": "embed_tokens.onnx", "decoder_file": "decoder.onnx", "lm_head_file": "lm_head.onnx",
                "project_up_file": "project_up.onnx", "project_down_file": "project_down.onnx", "hidden_size": hidden,
                "num_layers": layers, "num_heads": heads, "head_dim": head_dim},
    }


def _first_step(feeds: dict, past_names: list) -> dict:
    """The same prompt run as a first step: zero-length past, all tokens new, left padding kept."""
    mask = feeds["attention_mask"][:, -feeds["inputs_embeds"].shape[1]:].clone()
    mask[1, 0] = 0
    first = {"inputs_embeds": feeds["inputs_embeds"], "attention_mask": mask,
             "position_ids": position_ids_for(mask, mask.shape[1])}
    shape = feeds[past_names[0]].shape
    first.update({n: torch.zeros(shape[0], shape[1], 0, shape[3]) for n in past_names})
    return first
