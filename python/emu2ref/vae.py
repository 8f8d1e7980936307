"""SDXL AutoencoderKL, decoder half only (diffusers semantics and state-dict keys `post_quant_conv.*`,
`decoder.*`): post_quant_conv, then Decoder = conv_in, UNetMidBlock2D (resnet, single-head self-attention, resnet),
UpDecoderBlock2D x len(block_out_channels) (nearest x2 upsampling after all but the last), GroupNorm, SiLU, conv_out.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .unet import ResnetBlock2D, Upsample2D

SDXL_VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "scaling_factor": 0.13025,
    "sample_size": 1024,
}

_EPS = 1e-6


class SpatialSelfAttention(nn.Module):
    """diffusers Attention as the VAE mid block builds it: GroupNorm first, one head over all channels, biased
    q/k/v/out projections, residual added."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=_EPS, affine=True)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])
        self.scale = channels ** -0.5

    def forward(self, x):
        b, c, h, w = x.shape
        hidden = self.group_norm(x).reshape(b, c, h * w).transpose(1, 2)
        q, k, v = self.to_q(hidden), self.to_k(hidden), self.to_v(hidden)
        probs = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)
        out = self.to_out[0](torch.matmul(probs, v))
        return out.transpose(1, 2).reshape(b, c, h, w) + x


class MidBlock(nn.Module):
    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.attentions = nn.ModuleList([SpatialSelfAttention(channels, groups)])
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, None, groups, _EPS) for _ in range(2)])

    def forward(self, x):
        x = self.resnets[0](x)
        return self.resnets[1](self.attentions[0](x))


class UpDecoderBlock(nn.Module):
    def __init__(self, cin: int, cout: int, layers: int, upsample: bool, groups: int):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock2D(cin if i == 0 else cout, cout, None, groups, _EPS) for i in range(layers)])
        self.upsamplers = nn.ModuleList([Upsample2D(cout)]) if upsample else None

    def forward(self, x):
        for resnet in self.resnets:
            x = resnet(x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class Decoder(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        channels, groups = list(c["block_out_channels"]), c["norm_num_groups"]
        rev = channels[::-1]
        self.conv_in = nn.Conv2d(c["latent_channels"], rev[0], 3, padding=1)
        self.mid_block = MidBlock(rev[0], groups)
        self.up_blocks = nn.ModuleList()
        out = rev[0]
        for i in range(len(rev)):
            prev, out = out, rev[i]
            self.up_blocks.append(UpDecoderBlock(prev, out, c["layers_per_block"] + 1, i < len(rev) - 1, groups))
        self.conv_norm_out = nn.GroupNorm(groups, channels[0], eps=_EPS)
        self.conv_out = nn.Conv2d(channels[0], c["out_channels"], 3, padding=1)

    def forward(self, z):
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class AutoencoderKLDecoder(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        c = {**SDXL_VAE_CONFIG, **config}
        self.config = c
        self.post_quant_conv = nn.Conv2d(c["latent_channels"], c["latent_channels"], 1)
        self.decoder = Decoder(c)

    @property
    def scale_factor(self) -> int:
        return 2 ** (len(self.config["block_out_channels"]) - 1)

    def forward(self, latent_sample):
        """latent_sample [B,4,h,w], already divided by scaling_factor -> sample [B,3,8h,8w] in about [-1,1]."""
        return self.decoder(self.post_quant_conv(latent_sample))
