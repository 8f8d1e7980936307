"""The LLaMA decoder of Emu2 with its regression heads (transformers 4.31 LlamaForCausalLM semantics: RMSNorm, rotary
embeddings with the rotate-half convention, SiLU gated MLP, no GQA), at any size. Parameter names equal the official
state-dict keys under the `decoder.lm.` prefix: model.embed_tokens, model.layers.N.{self_attn.{q,k,v,o}_proj,
mlp.{gate,up,down}_proj, input_layernorm, post_attention_layernorm}, model.norm, lm_head, project_up, project_down."""
import torch
import torch.nn.functional as F
from torch import nn

from .eva_vit import EvaViT


class RMSNorm(nn.Module):
    def __init__(self, hidden: int, eps: float, device=None):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden, device=device))
        self.eps = eps

    def forward(self, x):
        # In float32 whatever the model's dtype, as transformers 4.31 does (LLaMA activations overflow float16 squares).
        h = x.to(torch.float32)
        variance = h.pow(2).mean(-1, keepdim=True)
        return self.weight * (h * torch.rsqrt(variance + self.eps)).to(x.dtype)


class _RotateHalf(torch.autograd.Function):
    """(x1, x2) -> (-x2, x1) halving the last axis (of size head_dim). Exported as a Split of fixed sizes: slices at
    x.shape[-1] // 2 trace the shape as a computation (Shape, Gather, Add, Div, Mul) on every use."""

    @staticmethod
    def forward(ctx, x, head_dim: int):
        half = head_dim // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    @staticmethod
    def symbolic(g, x, head_dim: int):
        sizes = g.op("Constant", value_t=torch.tensor([head_dim // 2, head_dim // 2], dtype=torch.int64))
        first, second = g.op("Split", x, sizes, axis_i=-1, outputs=2)
        return g.op("Concat", g.op("Neg", second), first, axis_i=-1)


class _SplitHeads(torch.autograd.Function):
    """[B,T,h*d] -> [B,h,T,d]. Exported as a Reshape to the fixed shape (0, -1, h, d) (0 copies the input's
    dimension, -1 is what remains): a view to (b, t, h, d) traces b and t as shape computations, five nodes per use,
    each a fixed cost of every decoder run that on a small model outweighs the arithmetic."""

    @staticmethod
    def forward(ctx, x, heads: int, head_dim: int):
        b, t, _ = x.shape
        return x.view(b, t, heads, head_dim).transpose(1, 2)

    @staticmethod
    def symbolic(g, x, heads: int, head_dim: int):
        shape = g.op("Constant", value_t=torch.tensor([0, -1, heads, head_dim], dtype=torch.int64))
        return g.op("Transpose", g.op("Reshape", x, shape), perm_i=[0, 2, 1, 3])


class _MergeHeads(torch.autograd.Function):
    """[B,h,T,d] -> [B,T,h*d], exported as a Reshape to the fixed shape (0, 0, -1) (see _SplitHeads)."""

    @staticmethod
    def forward(ctx, x):
        b, _, t, _ = x.shape
        return x.transpose(1, 2).reshape(b, t, -1)

    @staticmethod
    def symbolic(g, x):
        shape = g.op("Constant", value_t=torch.tensor([0, 0, -1], dtype=torch.int64))
        return g.op("Reshape", g.op("Transpose", x, perm_i=[0, 2, 1, 3]), shape)


class _SplitAtPast(torch.autograd.Function):
    """Attention weights [B,h,T,P+T] -> those of the past's P keys and of the T new ones. Exported as two Slices at
    the past's length read once (Shape with start and end, opset 15), not a traced past.shape[2] (four nodes more)."""

    @staticmethod
    def forward(ctx, probs, past_key):
        p = past_key.shape[2]
        return probs[..., :p], probs[..., p:]

    @staticmethod
    def symbolic(g, probs, past_key):
        p = g.op("Shape", past_key, start_i=2, end_i=3)
        axis = g.op("Constant", value_t=torch.tensor([-1], dtype=torch.int64))
        zero = g.op("Constant", value_t=torch.tensor([0], dtype=torch.int64))
        end = g.op("Constant", value_t=torch.tensor([torch.iinfo(torch.int64).max], dtype=torch.int64))
        return g.op("Slice", probs, zero, p, axis), g.op("Slice", probs, p, end, axis)


class Rotary(nn.Module):
    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim)), persistent=False)

    def forward(self, position_ids, dtype):
        # [B,T] -> cos, sin [B,1,T,d] in dtype. HF 4.31 tabulates cos/sin of t * inv_freq in float32 (t = 0, 1, ...)
        # and gathers rows by position id; one float32 product per entry either way, so this is the same table entry,
        # and it needs no table (and no limit) in the graph.
        freqs = position_ids[..., None].to(torch.float32) * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos()[:, None].to(dtype), emb.sin()[:, None].to(dtype)


def attend_past_apart(q, k, v, mask, past_key, past_value, head_dim: int):
    """Attention of q [B,h,T,d] over the past's keys and values [B,h,P,d] and this run's own [B,h,T,d], without
    concatenating them: the scores of the past's keys and of the new ones side by side (one softmax over both), the
    weighted past values plus the weighted new ones. In an exported graph the Concat of the past and the new rows
    copied the whole cache on every token (2 x 41 MB per layer at Emu2's width and 1,536 tokens); the sum only
    changes the order of float additions. mask [B,1,T,P+T] is added to the scores. head_dim is a Python int (a
    traced q.shape[-1] would export as shape nodes)."""
    scale = head_dim ** 0.5
    scores = torch.cat((q @ past_key.transpose(2, 3), q @ k.transpose(2, 3)), dim=-1) / scale + mask
    probs = scores.to(torch.float32).softmax(dim=-1).to(q.dtype)
    probs_past, probs_new = _SplitAtPast.apply(probs, past_key)
    return probs_past @ past_value + probs_new @ v


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, device=None):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden_size {hidden} is not a multiple of num_heads {heads}")
        self.heads = heads
        self.head_dim = hidden // heads
        self.q_proj = nn.Linear(hidden, hidden, bias=False, device=device)
        self.k_proj = nn.Linear(hidden, hidden, bias=False, device=device)
        self.v_proj = nn.Linear(hidden, hidden, bias=False, device=device)
        self.o_proj = nn.Linear(hidden, hidden, bias=False, device=device)

    def forward(self, x, cos, sin, mask, past, past_apart=False):
        """-> (output, (key, value)): the past and this run's keys and values concatenated, as HF's presents; with
        past_apart, this run's own rows only, and the past is attended where it lies (attend_past_apart)."""
        q = _SplitHeads.apply(self.q_proj(x), self.heads, self.head_dim)
        k = _SplitHeads.apply(self.k_proj(x), self.heads, self.head_dim)
        v = _SplitHeads.apply(self.v_proj(x), self.heads, self.head_dim)
        q = q * cos + _RotateHalf.apply(q, self.head_dim) * sin
        k = k * cos + _RotateHalf.apply(k, self.head_dim) * sin
        if past_apart and past is not None:
            out = attend_past_apart(q, k, v, mask, past[0], past[1], self.head_dim)
            return self.o_proj(_MergeHeads.apply(out)), (k, v)
        if past is not None:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        scores = (q @ k.transpose(2, 3)) / (self.head_dim ** 0.5) + mask
        # softmax(dtype=float32) as HF; spelled as casts because the ONNX exporter casts after a Softmax instead.
        out = scores.to(torch.float32).softmax(dim=-1).to(q.dtype) @ v
        return self.o_proj(_MergeHeads.apply(out)), (k, v)


class Mlp(nn.Module):
    def __init__(self, hidden: int, intermediate: int, device=None):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False, device=device)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False, device=device)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False, device=device)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float, device=None):
        super().__init__()
        self.self_attn = Attention(hidden, heads, device)
        self.mlp = Mlp(hidden, intermediate, device)
        self.input_layernorm = RMSNorm(hidden, eps, device)
        self.post_attention_layernorm = RMSNorm(hidden, eps, device)

    def forward(self, x, cos, sin, mask, past, past_apart=False):
        attn, present = self.self_attn(self.input_layernorm(x), cos, sin, mask, past, past_apart)
        x = x + attn
        return x + self.mlp(self.post_attention_layernorm(x)), present


class LlamaModel(nn.Module):
    def __init__(self, vocab_size: int, hidden: int, layers: int, heads: int, intermediate: int, eps: float,
                 device=None):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab_size, hidden, device=device)
        self.layers = nn.ModuleList([DecoderLayer(hidden, heads, intermediate, eps, device) for _ in range(layers)])
        self.norm = RMSNorm(hidden, eps, device)


def attention_mask_4d(attention_mask, new_tokens: int, dtype=torch.float32):
    """transformers 4.31 _prepare_decoder_attention_mask, [B,1,T,P+T]: the padding mask (the dtype's min where
    attention_mask is 0) plus the causal mask (the dtype's min on future keys; HF skips it for one new token, where
    it is all zero anyway). Keys masked both ways get min + min, which is -inf in float32 as in HF; a padded query
    row keeps finite entries (its own key is only padding-masked), so no row is all -inf and softmax stays finite."""
    total = attention_mask.shape[1]
    past = total - new_tokens
    # Where between two scalars, not zeros(shape).masked_fill: the same values without tracing the shapes.
    low = torch.full((), torch.finfo(dtype).min, dtype=dtype)
    zero = torch.zeros((), dtype=dtype)
    padding = torch.where(attention_mask == 0, low, zero)[:, None, None, :]
    future = torch.arange(total)[None, :] > (torch.arange(new_tokens)[:, None] + past)
    causal = torch.where(future, low, zero)[None, None]
    return padding + causal


class Emu2LLM(nn.Module):
    def __init__(self, vocab_size: int, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int,
                 rms_norm_eps: float, vision_width: int, max_position_embeddings: int = 2048, device=None):
        """device="meta" builds the structure without allocating weights (the streaming export of the real model)."""
        super().__init__()
        self.max_position_embeddings = max_position_embeddings
        self.model = LlamaModel(vocab_size, hidden_size, num_layers, num_heads, intermediate_size, rms_norm_eps,
                                device)
        self.lm_head = nn.Linear(hidden_size, vocab_size, bias=False, device=device)
        self.project_up = nn.Linear(vision_width, hidden_size, bias=False, device=device)
        self.project_down = nn.Linear(hidden_size, vision_width, bias=False, device=device)
        # Derived from the head size alone (never loaded): the checkpoints' rotary_emb.inv_freq buffers equal it.
        self.rotary = Rotary(hidden_size // num_heads)

    def embed_tokens(self, ids):
        return self.model.embed_tokens(ids)

    def decode(self, inputs_embeds, attention_mask, position_ids, past_key_values=None, layers=None,
               past_apart=False):
        """-> (last_hidden_state after the final norm, presents [(key, value) per layer, each [B,h,P+T,d]]).
        layers = (start, stop) runs only those consecutive layers (one part of a split decoder): past_key_values and
        presents are theirs, and the final norm is applied only by the part that ends with the last layer.
        past_apart: the presents are this run's rows only [B,h,T,d], the past attended without a copy (the
        exported decoder's form, Attention.forward)."""
        start, stop = layers or (0, len(self.model.layers))
        mask = attention_mask_4d(attention_mask, inputs_embeds.shape[1], inputs_embeds.dtype)
        cos, sin = self.rotary(position_ids, inputs_embeds.dtype)
        x = inputs_embeds
        presents = []
        for i, layer in enumerate(self.model.layers[start:stop]):
            past = past_key_values[i] if past_key_values else None
            x, present = layer(x, cos, sin, mask, past, past_apart)
            presents.append(present)
        return (self.model.norm(x) if stop == len(self.model.layers) else x), presents


def build_vision_llm(config: dict, seed: int):
    """config: {"vision": {image_size, patch_size, width, layers, heads, mlp_hidden},
    "llm": {vocab_size, hidden_size, num_layers, num_heads, intermediate_size, rms_norm_eps, ...}} -> (vision, llm)
    with seeded random weights scaled so activations stay well-conditioned and logits are far from flat (greedy and
    beam search then test something)."""
    generator = torch.Generator().manual_seed(seed)
    vision = EvaViT(**config["vision"])
    llm = Emu2LLM(**config["llm"], vision_width=config["vision"]["width"])
    for module in (vision, llm):
        for name, p in module.named_parameters():
            with torch.no_grad():
                if name.endswith("norm1.weight") or name.endswith("norm2.weight") or "layernorm" in name or name.endswith("norm.weight"):
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=generator))
                elif p.dim() == 1:
                    p.copy_(0.02 * torch.randn(p.shape, generator=generator))
                elif "embed_tokens" in name or "lm_head" in name:
                    p.copy_(torch.randn(p.shape, generator=generator) / p.shape[-1] ** 0.5 * (8.0 if "lm_head" in name else 2.0))
                else:
                    fan_in = p[0].numel()
                    p.copy_(torch.randn(p.shape, generator=generator) / fan_in ** 0.5)
    return vision.eval(), llm.eval()


def position_ids_for(attention_mask, new_tokens: int):
    """HF generation: cumsum(mask) - 1 with padded positions set to 1, for the last new_tokens positions."""
    pos = attention_mask.long().cumsum(-1) - 1
    pos = pos.masked_fill(attention_mask == 0, 1)
    return pos[:, -new_tokens:]
