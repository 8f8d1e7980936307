"""emu2-toy's visual decoder (Emu2-Gen's, at toy size): a UNet that denoises VAE latents conditioned on the toy
encoder's n_query visual embeddings, and the VAE decoder that turns latents into 64x64 images.

The exported graphs are the project's own modules (python/emu2ref/unet.py, vae.py) in the SDXL layout, so the
runtime's diffusion pipeline (src/diffusion/pipeline.ts) runs them unchanged. The VAE encoder below exists only to
train the decoder and to make the UNet's training latents; it is not exported.

Training (python/train_toy_decoder.py) has two stages:
  1. VAE: image -> posterior (mean, log-variance) over a 16x16x4 latent -> sample -> image; pixel MSE with the
     shapes' pixels weighted up (they are a tenth of the image; unweighted, a short run learns the background first:
     measured, grey blobs) plus a small KL term (the SD recipe keeps latents near a unit Gaussian).
     Afterwards scaling_factor = 1 / std of the latents.
  2. UNet: diffusers' DDPM epsilon objective on scaled latents under the scaled_linear betas the runtime's Euler
     scheduler uses, conditioned as the runtime conditions it: encoder_hidden_states = the visual embeddings,
     text_embeds = their mean over the queries, time_ids = the manifest's six numbers. A fraction of the rows gets
     a null condition instead, so classifier-free guidance has an unconditional branch to push away from.
"""
import hashlib

import torch
import torch.nn.functional as F
from torch import nn

from emu2ref.unet import Downsample2D, ResnetBlock2D, UNet2DConditionModel
from emu2ref.vae import AutoencoderKLDecoder

FORMAT = "emu2-toy-decoder/1"

IMAGE_SIZE = 64
# Three VAE blocks: two x2 upsamplings, so 64x64 images have 16x16x4 latents (the SD compression of 48x, one
# downsampling fewer than SD). The world's shapes are 14 to 20 pixels wide: at 8x8 latents each spans two or three
# latent pixels and short CPU runs rebuilt blobs (measured: 8x8x4 after 600 steps and 8x8x16 after 400 steps, shape
# read right on 33% and 24% of held-out scenes); at 16x16 each spans four or five.
LATENT_CHANNELS = 4
VAE = {"block_out_channels": [8, 16, 32], "layers_per_block": 1, "norm_num_groups": 8,
       "latent_channels": LATENT_CHANNELS, "sample_size": IMAGE_SIZE}
LATENT_SIZE = IMAGE_SIZE // 2 ** (len(VAE["block_out_channels"]) - 1)
# Cross-attention at the 8x8 and 4x4 levels; the visual embeddings are the toy encoder's pooled features (width 64).
UNET = {"sample_size": LATENT_SIZE, "in_channels": LATENT_CHANNELS, "out_channels": LATENT_CHANNELS,
        "block_out_channels": [32, 32, 64], "layers_per_block": 1, "transformer_layers_per_block": [1, 1, 1],
        "attention_head_dim": [2, 2, 4], "cross_attention_dim": 64, "norm_num_groups": 8,
        "addition_time_embed_dim": 8, "projection_class_embeddings_input_dim": 64 + 6 * 8}
KL_WEIGHT = 1e-4
OBJECT_WEIGHT = 10.0
NUM_INFERENCE_STEPS = 25
GUIDANCE_SCALE = 3.0


class VaeEncoder(nn.Module):
    """The decoder's mirror (conv_in, resnets with x2 downsampling between blocks, a mid resnet, GroupNorm, SiLU,
    conv_out) -> mean and log-variance of the latent posterior [B, latent_channels, h, w] each."""

    def __init__(self, config: dict):
        super().__init__()
        channels, groups, layers = config["block_out_channels"], config["norm_num_groups"], config["layers_per_block"]
        self.conv_in = nn.Conv2d(3, channels[0], 3, padding=1)
        blocks, cin = [], channels[0]
        for i, cout in enumerate(channels):
            for _ in range(layers):
                blocks.append(ResnetBlock2D(cin, cout, None, groups, 1e-6))
                cin = cout
            if i < len(channels) - 1:
                blocks.append(Downsample2D(cout))
        self.blocks = nn.Sequential(*blocks)
        self.mid = ResnetBlock2D(cin, cin, None, groups, 1e-6)
        self.norm_out = nn.GroupNorm(groups, cin, eps=1e-6)
        self.conv_out = nn.Conv2d(cin, 2 * config["latent_channels"], 3, padding=1)

    def forward(self, images):
        x = self.mid(self.blocks(self.conv_in(images)))
        mean, logvar = self.conv_out(F.silu(self.norm_out(x))).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)


def build(seed: int):
    """Seeded (PyTorch default init) VAE encoder, VAE decoder and UNet of the toy sizes."""
    torch.manual_seed(seed)
    encoder = VaeEncoder(VAE)
    vae = AutoencoderKLDecoder(VAE)
    unet = UNet2DConditionModel(UNET)
    return encoder, vae, unet


def images_to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B,H,W,3] -> float [B,3,H,W] in [-1, 1], the range the VAE decoder's output is read in."""
    return images.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def vae_loss(encoder, vae, images: torch.Tensor, generator: torch.Generator) -> dict:
    """images in [-1, 1] -> {"reconstruction": pixel MSE, object pixels weighted OBJECT_WEIGHT x, "kl": KL to N(0, I)
    per latent element}."""
    mean, logvar = encoder(images)
    latents = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator)
    weight = 1.0 + (OBJECT_WEIGHT - 1.0) * object_pixels(images)
    reconstruction = (weight * (vae(latents) - images) ** 2).mean()
    kl = 0.5 * (mean ** 2 + logvar.exp() - 1.0 - logvar).mean()
    return {"reconstruction": reconstruction, "kl": kl}


def object_pixels(images: torch.Tensor) -> torch.Tensor:
    """[B,3,H,W] in [-1, 1] -> [B,1,H,W] 1.0 where the pixel is saturated (a shape: the background is grey)."""
    spread = images.max(dim=1, keepdim=True).values - images.min(dim=1, keepdim=True).values
    return (spread > 0.3).float()


def alphas_cumprod(section: dict) -> torch.Tensor:
    """The training noise schedule of the manifest's scheduler section (scaled_linear betas, as the Euler scheduler
    of python/emu2ref/scheduler.py derives its sigmas from)."""
    n = section["num_train_timesteps"]
    betas = torch.linspace(section["beta_start"] ** 0.5, section["beta_end"] ** 0.5, n, dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def time_ids(batch: int) -> torch.Tensor:
    side = float(IMAGE_SIZE)
    return torch.tensor([[side, side, 0.0, 0.0, side, side]]).repeat(batch, 1)


def unet_loss(unet, latents: torch.Tensor, cond: torch.Tensor, acp: torch.Tensor, generator: torch.Generator):
    """diffusers' epsilon objective: x_t = sqrt(acp_t) x_0 + sqrt(1 - acp_t) eps at a uniform timestep t, MSE of the
    predicted eps. The VP x_t equals the Euler scheduler's scale_model_input(x_0 + sigma_t eps), so the runtime's
    sampler sees inputs of the training distribution."""
    b = latents.shape[0]
    t = torch.randint(0, acp.shape[0], (b,), generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    predicted = unet(noisy_latents(latents, noise, t, acp), t.float(), cond, cond.mean(dim=1), time_ids(b))
    return F.mse_loss(predicted, noise)


def noisy_latents(latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, acp: torch.Tensor) -> torch.Tensor:
    """diffusers' add_noise: sqrt(acp_t) x_0 + sqrt(1 - acp_t) eps, per row's timestep t."""
    a = acp[t].view(-1, *([1] * (latents.dim() - 1)))
    return a.sqrt() * latents + (1 - a).sqrt() * noise


def encoder_digest(vision) -> str:
    """sha256 over the visual encoder's parameters (names in order, float32 little-endian bytes): the same for the
    state in a toy checkpoint, a bare state_dict and the weights a package is exported from."""
    h = hashlib.sha256()
    for name, value in sorted(vision.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes())
    return h.hexdigest()


def load_checkpoint(path: str):
    """A decoder checkpoint (python/train_toy_decoder.py) -> (unet, vae, state), float32, eval mode."""
    state = torch.load(path)
    if state.get("format") != FORMAT:
        raise ValueError(f"{path}: format {state.get('format')!r}, expected {FORMAT}")
    unet = UNet2DConditionModel(state["unet_config"])
    unet.load_state_dict({k: v.float() for k, v in state["unet"].items()})
    vae = AutoencoderKLDecoder(state["vae_config"])
    vae.load_state_dict({k: v.float() for k, v in state["vae"].items()})
    return unet.eval(), vae.eval(), state
