"""SDXL-layout UNet2DConditionModel (diffusers semantics) at any size.

Module and parameter names equal the diffusers state-dict keys, so the official Emu2-Gen `unet/` weights load with
`load_state_dict(strict=True)`. Only what the SDXL layout uses is built: down blocks [DownBlock2D,
CrossAttnDownBlock2D, CrossAttnDownBlock2D], UNetMidBlock2DCrossAttn, up blocks [CrossAttnUpBlock2D,
CrossAttnUpBlock2D, UpBlock2D], linear projections in the transformers, GEGLU feed-forward, "text_time" additional
embedding. As in diffusers' config, `attention_head_dim` is the number of heads per block (the historical misnomer).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

DOWN_BLOCKS = ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
UP_BLOCKS = ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")

# The SDXL base / Emu2-Gen UNet; from_config fills missing keys with these.
SDXL_UNET_CONFIG = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [320, 640, 1280],
    "layers_per_block": 2,
    "transformer_layers_per_block": [1, 2, 10],
    "attention_head_dim": [5, 10, 20],
    "cross_attention_dim": 1792,
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 3328,
    "use_linear_projection": True,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
}


def timestep_embedding(timesteps: torch.Tensor, dim: int, flip_sin_to_cos: bool, shift: float) -> torch.Tensor:
    """diffusers get_timestep_embedding: sinusoids of `timesteps` [N] -> [N, dim] (max_period 10000, scale 1)."""
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32) / (half - shift)
    args = timesteps[:, None].float() * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


class TimestepEmbedding(nn.Module):
    def __init__(self, in_channels: int, time_embed_dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, time_embed_dim)
        self.linear_2 = nn.Linear(time_embed_dim, time_embed_dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    """Pre-norm residual block; `temb_channels` None (the VAE) drops the time projection."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels, groups: int, eps: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels) if temb_channels is not None else None
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps, affine=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x, temb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_emb_proj is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class Downsample2D(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Attention(nn.Module):
    """diffusers Attention with the default processor: no q/k/v bias, biased output projection (to_out.0)."""

    def __init__(self, query_dim: int, heads: int, dim_head: int, context_dim=None):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim), nn.Dropout(0.0)])

    def forward(self, x, context=None):
        context = x if context is None else context
        b, n, _ = x.shape
        q = self.to_q(x).view(b, n, self.heads, -1).transpose(1, 2)
        k = self.to_k(context).view(b, context.shape[1], self.heads, -1).transpose(1, 2)
        v = self.to_v(context).view(b, context.shape[1], self.heads, -1).transpose(1, 2)
        probs = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)
        out = torch.matmul(probs, v).transpose(1, 2).reshape(b, n, -1)
        return self.to_out[0](out)


class GEGLU(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x):
        hidden, gate = self.proj(x).chunk(2, dim=-1)
        return hidden * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim)])

    def forward(self, x):
        return self.net[2](self.net[0](x))


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn1 = Attention(dim, heads, dim_head)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.attn2 = Attention(dim, heads, dim_head, context_dim)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5)
        self.ff = FeedForward(dim)

    def forward(self, x, context):
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class Transformer2DModel(nn.Module):
    """Continuous-input transformer over the feature map; `use_linear_projection` picks Linear vs 1x1 conv proj."""

    def __init__(self, heads: int, channels: int, layers: int, context_dim: int, groups: int, linear: bool):
        super().__init__()
        self.linear = linear
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, channels) if linear else nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(channels, heads, channels // heads, context_dim) for _ in range(layers)])
        self.proj_out = nn.Linear(channels, channels) if linear else nn.Conv2d(channels, channels, 1)

    def forward(self, x, context):
        b, c, h, w = x.shape
        residual = x
        x = self.norm(x)
        if not self.linear:
            x = self.proj_in(x)
        x = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
        if self.linear:
            x = self.proj_in(x)
        for block in self.transformer_blocks:
            x = block(x, context)
        if self.linear:
            x = self.proj_out(x)
        x = x.reshape(b, h, w, c).permute(0, 3, 1, 2)
        if not self.linear:
            x = self.proj_out(x)
        return x + residual


class DownBlock(nn.Module):
    """DownBlock2D (no attentions) or CrossAttnDownBlock2D; returns the output and the skip states it adds."""

    def __init__(self, cin, cout, temb, layers, attn, downsample, groups, eps):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock2D(cin if i == 0 else cout, cout, temb, groups, eps) for i in range(layers)])
        self.attentions = _attentions(attn, cout, groups, layers)
        self.downsamplers = nn.ModuleList([Downsample2D(cout)]) if downsample else None

    def forward(self, x, temb, context):
        skips = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if self.attentions is not None:
                x = self.attentions[i](x, context)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


def _attentions(attn, channels: int, groups: int, layers: int):
    """The Transformer2DModel of each resnet of a CrossAttn block; None for a block without attention."""
    if attn is None:
        return None
    heads, depth, context_dim, linear = attn
    return nn.ModuleList([Transformer2DModel(heads, channels, depth, context_dim, groups, linear) for _ in range(layers)])


class UpBlock(nn.Module):
    """UpBlock2D or CrossAttnUpBlock2D: each resnet takes the running state concatenated with one skip state."""

    def __init__(self, cin, cout, prev, temb, layers, attn, upsample, groups, eps):
        super().__init__()
        resnets = []
        for i in range(layers):
            skip = cin if i == layers - 1 else cout
            resnets.append(ResnetBlock2D((prev if i == 0 else cout) + skip, cout, temb, groups, eps))
        self.resnets = nn.ModuleList(resnets)
        self.attentions = _attentions(attn, cout, groups, layers)
        self.upsamplers = nn.ModuleList([Upsample2D(cout)]) if upsample else None

    def forward(self, x, skips, temb, context):
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips.pop()], dim=1), temb)
            if self.attentions is not None:
                x = self.attentions[i](x, context)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class MidBlock(nn.Module):
    """UNetMidBlock2DCrossAttn: resnet, then (transformer, resnet) pairs."""

    def __init__(self, channels, temb, heads, depth, context_dim, groups, eps, linear):
        super().__init__()
        self.attentions = nn.ModuleList([Transformer2DModel(heads, channels, depth, context_dim, groups, linear)])
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, temb, groups, eps) for _ in range(2)])

    def forward(self, x, temb, context):
        x = self.resnets[0](x, temb)
        for attn, resnet in zip(self.attentions, self.resnets[1:]):
            x = resnet(attn(x, context), temb)
        return x


class UNet2DConditionModel(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        c = {**SDXL_UNET_CONFIG, **config}
        self.config = c
        channels = list(c["block_out_channels"])
        n = len(channels)
        if n != len(DOWN_BLOCKS):
            raise ValueError(f"the SDXL layout has {len(DOWN_BLOCKS)} blocks, block_out_channels has {n}")
        heads = _per_block(c["attention_head_dim"], n)
        depths = _per_block(c["transformer_layers_per_block"], n)
        groups, eps, ctx, linear = c["norm_num_groups"], c["norm_eps"], c["cross_attention_dim"], c["use_linear_projection"]
        time_dim = channels[0] * 4
        self.flip_sin_to_cos, self.freq_shift = c["flip_sin_to_cos"], c["freq_shift"]
        self.addition_time_embed_dim = c["addition_time_embed_dim"]
        expected = ctx + 6 * self.addition_time_embed_dim
        if c["projection_class_embeddings_input_dim"] != expected:
            raise ValueError(f"projection_class_embeddings_input_dim must be {expected} (text_embeds + 6 time ids)")

        self.conv_in = nn.Conv2d(c["in_channels"], channels[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(channels[0], time_dim)
        self.add_embedding = TimestepEmbedding(c["projection_class_embeddings_input_dim"], time_dim)

        self.down_blocks = nn.ModuleList()
        out = channels[0]
        for i, kind in enumerate(DOWN_BLOCKS):
            cin, out = out, channels[i]
            attn = (heads[i], depths[i], ctx, linear) if kind.startswith("CrossAttn") else None
            self.down_blocks.append(DownBlock(cin, out, time_dim, c["layers_per_block"], attn, i < n - 1, groups, eps))

        self.mid_block = MidBlock(channels[-1], time_dim, heads[-1], depths[-1], ctx, groups, eps, linear)

        self.up_blocks = nn.ModuleList()
        rev, rev_heads, rev_depths = channels[::-1], heads[::-1], depths[::-1]
        out = rev[0]
        for i, kind in enumerate(UP_BLOCKS):
            prev, out = out, rev[i]
            cin = rev[min(i + 1, n - 1)]
            attn = (rev_heads[i], rev_depths[i], ctx, linear) if kind.startswith("CrossAttn") else None
            self.up_blocks.append(
                UpBlock(cin, out, prev, time_dim, c["layers_per_block"] + 1, attn, i < n - 1, groups, eps))

        self.conv_norm_out = nn.GroupNorm(groups, channels[0], eps=eps)
        self.conv_out = nn.Conv2d(channels[0], c["out_channels"], 3, padding=1)

    def forward(self, sample, timestep, encoder_hidden_states, text_embeds, time_ids):
        """sample [B,4,h,w], timestep [B] (float), encoder_hidden_states [B,Q,W], text_embeds [B,W], time_ids [B,6]
        -> predicted noise [B,4,h,w]."""
        b = sample.shape[0]
        t_emb = timestep_embedding(timestep.expand(b), self.conv_in.out_channels, self.flip_sin_to_cos, self.freq_shift)
        emb = self.time_embedding(t_emb.to(sample.dtype))
        time_embeds = timestep_embedding(time_ids.flatten(), self.addition_time_embed_dim, self.flip_sin_to_cos,
                                         self.freq_shift).reshape(b, -1)
        add_embeds = torch.cat([text_embeds, time_embeds.to(text_embeds.dtype)], dim=-1).to(emb.dtype)
        emb = emb + self.add_embedding(add_embeds)

        x = self.conv_in(sample)
        skips = [x]
        for block in self.down_blocks:
            x, block_skips = block(x, emb, encoder_hidden_states)
            skips.extend(block_skips)
        x = self.mid_block(x, emb, encoder_hidden_states)
        for block in self.up_blocks:
            x = block(x, skips, emb, encoder_hidden_states)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


def _per_block(value, n: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n
