"""EVA-02-CLIP-E-plus visual encoder as Emu2 uses it (Emu2/emu/eva_vit.py, postnorm blocks, fused qkv with q and v
biases and a zero k bias, no final norm or head), at any size. Parameter names equal the official state-dict keys
under the `visual.` prefix."""
import math

import torch
import torch.nn.functional as F
from torch import nn


class PatchEmbed(nn.Module):
    def __init__(self, image_size: int, patch_size: int, width: int):
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (width // heads) ** -0.5
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.proj = nn.Linear(width, width)

    def forward(self, x):
        b, n, c = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = Mlp(width, mlp_hidden)

    def forward(self, x):
        # Post-norm: the norm is applied to each branch's output, not its input.
        x = x + self.norm1(self.attn(x))
        return x + self.norm2(self.mlp(x))


class EvaViT(nn.Module):
    def __init__(self, image_size: int, patch_size: int, width: int, layers: int, heads: int, mlp_hidden: int):
        super().__init__()
        self.image_size = image_size
        self.patch_embed = PatchEmbed(image_size, patch_size, width)
        patches = (image_size // patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, patches + 1, width))
        self.blocks = nn.ModuleList([Block(width, heads, mlp_hidden) for _ in range(layers)])

    def forward(self, pixel_values):
        x = self.patch_embed(pixel_values)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return x


def pool_visual_features(last_hidden_state, n_query: int):
    """Emu2's encode_image: drop CLS, view the patches as a grid, average-pool to n_query tokens (row-major)."""
    x = last_hidden_state[:, 1:, :]
    b, n, c = x.shape
    side = int(math.isqrt(n))
    x = x.permute(0, 2, 1).reshape(b, c, side, side)
    stride = side // int(math.isqrt(n_query))
    x = F.avg_pool2d(x, kernel_size=stride, stride=stride)
    return x.reshape(b, c, -1).permute(0, 2, 1).contiguous()
