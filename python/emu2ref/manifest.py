"""Manifests of emu2 packages (docs/package-format.md): the real Emu2 models' values (configs/models/*.yaml) and the
special-token table shared by the exporter, the tokenizer builder and configs/models/*.yaml."""
import yaml

from .preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

FORMAT = "emu2-package/1"

# Added after the 32000 LLaMA pieces, in this order (Emu2/emu/constants.py, emu/lm.py).
_BASE_ADDED = (
    ["[PAD]", "[IMG]", "[/IMG]", "<image>", "[gIMG]", "[/gIMG]", "[EOC]", "[VIDEO]",
     "<grounding>", "<phrase>", "</phrase>", "<object>", "</object>", "</delimiter_of_multi_objects/>", "<REC>"]
    + [f"<patch_index_{i:04d}>" for i in range(257)]
)
_CHAT_ADDED = ["[USER]", "[ASSISTANT]"]

SYSTEM_MESSAGE = "You are a helpful assistant, dedicated to delivering comprehensive and meticulous responses."
SHORT_SYSTEM_MESSAGE = "You are a helpful assistant, dedicated to provide concise and efficient answers."


def special_tokens(variant: str) -> dict:
    added = _BASE_ADDED + (_CHAT_ADDED if variant == "emu2-chat" else [])
    return {token: 32000 + i for i, token in enumerate(added)}


def tokenizer_section(variant: str) -> dict:
    tokens = special_tokens(variant)
    return {
        "file": "tokenizer.json",
        "vocab_size": 32000 + len(tokens),
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": tokens["[PAD]"],
        "add_bos": True,
        "special_tokens": tokens,
    }


def vision_section(image_size=448, patch_size=14, width=1792, layers=64, heads=16, n_query=64, video_n_query=64) -> dict:
    return {
        "file": "visual_encoder.onnx",
        "image_size": image_size,
        "patch_size": patch_size,
        "width": width,
        "layers": layers,
        "heads": heads,
        "mean": list(OPENAI_CLIP_MEAN),
        "std": list(OPENAI_CLIP_STD),
        "resample": "bicubic",
        "n_query": n_query,
        "video_n_query": video_n_query,
    }


def llm_section(hidden_size=6656, num_layers=60, num_heads=52, intermediate_size=17920, max_position_embeddings=2048,
                rms_norm_eps=1e-6) -> dict:
    return {
        "embed_tokens_file": "embed_tokens.onnx",
        "decoder_file": "decoder.onnx",
        "lm_head_file": "lm_head.onnx",
        "project_up_file": "project_up.onnx",
        "project_down_file": "project_down.onnx",
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "head_dim": hidden_size // num_heads,
        "intermediate_size": intermediate_size,
        "max_position_embeddings": max_position_embeddings,
        "rms_norm_eps": rms_norm_eps,
    }


def scheduler_section() -> dict:
    return {
        "type": "euler_discrete",
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "timestep_spacing": "leading",
        "steps_offset": 1,
        "prediction_type": "epsilon",
    }


def visual_decoder_section(latent_size=128, image_side=1024) -> dict:
    return {
        "unet_file": "unet.onnx",
        "vae_decoder_file": "vae_decoder.onnx",
        "latent_channels": 4,
        "latent_size": latent_size,
        "vae_scale_factor": 8,
        "scaling_factor": 0.13025,
        "time_ids": [image_side, image_side, 0, 0, image_side, image_side],
        "scheduler": scheduler_section(),
        "num_inference_steps": 50,
        "guidance_scale": 3.0,
    }


def prompt_section(template: str) -> dict:
    section = {"template": template, "image_placeholder": "[<IMG_PLH>]"}
    if template == "chat":
        section["system_message"] = SYSTEM_MESSAGE
        section["short_system_message"] = SHORT_SYSTEM_MESSAGE
    return section


def generation_section(chat: bool = False) -> dict:
    # Understanding defaults of emu/emu.py; the chat demo samples (temperature 0.7, top_k 3, top_p 0.9) with
    # length_penalty 2.0 over 5 beams and longer answers.
    if chat:
        return {"max_new_tokens": 512, "min_new_tokens": 1, "num_beams": 5, "length_penalty": 2.0,
                "repetition_penalty": 1.0, "do_sample": False, "temperature": 0.7, "top_k": 3, "top_p": 0.9}
    return {"max_new_tokens": 10, "min_new_tokens": 1, "num_beams": 5, "length_penalty": -1.0,
            "repetition_penalty": 1.0, "do_sample": False, "temperature": 1.0, "top_k": 0, "top_p": 1.0}


def quantization_section(plan: dict) -> dict:
    """graph name -> quantize.Quantization, as the manifest's `quantization` section (docs/package-format.md)."""
    return {graph: q.manifest_entry() for graph, q in plan.items()}


TEMPLATES = {"emu2": "base", "emu2-chat": "chat", "emu2-gen": "gen"}


def real_manifest(variant: str, dtype: str = "float16") -> dict:
    chat = variant == "emu2-chat"
    manifest = {
        "format": FORMAT,
        "name": {"emu2": "Emu2", "emu2-chat": "Emu2-Chat", "emu2-gen": "Emu2-Gen"}[variant],
        "description": {
            "emu2": "Emu2 37B pretrained: interleaved image-text understanding, few-shot in-context learning",
            "emu2-chat": "Emu2-Chat: instruction-tuned for multimodal chat and grounding",
            "emu2-gen": "Emu2-Gen: image generation from interleaved image-text prompts (SDXL-layout visual decoder)",
        }[variant],
        "variant": variant,
        "dtype": dtype,
        "tokenizer": tokenizer_section(variant),
        "vision": vision_section(n_query=256 if chat else 64),
        "llm": llm_section(),
        "prompt": prompt_section(TEMPLATES[variant]),
        "generation": generation_section(chat),
    }
    if variant == "emu2-gen":
        manifest["visual_decoder"] = visual_decoder_section()
    return manifest


def dump_manifest(manifest: dict, path: str) -> None:
    with open(path, "w") as f:
        f.write(f"# emu2 model package manifest ({FORMAT}); fields are described in docs/package-format.md\n")
        yaml.safe_dump(manifest, f, sort_keys=False, allow_unicode=True, width=120)


if __name__ == "__main__":
    import os
    import sys

    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "configs", "models")
    os.makedirs(out, exist_ok=True)
    for variant in TEMPLATES:
        dump_manifest(real_manifest(variant), os.path.join(out, f"{variant}.yaml"))
