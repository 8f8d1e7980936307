"""Reads the official Emu2 checkpoints one tensor (or one shard) at a time, and maps their keys to our modules.

Where the weights are (Emu2/README.md, the HF repos' modeling_emu.py, emu/emu.py, emu/diffusion.py):

- Hugging Face repos BAAI/Emu2 and BAAI/Emu2-Chat (`AutoModelForCausalLM`, class EmuForCausalLM): sharded weights
  with an index json (`*.index.json` mapping each key to its shard; .safetensors or .bin shards). Keys:
  `model.visual.*`, `model.decoder.lm.model.*`, `model.decoder.lm.lm_head.weight`, `project_up.weight`,
  `project_down.weight` (project_up/down sit on EmuForCausalLM, beside `model`).
- BAAI/Emu2-Gen: the same model under `multimodal_encoder/` (loaded with variant="bf16", so shards may be named
  `*.bf16.safetensors`), plus diffusers folders unet/ and vae/ (export_diffusion.py reads those).
- Native PyTorch files (Emu2_pytorch_model.bf16.bin, Emu2-Chat_..., Emu2-Gen_pytorch_model.bf16.safetensors): one
  file, EmuModel keys `visual.*`, `decoder.lm.*`, `project_up.weight`, `project_down.weight`; the Gen file nests them
  under `multimodal_encoder.` beside `unet.`, `vae.` and `safety_checker.`.

The prefixes are found from the keys themselves (the key that ends in `visual.patch_embed.proj.weight`, and so on),
so every layout above maps the same way. Our module names are the official names below those prefixes:

    EvaViT            <vision prefix>           e.g. model.visual.
    Emu2LLM.model.*   <lm prefix>model.*        e.g. model.decoder.lm.model.layers.0.self_attn.q_proj.weight
    Emu2LLM.lm_head   <lm prefix>lm_head.weight
    Emu2LLM.project_up / project_down           <head prefix>project_up.weight, <head prefix>project_down.weight

`rotary_emb.inv_freq` buffers (present in transformers < 4.31 checkpoints) are not weights: Emu2LLM derives them.

safetensors shards are read tensor by tensor (seek + read of that tensor's bytes, no safetensors package needed);
a .bin shard is a pickle, so reading a tensor from it loads that whole shard (the largest is about 10 GB in bf16).
"""
import glob
import json
import os
import struct

import torch

_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
                       "I64": torch.int64, "I32": torch.int32}

VISION_ANCHOR = "visual.patch_embed.proj.weight"
LM_ANCHOR = "decoder.lm.model.embed_tokens.weight"
HEAD_ANCHOR = "project_up.weight"


class Checkpoint:
    """The key -> file map of a checkpoint folder (or single file), with component prefixes and lazy reads."""

    def __init__(self, path: str):
        self.folder = _model_folder(path)
        self.files = _weight_files(self.folder)
        self.key_file: dict = {}
        self._safetensors_headers: dict = {}
        for file, keys in self.files.items():
            for key in keys if keys is not None else self._keys_of(file):
                self.key_file[key] = file
        self.vision_prefix = self._prefix(VISION_ANCHOR, "visual.patch_embed.proj.weight")
        self.lm_prefix = self._prefix(LM_ANCHOR, "model.embed_tokens.weight")
        self.head_prefix = self._prefix(HEAD_ANCHOR, "project_up.weight",
                                        exclude=(self.vision_prefix + "visual.", self.lm_prefix))
        self._bin_cache: tuple = (None, None)

    def _keys_of(self, file: str) -> list:
        if file.endswith(".safetensors"):
            return list(self._header(file)[0])
        return list(self._load_bin(file))

    def _prefix(self, anchor: str, suffix: str, exclude=()) -> str:
        hits = [k for k in self.key_file if k.endswith(anchor) and not k.startswith(tuple(p for p in exclude if p))]
        if len(hits) != 1:
            raise KeyError(f"checkpoint: expected one key ending in {anchor!r}, found {hits or 'none'}")
        prefix = hits[0][: -len(suffix)]
        if prefix and not prefix.endswith("."):
            raise KeyError(f"checkpoint: key {hits[0]!r} does not end in the module name {suffix!r}")
        return prefix

    # ---- component key maps: our module's state-dict name -> checkpoint key ----

    def vision_keys(self, names) -> dict:
        return {n: f"{self.vision_prefix}visual.{n}" for n in names}

    def llm_keys(self, names) -> dict:
        """Names of an Emu2LLM state dict (model.*, lm_head.weight, project_up.weight, project_down.weight)."""
        out = {}
        for n in names:
            if n.startswith(("project_up.", "project_down.")):
                out[n] = f"{self.head_prefix}{n}"
            else:
                out[n] = f"{self.lm_prefix}{n}"
        return out

    def vision_config(self, heads: int) -> dict:
        """The EvaViT arguments from the tensor shapes; the head count cannot be read from weights (Emu2: 16, that
        is width 1792 / head_width 112, emu/conf/emu_conf.py)."""
        p = self.vision_prefix + "visual."
        width, _, patch, _ = self.shape(p + "patch_embed.proj.weight")
        side = int(round((self.shape(p + "pos_embed")[1] - 1) ** 0.5))
        layers = len({k[len(p + "blocks."):].split(".")[0] for k in self.key_file if k.startswith(p + "blocks.")})
        mlp_hidden = self.shape(p + "blocks.0.mlp.fc1.weight")[0]
        return {"image_size": side * patch, "patch_size": patch, "width": width, "layers": layers, "heads": heads,
                "mlp_hidden": mlp_hidden}

    def config_json(self) -> dict:
        """The folder's config.json (the HF repos' EmuConfig: LLaMA fields plus vision_config), or {}."""
        path = os.path.join(self.folder, "config.json") if os.path.isdir(self.folder) else None
        if path is None or not os.path.exists(path):
            return {}
        with open(path) as f:
            return json.load(f)

    def llm_config(self, config_json: dict = None) -> dict:
        """Emu2LLM arguments from the shapes, with heads/eps/positions from a LLaMA config.json when given (the
        official values, emu/conf/llama_config/config.json, otherwise)."""
        config_json = config_json or {}
        vocab, hidden = self.shape(self.lm_prefix + "model.embed_tokens.weight")
        layers = len({k[len(self.lm_prefix + "model.layers."):].split(".")[0]
                      for k in self.key_file if k.startswith(self.lm_prefix + "model.layers.")})
        intermediate = self.shape(self.lm_prefix + "model.layers.0.mlp.gate_proj.weight")[0]
        return {"vocab_size": vocab, "hidden_size": hidden, "num_layers": layers,
                "num_heads": config_json.get("num_attention_heads", 52), "intermediate_size": intermediate,
                "rms_norm_eps": config_json.get("rms_norm_eps", 1e-6),
                "max_position_embeddings": config_json.get("max_position_embeddings", 2048)}

    # ---- reading ----

    def shape(self, key: str) -> list:
        file = self.key_file[key]
        if file.endswith(".safetensors"):
            return list(self._header(file)[0][key]["shape"])
        return list(self._load_bin(file)[key].shape)

    def read(self, key: str) -> torch.Tensor:
        """One tensor in its stored dtype. One .bin shard is kept loaded between calls, so reading keys in shard
        order loads each shard once."""
        file = self.key_file[key]
        if file.endswith(".safetensors"):
            header, data_start = self._header(file)
            entry = header[key]
            start, end = entry["data_offsets"]
            with open(file, "rb") as f:
                f.seek(data_start + start)
                raw = bytearray(f.read(end - start))
            dtype = _SAFETENSORS_DTYPES[entry["dtype"]]
            if not raw:
                return torch.empty(entry["shape"], dtype=dtype)
            return torch.frombuffer(raw, dtype=dtype).reshape(entry["shape"])
        return self._load_bin(file)[key]

    def _header(self, file: str):
        if file not in self._safetensors_headers:
            with open(file, "rb") as f:
                (length,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(length))
            header.pop("__metadata__", None)
            self._safetensors_headers[file] = (header, 8 + length)
        return self._safetensors_headers[file]

    def _load_bin(self, file: str) -> dict:
        # One .bin shard at a time: the previous one is dropped before the next is loaded.
        cached_file, cached = self._bin_cache
        if cached_file != file:
            self._bin_cache = (None, None)
            self._bin_cache = (file, torch.load(file, map_location="cpu"))
        return self._bin_cache[1]

    def release(self) -> None:
        self._bin_cache = (None, None)


def _model_folder(path: str) -> str:
    if os.path.isdir(os.path.join(path, "multimodal_encoder")):  # the Emu2-Gen HF repo root
        return os.path.join(path, "multimodal_encoder")
    return path


def _weight_files(path: str) -> dict:
    """{file: keys or None (keys to be read from the file)} for a checkpoint folder or file."""
    if os.path.isfile(path):
        return {path: None}
    indexes = sorted(glob.glob(os.path.join(path, "*.index.json")) + glob.glob(os.path.join(path, "*.index.*.json")))
    # Prefer safetensors (tensor-by-tensor reads) when a folder holds both formats.
    indexes.sort(key=lambda p: 0 if "safetensors" in os.path.basename(p) else 1)
    if indexes:
        with open(indexes[0]) as f:
            weight_map = json.load(f)["weight_map"]
        files: dict = {}
        for key, shard in weight_map.items():
            files.setdefault(os.path.join(path, shard), []).append(key)
        missing = [f for f in files if not os.path.exists(f)]
        if missing:
            raise FileNotFoundError(f"{indexes[0]} names shards that are not there: {missing[:3]}")
        return files
    singles = sorted(glob.glob(os.path.join(path, "*.safetensors"))) or sorted(glob.glob(os.path.join(path, "*.bin")))
    if not singles:
        raise FileNotFoundError(f"{path}: no *.index.json, *.safetensors or *.bin weights")
    return {f: None for f in singles}
