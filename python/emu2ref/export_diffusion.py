"""Builds and exports the visual decoder graphs of a package: unet.onnx and vae_decoder.onnx (names, inputs and
outputs of docs/package-format.md, opset 17, dynamic batch and spatial size).

    build_visual_decoder(config, seed) -> (unet, vae, decoder_config)   tiny random-weight decoder
    export_visual_decoder(out_dir, unet, vae, decoder_config, dtype, parity_dir) -> manifest visual_decoder section
    export_visual_decoder_from_checkpoint(checkpoint_dir, out_dir, dtype) -> section   the real Emu2-Gen decoder

`decoder_config` is {"unet": UNet config, "vae": VAE config} in diffusers' config.json key names.
"""
import json
import os
import struct

import torch

from . import manifest as mf
from .golden import GoldenWriter
from .onnx_export import export_graph
from .scheduler import EulerDiscreteScheduler
from .unet import DOWN_BLOCKS, UP_BLOCKS, UNet2DConditionModel
from .vae import AutoencoderKLDecoder


# Small enough for a few-MB package and a UNet step of milliseconds, yet every block kind of the SDXL layout is
# present: several transformer layers in one block, several heads, skip concatenations of unequal widths.
TINY_UNET = {
    "sample_size": 16,
    "block_out_channels": [16, 32, 32],
    "layers_per_block": 1,
    "transformer_layers_per_block": [1, 1, 2],
    "attention_head_dim": [1, 2, 2],
    "cross_attention_dim": 32,
    "norm_num_groups": 4,
    "addition_time_embed_dim": 8,
}
TINY_VAE = {
    "block_out_channels": [8, 16, 16, 16],
    "layers_per_block": 1,
    "norm_num_groups": 4,
}

UNET_INPUTS = ["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"]


def build_visual_decoder(config: dict, seed: int):
    """Random-weight (PyTorch default init, seeded) UNet and VAE decoder of the tiny layout. `config` may set
    `cross_attention_dim` (the vision width) and override any key under "unet" or "vae"."""
    unet_config = {**TINY_UNET, **config.get("unet", {})}
    if "cross_attention_dim" in config:
        unet_config["cross_attention_dim"] = config["cross_attention_dim"]
    unet_config["projection_class_embeddings_input_dim"] = (
        unet_config["cross_attention_dim"] + 6 * unet_config["addition_time_embed_dim"])
    vae_config = {**TINY_VAE, **config.get("vae", {})}
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(unet_config).eval()
    vae = AutoencoderKLDecoder(vae_config).eval()
    return unet, vae, {"unet": unet.config, "vae": vae.config}


def visual_decoder_section(unet: UNet2DConditionModel, vae: AutoencoderKLDecoder, scheduler: dict = None) -> dict:
    latent_size = unet.config["sample_size"]
    section = mf.visual_decoder_section(latent_size=latent_size, image_side=latent_size * vae.scale_factor)
    section["vae_scale_factor"] = vae.scale_factor
    section["latent_channels"] = unet.config["in_channels"]
    section["scaling_factor"] = vae.config["scaling_factor"]
    if scheduler is not None:
        section["scheduler"] = scheduler
    return section


def example_unet_inputs(unet: UNet2DConditionModel, batch: int, queries: int, generator: torch.Generator) -> dict:
    c = unet.config
    side = c["sample_size"]
    return {
        "sample": torch.randn(batch, c["in_channels"], side, side, generator=generator),
        "timestep": torch.tensor([901.0, 1.0, 500.0, 250.0][:batch] * (batch // 4 + 1))[:batch],
        "encoder_hidden_states": torch.randn(batch, queries, c["cross_attention_dim"], generator=generator),
        "text_embeds": torch.randn(batch, c["cross_attention_dim"], generator=generator),
        "time_ids": torch.tensor([[side * 8.0, side * 8.0, 0.0, 0.0, side * 8.0, side * 8.0]] * batch),
    }


def export_visual_decoder(out_dir: str, unet: UNet2DConditionModel, vae: AutoencoderKLDecoder, config: dict,
                          dtype: str = "float32", parity_dir: str = None, scheduler: dict = None) -> dict:
    """Writes unet.onnx and vae_decoder.onnx into out_dir and returns the manifest's visual_decoder section.
    With parity_dir, also writes goldens of random inputs and the PyTorch outputs of both graphs (float32)."""
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype {dtype!r}: expected float32 or float16")
    if config["unet"] != unet.config or config["vae"] != vae.config:
        raise ValueError("config does not describe the given unet and vae")
    os.makedirs(out_dir, exist_ok=True)
    section = visual_decoder_section(unet, vae, scheduler)
    generator = torch.Generator().manual_seed(0)
    unet_inputs = example_unet_inputs(unet, 2, 64, generator)
    latent = torch.randn(1, vae.config["latent_channels"], unet.config["sample_size"], unet.config["sample_size"],
                         generator=generator)

    export_graph(unet, tuple(unet_inputs.values()), os.path.join(out_dir, section["unet_file"]), UNET_INPUTS,
            ["out_sample"], {
                "sample": {0: "batch", 2: "height", 3: "width"},
                "timestep": {0: "batch"},
                "encoder_hidden_states": {0: "batch", 1: "queries"},
                "text_embeds": {0: "batch"},
                "time_ids": {0: "batch"},
                "out_sample": {0: "batch", 2: "height", 3: "width"},
            }, dtype)
    export_graph(vae, (latent,), os.path.join(out_dir, section["vae_decoder_file"]), ["latent_sample"], ["sample"], {
        "latent_sample": {0: "batch", 2: "height", 3: "width"},
        "sample": {0: "batch", 2: "image_height", 3: "image_width"},
    }, dtype)

    if parity_dir is not None:
        writer = GoldenWriter(parity_dir)
        with torch.no_grad():
            out_sample = unet(**unet_inputs)
            image = vae(latent)
        for name, value in unet_inputs.items():
            writer.add(f"unet.{name}", value.float())
        writer.add("unet.out_sample", out_sample)
        writer.add("vae_decoder.latent_sample", latent)
        writer.add("vae_decoder.sample", image)
        writer.meta = {"dtype": dtype, "seed": 0, "unet_file": section["unet_file"],
                       "vae_decoder_file": section["vae_decoder_file"]}
        writer.save()
    return section


# ---- the real Emu2-Gen visual decoder (diffusers-format folders unet/, vae/, scheduler/) ----

def _read_safetensors(path: str) -> dict:
    """The safetensors layout (8-byte little-endian header length, JSON header, raw little-endian tensors), read
    without the safetensors package, which Debian's Python lacks."""
    dtypes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        blob = f.read()
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        raw = bytearray(blob[start:end])
        tensors[name] = torch.frombuffer(raw, dtype=dtypes[entry["dtype"]]).reshape(entry["shape"]).clone() \
            if end > start else torch.empty(entry["shape"], dtype=dtypes[entry["dtype"]])
    return tensors


def _load_weights(folder: str) -> dict:
    for variant in ("", ".bf16", ".fp16"):
        index = os.path.join(folder, f"diffusion_pytorch_model{variant}.safetensors.index.json")
        if os.path.exists(index):  # sharded checkpoint: the index maps each tensor to its shard file
            with open(index) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            weights = {}
            for shard in shards:
                weights.update(_read_safetensors(os.path.join(folder, shard)))
            return weights
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bf16.safetensors",
                 "diffusion_pytorch_model.fp16.safetensors"):
        if os.path.exists(os.path.join(folder, name)):
            return _read_safetensors(os.path.join(folder, name))
    for name in ("diffusion_pytorch_model.bin", "diffusion_pytorch_model.bf16.bin", "diffusion_pytorch_model.fp16.bin"):
        if os.path.exists(os.path.join(folder, name)):
            return torch.load(os.path.join(folder, name), map_location="cpu")
    raise FileNotFoundError(f"{folder}: no diffusion_pytorch_model weights (.safetensors or .bin)")


_UNET_ARCH = {
    "down_block_types": list(DOWN_BLOCKS),
    "up_block_types": list(UP_BLOCKS),
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "addition_embed_type": "text_time",
    "act_fn": "silu",
    "resnet_time_scale_shift": "default",
}
_UNET_KEYS = ["sample_size", "in_channels", "out_channels", "block_out_channels", "layers_per_block",
              "transformer_layers_per_block", "attention_head_dim", "cross_attention_dim", "norm_num_groups",
              "norm_eps", "addition_time_embed_dim", "projection_class_embeddings_input_dim", "use_linear_projection",
              "flip_sin_to_cos", "freq_shift"]
_VAE_KEYS = ["in_channels", "out_channels", "latent_channels", "block_out_channels", "layers_per_block",
             "norm_num_groups", "scaling_factor", "sample_size"]
# Names of old diffusers VAE attention weights, which diffusers renames on load.
_DEPRECATED_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def _unet_from_checkpoint(folder: str) -> UNet2DConditionModel:
    with open(os.path.join(folder, "config.json")) as f:
        raw = json.load(f)
    for key, expected in _UNET_ARCH.items():
        if key in raw and raw[key] not in (expected, tuple(expected)) and raw[key] is not None:
            raise ValueError(f"{folder}/config.json: {key} {raw[key]!r} is not the SDXL layout ({expected!r})")
    for key in ("encoder_hid_dim", "class_embed_type", "num_class_embeds", "time_cond_proj_dim"):
        if raw.get(key) is not None:
            raise ValueError(f"{folder}/config.json: {key} is set; the SDXL layout has none")
    if raw.get("num_attention_heads") is not None:
        raw["attention_head_dim"] = raw["num_attention_heads"]
    unet = UNet2DConditionModel({k: raw[k] for k in _UNET_KEYS if k in raw})
    unet.load_state_dict({k: v.float() for k, v in _load_weights(folder).items()}, strict=True)
    return unet.eval()


def _vae_from_checkpoint(folder: str) -> AutoencoderKLDecoder:
    with open(os.path.join(folder, "config.json")) as f:
        raw = json.load(f)
    vae = AutoencoderKLDecoder({k: raw[k] for k in _VAE_KEYS if k in raw})
    weights = {}
    for key, value in _load_weights(folder).items():
        if not key.startswith(("post_quant_conv.", "decoder.")):
            continue
        parts = key.split(".")
        if "attentions" in parts and parts[-2] in _DEPRECATED_ATTENTION:
            key = ".".join(parts[:-2] + [_DEPRECATED_ATTENTION[parts[-2]], parts[-1]])
            if value.dim() == 4:
                value = value[:, :, 0, 0]
        weights[key] = value.float()
    vae.load_state_dict(weights, strict=True)
    return vae.eval()


def export_visual_decoder_from_checkpoint(checkpoint_dir: str, out_dir: str, dtype: str = "float16",
                                          parity_dir: str = None) -> dict:
    """Exports the official Emu2-Gen visual decoder (checkpoint_dir holds diffusers folders unet/, vae/ and
    scheduler/) and returns the manifest's visual_decoder section; parity_dir as in export_visual_decoder."""
    unet = _unet_from_checkpoint(os.path.join(checkpoint_dir, "unet"))
    vae = _vae_from_checkpoint(os.path.join(checkpoint_dir, "vae"))
    scheduler = None
    scheduler_file = os.path.join(checkpoint_dir, "scheduler", "scheduler_config.json")
    if os.path.exists(scheduler_file):
        with open(scheduler_file) as f:
            scheduler = _scheduler_section(json.load(f))
    return export_visual_decoder(out_dir, unet, vae, {"unet": unet.config, "vae": vae.config}, dtype=dtype,
                                 parity_dir=parity_dir, scheduler=scheduler)


def _scheduler_section(raw: dict) -> dict:
    if raw.get("_class_name", "EulerDiscreteScheduler") != "EulerDiscreteScheduler":
        raise ValueError(f"scheduler {raw['_class_name']}: only EulerDiscreteScheduler is implemented")
    if raw.get("use_karras_sigmas"):
        raise ValueError("scheduler uses Karras sigmas, which the runtime does not implement")
    section = mf.scheduler_section()
    for key in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "timestep_spacing", "steps_offset",
                "prediction_type"):
        if key in raw:
            section[key] = raw[key]
    EulerDiscreteScheduler.from_section(section)  # rejects settings the runtime does not implement
    return section
