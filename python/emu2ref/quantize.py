"""Block-wise weight quantization for ONNX Runtime's com.microsoft::MatMulNBits (the packing rules are written down in
docs/package-format.md, "Quantized packages").

A Linear weight W [N, K] (out, in features: torch's layout, which is MatMulNBits' layout too) is cut along K into
blocks of `block_size` values; each block b of row n gets a scale s and a zero point z (an integer), and each value
w becomes q = clip(round(w / s) + z, 0, 2^bits - 1). MatMulNBits computes A @ ((q - z) * s)^T.

- asymmetric (the default, as ONNX Runtime's own quantizer): the block's range [min(0, w), max(0, w)] is mapped onto
  [0, 2^bits - 1]: s = (max - min) / (2^bits - 1), z = round(-min / s). Zero stays exactly representable.
- symmetric: z is MatMulNBits' default 2^(bits-1) (8 for int4, 128 for int8) and is not stored;
  s = max|w| / (2^(bits-1) - 1), so q spans [1, 2^bits - 1].
- scale search (optional): instead of the full range, each block tries the range shrunk by SEARCH_RATIOS (clipping
  its largest values), rounds with that scale, refits the scale to the rounded values by least squares
  (s = sum(w (q - z)) / sum((q - z)^2)), and keeps the candidate with the smallest squared error: the search common
  int4 quantizers do (llama.cpp's k-quants, ONNX Runtime's k_quant), without calibration data.
- int8 layers (optional): the named Linear layers (v_proj, down_proj, ...) of a graph quantized at 4 bits are stored at
  8 bits, as llama.cpp's Q4_K_M keeps attn_v and ffn_down at more bits than the rest.

Packing: B is uint8 [N, K/block_size, block_size * bits / 8]; with 4 bits, value 2i of a block goes to the low nibble
of byte i and value 2i+1 to the high nibble. Scales are [N * K/block_size] (row-major [N, K/block_size]) in the
activation type. Zero points are uint8 [N, ceil(K/block_size * bits / 8)], packed like B (two per byte for int4,
low nibble first, each row starting on a new byte).
"""
import argparse
from dataclasses import dataclass

import numpy as np
from onnx import helper

MS_DOMAIN = "com.microsoft"
BITS = {"int8": 8, "int4": 4}
# MatMulNBits takes any power of two from 16 up; 16 suits narrow layers (fewer values share one scale).
BLOCK_SIZES = (16, 32, 64, 128)
# Range shrink factors the scale search tries (1 = the block's full range).
SEARCH_RATIOS = np.linspace(1.0, 0.5, 26)
# The decoder's Linear layers, by their module name (llama.py), that --int8-layers may name, and the heads (each its
# own graph), which it may name too.
DECODER_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
HEADS = ("lm_head", "project_up", "project_down")


@dataclass(frozen=True)
class Quantization:
    bits: int
    block_size: int = 32
    symmetric: bool = False
    # MatMulNBits' accuracy_level: 0 computes with A as given; 4 lets ONNX Runtime quantize A to int8 per block
    # (faster on the CPU, one more rounding).
    accuracy_level: int = 0
    scale_search: bool = False
    # Linear layers (by module name) stored at 8 bits when bits is 4.
    int8_layers: tuple = ()

    def __post_init__(self):
        if self.bits not in BITS.values():
            raise ValueError(f"bits {self.bits}: expected 8 or 4")
        if self.block_size not in BLOCK_SIZES:
            raise ValueError(f"block size {self.block_size}: expected one of {', '.join(map(str, BLOCK_SIZES))}")
        if self.accuracy_level not in (0, 1, 2, 3, 4):
            raise ValueError(f"accuracy level {self.accuracy_level}: expected 0 to 4")
        unknown = [name for name in self.int8_layers if name not in DECODER_LINEARS]
        if unknown:
            raise ValueError(f"int8 layer {unknown[0]}: expected some of {', '.join(DECODER_LINEARS)}")

    def for_layer(self, name: str) -> "Quantization":
        """The quantization of one weight, named by its parameter or module name (...layers.0.self_attn.v_proj.weight)."""
        parts = name.split(".")
        leaf = parts[-2] if parts[-1] in ("weight", "bias") else parts[-1]
        if self.bits == 8 or leaf not in self.int8_layers:
            return self
        return Quantization(8, self.block_size, self.symmetric, self.accuracy_level, self.scale_search)

    def manifest_entry(self) -> dict:
        return {"method": "matmul_nbits", "bits": self.bits, "block_size": self.block_size,
                "symmetric": self.symmetric, "accuracy_level": self.accuracy_level,
                "scale_search": self.scale_search, "int8_layers": list(self.int8_layers)}


def check_width(q: Quantization, k: int, what: str) -> None:
    if k % q.block_size:
        raise ValueError(f"block size {q.block_size} does not divide the input width {k} of {what}")


# Rows quantized at a time: the float32 temporaries stay near 16 MB whatever the weight's size.
ROWS_PER_CHUNK = 512


def quantize(w: np.ndarray, q: Quantization, scale_dtype=np.float32):
    """W [N, K] -> (packed uint8 [N, K/bs, bs*bits/8], scales [N*K/bs] in scale_dtype, zero points uint8 or None).
    The values are rounded with scales as stored (scale_dtype), and the scales returned are the ones stored (refitted
    ones too, with --scale-search), so dequantize() gives exactly what ONNX Runtime computes with."""
    n, k = w.shape
    check_width(q, k, f"a [{n}, {k}] weight")
    blocks = k // q.block_size
    packed = np.empty((n, blocks, q.block_size * q.bits // 8), np.uint8)
    scales = np.empty((n, blocks), scale_dtype)
    zero_points = None if q.symmetric else np.empty((n, (blocks * q.bits + 7) // 8), np.uint8)
    for start in range(0, n, ROWS_PER_CHUNK):
        rows = slice(start, min(n, start + ROWS_PER_CHUNK))
        chunk = _quantize_rows(w[rows], q, scale_dtype)
        packed[rows], scales[rows] = chunk[0], chunk[1]
        if zero_points is not None:
            zero_points[rows] = chunk[2]
    return packed, scales.reshape(-1), zero_points


def _quantize_rows(w: np.ndarray, q: Quantization, scale_dtype):
    n, k = w.shape
    blocks = w.astype(np.float32).reshape(n, k // q.block_size, q.block_size)
    best = None
    for ratio in (SEARCH_RATIOS if q.scale_search else (1.0,)):
        scales, zero = _range_scales(blocks, q, ratio, scale_dtype)
        values = _round(blocks, scales, zero, q)
        if q.scale_search:
            scales = _refit(blocks, scales, values - zero[:, :, None], scale_dtype)
        error = ((values - zero[:, :, None]) * scales.astype(np.float32)[:, :, None] - blocks) ** 2
        candidate = (error.sum(axis=2), scales, zero, values)
        best = candidate if best is None else _better(best, candidate)
    _, scales, zero, values = best
    zero_points = None if q.symmetric else pack(zero.astype(np.uint8), q.bits)
    return pack(values.astype(np.uint8), q.bits), scales, zero_points


def _range_scales(blocks, q: Quantization, ratio: float, scale_dtype):
    """Scales and zero points [N, blocks] that map the block's range, shrunk by ratio, onto the integer range."""
    top = (1 << q.bits) - 1
    if q.symmetric:
        zero = np.full(blocks.shape[:2], 1 << (q.bits - 1), dtype=np.float32)
        scales = (np.abs(blocks).max(axis=2) * ratio / ((1 << (q.bits - 1)) - 1)).astype(scale_dtype)
        return scales, zero
    low = np.minimum(blocks.min(axis=2), 0.0) * ratio
    high = np.maximum(blocks.max(axis=2), 0.0) * ratio
    scales = ((high - low) / top).astype(scale_dtype)
    wide = scales.astype(np.float32)
    zero = np.clip(np.round(np.divide(-low, wide, out=np.zeros_like(low), where=wide > 0)), 0, top)
    return scales, zero


def _round(blocks, scales, zero, q: Quantization):
    """q = clip(round(w / s) + z, 0, 2^bits - 1) as float32, with the scales as stored."""
    wide = scales.astype(np.float32)[:, :, None]
    # An all-zero block has scale 0: every value is its zero point.
    steps = np.divide(blocks, wide, out=np.zeros_like(blocks), where=wide > 0)
    return np.clip(np.round(steps) + zero[:, :, None], 0, (1 << q.bits) - 1)


def _refit(blocks, scales, centred, scale_dtype):
    """The least-squares scale for fixed integers (q - z): sum(w (q - z)) / sum((q - z)^2), where that sum is > 0."""
    norm = (centred * centred).sum(axis=2)
    fitted = np.divide((blocks * centred).sum(axis=2), norm, out=scales.astype(np.float32), where=norm > 0)
    return fitted.astype(scale_dtype)


def _better(best, candidate):
    """Per block, the candidate (error, scales, zero, values) with the smaller error; ties keep the earlier one."""
    take = candidate[0] < best[0]
    return tuple(np.where(take[:, :, None] if a.ndim == 3 else take, b, a) for a, b in zip(best, candidate))


def pack(values: np.ndarray, bits: int) -> np.ndarray:
    """uint8 values [..., M] -> bytes [..., M*bits/8] (4 bits: low nibble first; an odd M gets a zero high nibble)."""
    if bits == 8:
        return values
    if values.shape[-1] % 2:
        values = np.concatenate([values, np.zeros(values.shape[:-1] + (1,), np.uint8)], axis=-1)
    return (values[..., 0::2] | (values[..., 1::2] << 4)).astype(np.uint8)


def unpack(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    if bits == 8:
        return packed[..., :count]
    both = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(packed.shape[:-1] + (-1,))
    return both[..., :count]


def dequantize(packed, scales, zero_points, q: Quantization, k: int) -> np.ndarray:
    """The weight [N, K] that MatMulNBits multiplies by: (q - z) * s."""
    n, blocks = packed.shape[0], k // q.block_size
    values = unpack(packed, q.bits, q.block_size).astype(np.float32)
    if zero_points is None:
        zero = np.full((n, blocks), 1 << (q.bits - 1), np.float32)
    else:
        zero = unpack(zero_points, q.bits, blocks).astype(np.float32)
    wide = scales.astype(np.float32).reshape(n, blocks, 1)
    return ((values - zero[:, :, None]) * wide).reshape(n, k)


def matmul_nbits_node(a: str, weight: str, output: str, n: int, k: int, q: Quantization, has_zero_points: bool,
                      name: str):
    inputs = [a, f"{weight}.quant", f"{weight}.scales"] + ([f"{weight}.zero_points"] if has_zero_points else [])
    return helper.make_node("MatMulNBits", inputs, [output], name=name, domain=MS_DOMAIN, K=k, N=n, bits=q.bits,
                            block_size=q.block_size, accuracy_level=q.accuracy_level)


# ---- command-line flags shared by python/export_package.py and python/emu2ref/export_llm.py ----

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quantize", choices=sorted(BITS), help="store the LLM decoder's linear layers as int8 or "
                        "int4 MatMulNBits weights (embed_tokens stays float)")
    parser.add_argument("--block-size", type=int, default=32, choices=BLOCK_SIZES,
                        help="weights per quantization block along the input width (default 32)")
    parser.add_argument("--scale-search", action="store_true",
                        help="per block, search the scale that minimizes the squared error instead of the full range")
    parser.add_argument("--int8-layers", type=_layer_list, default=(),
                        help=f"with --quantize int4, keep these layers at int8 (some of {','.join(DECODER_LINEARS + HEADS)}; "
                             "e.g. v_proj,down_proj; a head only with --quantize-heads)")
    parser.add_argument("--symmetric", action="store_true", help="no zero points (MatMulNBits' default zero point)")
    parser.add_argument("--accuracy-level", type=int, default=0, choices=range(5),
                        help="MatMulNBits accuracy_level: 0 as given, 4 lets the CPU quantize activations to int8")
    parser.add_argument("--quantize-heads", action="store_true",
                        help="also quantize lm_head, project_up and project_down")
    parser.add_argument("--quantize-vision", action="store_true",
                        help="store the visual encoder's linear layers as int8")


def _layer_list(text: str) -> tuple:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in DECODER_LINEARS + HEADS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{unknown[0] if unknown else repr(text)}: expected layers among "
                                         f"{','.join(DECODER_LINEARS + HEADS)}")
    return names


def plan_from_args(args) -> dict:
    """graph name -> Quantization for the graphs the flags select ({} when --quantize is not given)."""
    if args.quantize is None:
        if args.quantize_heads or args.quantize_vision or args.scale_search or args.int8_layers:
            raise ValueError("--quantize-heads, --quantize-vision, --scale-search and --int8-layers need "
                             "--quantize int8|int4")
        return {}
    if args.int8_layers and args.quantize != "int4":
        raise ValueError("--int8-layers keeps layers of an int4 package at int8: it needs --quantize int4")
    heads_at_int8 = [n for n in args.int8_layers if n in HEADS]
    if heads_at_int8 and not args.quantize_heads:
        raise ValueError(f"--int8-layers {heads_at_int8[0]}: the heads stay float without --quantize-heads")
    bits = BITS[args.quantize]
    llm = Quantization(bits, args.block_size, args.symmetric, args.accuracy_level, args.scale_search,
                       tuple(n for n in args.int8_layers if n in DECODER_LINEARS))
    plan = {"decoder": llm}
    if args.quantize_heads:
        for head in HEADS:
            plan[head] = Quantization(8 if head in heads_at_int8 else bits, args.block_size, args.symmetric,
                                      args.accuracy_level, args.scale_search)
    if args.quantize_vision:
        plan["visual_encoder"] = Quantization(8, args.block_size, args.symmetric, args.accuracy_level,
                                              args.scale_search)
    return plan


def round_trip_linear_weights(module, q: Quantization) -> None:
    """Replaces the weight of every torch Linear inside module by dequantize(quantize(weight)) in place: the float
    model that a package quantized with q computes (the reference its quantized graphs are checked against)."""
    import torch
    from torch import nn

    for name, layer in [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear)]:
        w = layer.weight.detach().float().numpy()
        layer_q = q.for_layer(name)
        packed, scales, zero_points = quantize(w, layer_q)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(dequantize(packed, scales, zero_points, layer_q, w.shape[1])))
