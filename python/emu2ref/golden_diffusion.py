"""The Emu2-Gen image pipeline in PyTorch (pipeline_emu2_gen.py semantics) and the goldens the TypeScript diffusion
runtime must match (fixtures/golden/<package>/diffusion/).

Pipeline: prompt embeddings [cond; uncond] (batch order cond first), text_embeds = their mean over the Q tokens,
time_ids = the manifest's six numbers per row, latents = seeded noise x init_noise_sigma, per step one UNet call on
the doubled batch, noise = uncond + s (cond - uncond), an Euler step; then the VAE decodes latents / scaling_factor
and the image is (x / 2 + 0.5) clamped to [0, 1]. Guidance applies only when s > 1, as in the official pipeline.
Autoencoding is the same loop with image features as cond and the features of an all-zero normalized image as
uncond.
"""
import numpy as np
import torch

from .golden import GoldenWriter
from .noise import SplitMix64, initial_noise
from .scheduler import EulerDiscreteScheduler

SHORT_RUN_STEPS = 4
SHORT_RUN_GUIDANCE = 3.0


def generate(unet, vae, section: dict, cond: torch.Tensor, uncond: torch.Tensor, steps: int, guidance_scale: float,
             seed: int, trace: dict = None) -> dict:
    """cond, uncond [B,Q,W] -> {"initial_latents", "latents" (final), "image" [B,3,H,W] in 0..1}. `trace`, when
    given, receives the first UNet call's inputs and output and the latents after every step."""
    scheduler = EulerDiscreteScheduler.from_section(section["scheduler"])
    scheduler.set_timesteps(steps)
    guided = guidance_scale > 1.0
    batch = cond.shape[0]
    embeds = torch.cat([cond, uncond]) if guided else cond
    text_embeds = embeds.mean(dim=1)
    time_ids = torch.tensor([section["time_ids"]], dtype=torch.float32).repeat(embeds.shape[0], 1)
    side = section["latent_size"]
    noise = torch.from_numpy(initial_noise(seed, (batch, section["latent_channels"], side, side)))
    latents = noise * scheduler.init_noise_sigma
    result = {"initial_latents": latents}
    step_latents = []
    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            model_input = torch.cat([latents] * 2) if guided else latents
            model_input = scheduler.scale_model_input(model_input, i)
            timestep = t.expand(model_input.shape[0])
            noise_pred = unet(model_input, timestep, embeds, text_embeds, time_ids)
            if trace is not None and i == 0:
                trace.update(sample=model_input, timestep=timestep, encoder_hidden_states=embeds,
                             text_embeds=text_embeds, time_ids=time_ids, out_sample=noise_pred)
            if guided:
                noise_cond, noise_uncond = noise_pred.chunk(2)
                noise_pred = noise_uncond + guidance_scale * (noise_cond - noise_uncond)
            latents = scheduler.step(noise_pred, i, latents)
            step_latents.append(latents)
        result["latents"] = latents
        result["image"] = decode(vae, section, latents)
    if trace is not None:
        trace["step_latents"] = torch.stack(step_latents)
    return result


def decode(vae, section: dict, latents: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        sample = vae(1 / section["scaling_factor"] * latents)
    return (sample / 2 + 0.5).clamp(0, 1)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """[3,H,W] in 0..1 -> [H,W,3] uint8 as the pipeline's numpy_to_pil rounds (half to even)."""
    return (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def write_diffusion_goldens(golden_dir: str, unet, vae, visual_decoder_section: dict, cond_embeds, uncond_embeds,
                            seed: int, image_features=None, null_image_features=None) -> None:
    """cond_embeds / uncond_embeds [1,Q,W]: the regressed visual embeddings of a prompt and of the empty prompt.
    image_features / null_image_features [1,Q,W] (optional): pooled encoder features of an image and of an all-zero
    normalized image, for the autoencoding run."""
    section = visual_decoder_section
    w = GoldenWriter(golden_dir)
    cond, uncond = _float_tensor(cond_embeds), _float_tensor(uncond_embeds)

    for steps in (section["num_inference_steps"], SHORT_RUN_STEPS):
        scheduler = EulerDiscreteScheduler.from_section(section["scheduler"])
        scheduler.set_timesteps(steps)
        w.add(f"scheduler.{steps}.sigmas", scheduler.sigmas)
        w.add(f"scheduler.{steps}.timesteps", scheduler.timesteps)
        w.add(f"scheduler.{steps}.init_noise_sigma", scheduler.init_noise_sigma.reshape(1))

    side = section["latent_size"]
    shape = (2, section["latent_channels"], side, side)
    w.add("noise.batch", initial_noise(seed, shape))
    rng = SplitMix64(seed)
    w.add("noise.splitmix64", np.array([rng.next() for _ in range(4)], dtype=np.uint64).view(np.int64))

    trace = {}
    run = generate(unet, vae, section, cond, uncond, SHORT_RUN_STEPS, SHORT_RUN_GUIDANCE, seed, trace)
    for name in ("sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids", "out_sample"):
        w.add(f"unet_step.{name}", trace[name])
    w.add("run.cond", cond)
    w.add("run.uncond", uncond)
    w.add("run.initial_latents", run["initial_latents"])
    w.add("run.step_latents", trace["step_latents"])
    w.add("run.latents", run["latents"])
    w.add("run.image", run["image"][0])
    w.add("run.pixels", to_uint8(run["image"][0]))

    meta = {"visual_decoder": section, "seed": seed, "steps": SHORT_RUN_STEPS, "guidance_scale": SHORT_RUN_GUIDANCE,
            "scheduler_steps": [section["num_inference_steps"], SHORT_RUN_STEPS]}
    if image_features is not None:
        features, null = _float_tensor(image_features), _float_tensor(null_image_features)
        auto = generate(unet, vae, section, features, null, SHORT_RUN_STEPS, SHORT_RUN_GUIDANCE, seed + 1)
        w.add("autoencode.features", features)
        w.add("autoencode.null_features", null)
        w.add("autoencode.latents", auto["latents"])
        meta["autoencode_seed"] = seed + 1
    w.meta = meta
    w.save()


def _float_tensor(value) -> torch.Tensor:
    """A numpy array or a torch tensor (possibly part of an autograd graph) as a detached float32 tensor."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float32)
    return torch.as_tensor(np.asarray(value), dtype=torch.float32)
