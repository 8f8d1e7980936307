"""The EVA-02-CLIP-E-plus vision transformer of Emu2 at any size, and the visual-token pooling.

Structure and parameter names follow the official Emu2/emu/eva_vit.py as Emu2 instantiates it (emu/emu.py with
emu/conf/emu_conf.py CLIPVisionCfg): qkv_bias=True, postnorm=True, rope=False, subln=False, naiveswiglu=False,
init_values=None, no relative position bias, LayerNorm eps 1e-6, no final norm and no head. So:

- attention uses one fused `qkv` Linear without bias, plus separate `q_bias` and `v_bias`; the key bias is zero;
- blocks are post-norm: x = x + norm1(attn(x)); x = x + norm2(mlp(x)) (the norm is applied to the branch output);
- the MLP is fc1 -> exact GELU -> fc2 (subln=False, so no ffn_ln; no inner_attn_ln);
- state-dict keys equal the official ones under the `visual.` prefix: patch_embed.proj.{weight,bias}, cls_token,
  pos_embed, blocks.N.{norm1,norm2}.{weight,bias}, blocks.N.attn.{qkv.weight,q_bias,v_bias,proj.weight,proj.bias},
  blocks.N.mlp.{fc1,fc2}.{weight,bias}.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

LAYER_NORM_EPS = 1e-6


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, device=None):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.heads = heads
        self.head_dim = width // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(width, 3 * width, bias=False, device=device)
        self.q_bias = nn.Parameter(torch.zeros(width, device=device))
        self.v_bias = nn.Parameter(torch.zeros(width, device=device))
        self.proj = nn.Linear(width, width, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        # The official code scales q before the product (not the scores): the same up to rounding, kept for parity.
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int, device=None):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden, device=device)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_hidden: int, device=None):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=LAYER_NORM_EPS, device=device)
        self.attn = Attention(width, heads, device)
        self.norm2 = nn.LayerNorm(width, eps=LAYER_NORM_EPS, device=device)
        self.mlp = Mlp(width, mlp_hidden, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.norm1(self.attn(x))
        return x + self.norm2(self.mlp(x))


class PatchEmbed(nn.Module):
    def __init__(self, image_size: int, patch_size: int, width: int, device=None):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.num_patches = (image_size // patch_size) ** 2
        self.proj = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class EvaViT(nn.Module):
    """forward(pixel_values [B,3,S,S]) -> last_hidden_state [B,1+N,W]: CLS first, after the last block, no norm."""

    def __init__(self, image_size: int, patch_size: int, width: int, layers: int, heads: int, mlp_hidden: int,
                 device=None):
        """device="meta" builds the structure without allocating weights (the streaming export of the real model)."""
        super().__init__()
        self.image_size = image_size
        self.patch_embed = PatchEmbed(image_size, patch_size, width, device)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width, device=device))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, width, device=device))
        self.blocks = nn.ModuleList(Block(width, heads, mlp_hidden, device) for _ in range(layers))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixel_values)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return x


def pool_visual_features(last_hidden_state: torch.Tensor, n_query: int) -> torch.Tensor:
    """Emu2's encode_image pooling: drop CLS, view the N patches as a sqrt(N) x sqrt(N) grid, average-pool with
    kernel = stride = sqrt(N)/sqrt(n_query), flatten row-major -> [B, n_query, W]."""
    patches = last_hidden_state[:, 1:, :]
    b, n, c = patches.shape
    side = math.isqrt(n)
    query_side = math.isqrt(n_query)
    if side * side != n or query_side * query_side != n_query or side % query_side:
        raise ValueError(f"cannot pool {n} patches to {n_query} visual tokens")
    grid = patches.permute(0, 2, 1).reshape(b, c, side, side)
    stride = side // query_side
    pooled = F.avg_pool2d(grid, kernel_size=stride, stride=stride)
    return pooled.reshape(b, c, -1).permute(0, 2, 1).contiguous()
