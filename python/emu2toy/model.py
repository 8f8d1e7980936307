"""emu2-toy's modules (the reference EvaViT and Emu2LLM at toy size), their seeded initialization, the training
forward pass, and the small checkpoint format.

The vocabulary is LLaMA's plus Emu2-Chat's added tokens (32274 rows): at hidden size 64 its two matrices
(embed_tokens, lm_head) are most of the model, and the toy world uses a few hundred of their rows. Only those rows
are trained; every other row keeps its seeded initial value, so the checkpoint stores the trained rows and the seed,
and `build(seed)` remakes the rest bit for bit.
"""
import torch
import torch.nn.functional as F

from emu2ref.eva_vit import EvaViT, pool_visual_features
from emu2ref.llama import Emu2LLM
from emu2ref.manifest import special_tokens

VARIANT = "emu2-chat"
VOCAB_SIZE = 32000 + len(special_tokens(VARIANT))
VISION = {"image_size": 64, "patch_size": 16, "width": 64, "layers": 2, "heads": 4, "mlp_hidden": 128}
LLM = {"hidden_size": 64, "num_layers": 3, "num_heads": 4, "intermediate_size": 128,
       "max_position_embeddings": 2048, "rms_norm_eps": 1e-6}
N_QUERY = 4
VOCAB_INIT_STD = 0.02


def build(seed: int, embed_init_std: float = VOCAB_INIT_STD, head_init_std: float = VOCAB_INIT_STD):
    """Seeded initial (vision, llm): PyTorch's default Linear/LayerNorm initialization drawn under torch.manual_seed,
    then the vocabulary matrices (embed_tokens from N(0, embed_init_std), lm_head from N(0, head_init_std)), class
    token and position embeddings from their own generator. The committed checkpoint was trained from 0.02 for both;
    binding nonsense labels came only from PyTorch's own scales, 1.0 and about 0.072 (docs/emu2-toy/README.md)."""
    torch.manual_seed(seed)
    vision = EvaViT(**VISION)
    llm = Emu2LLM(vocab_size=VOCAB_SIZE, vision_width=VISION["width"], **LLM)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        llm.model.embed_tokens.weight.copy_(torch.randn(VOCAB_SIZE, LLM["hidden_size"], generator=g) * embed_init_std)
        llm.lm_head.weight.copy_(torch.randn(VOCAB_SIZE, LLM["hidden_size"], generator=g) * head_init_std)
        vision.cls_token.copy_(torch.randn(vision.cls_token.shape, generator=g) * 0.02)
        vision.pos_embed.copy_(torch.randn(vision.pos_embed.shape, generator=g) * 0.02)
    return vision, llm


VOCAB_PARAMS = ("model.embed_tokens.weight", "lm_head.weight")


def checkpoint_state(vision, llm, seed: int, trained_ids: list, embed_init_std: float = VOCAB_INIT_STD,
                     head_init_std: float = VOCAB_INIT_STD) -> dict:
    """The committed checkpoint: every parameter except the vocabulary matrices, whose trained rows are kept; the
    others are rebuilt from the seed at the scales the LLM was drawn with (build)."""
    ids = torch.tensor(sorted(trained_ids), dtype=torch.long)
    llm_state = {k: v.detach().clone() for k, v in llm.state_dict().items() if k not in VOCAB_PARAMS}
    rows = {k: dict(llm.named_parameters())[k].detach()[ids].clone() for k in VOCAB_PARAMS}
    return {"format": "emu2-toy-checkpoint/1", "seed": seed, "vision_config": VISION, "llm_config": LLM,
            "n_query": N_QUERY, "vision": {k: v.detach().clone() for k, v in vision.state_dict().items()},
            "llm": llm_state, "trained_ids": ids, "vocab_rows": rows,
            "vocab_init_std": {"embed": embed_init_std, "head": head_init_std}}


def vocab_init_std(state: dict) -> tuple:
    """(embed, head) scales a checkpoint's LLM was drawn with; checkpoints from before the field drew both at 0.02."""
    scales = state.get("vocab_init_std", {"embed": VOCAB_INIT_STD, "head": VOCAB_INIT_STD})
    return scales["embed"], scales["head"]


def load_checkpoint(path: str):
    state = torch.load(path)
    vision, llm = build(state["seed"], *vocab_init_std(state))
    vision.load_state_dict(state["vision"])
    missing, unexpected = llm.load_state_dict(state["llm"], strict=False)
    if sorted(missing) != sorted(VOCAB_PARAMS) or unexpected:
        raise ValueError(f"{path}: unexpected LLM parameters (missing {missing}, unexpected {unexpected})")
    params = dict(llm.named_parameters())
    with torch.no_grad():
        for name in VOCAB_PARAMS:
            params[name][state["trained_ids"]] = state["vocab_rows"][name]
    return vision.eval(), llm.eval(), state


def encode_images(vision, pixels: torch.Tensor) -> torch.Tensor:
    """[N,3,S,S] normalized pixels -> [N, n_query, width] visual embeddings (Emu2's encode_image)."""
    return pool_visual_features(vision(pixels), N_QUERY)


def splice(llm, ids: torch.Tensor, features: torch.Tensor, image_token_id: int) -> torch.Tensor:
    """inputs_embeds with the `<image>` rows replaced, in order of appearance, by project_up(features)."""
    embeds = llm.embed_tokens(ids)
    mask = ids == image_token_id
    if features is not None and mask.any():
        up = llm.project_up(features).reshape(-1, embeds.shape[-1])
        embeds = embeds.masked_scatter(mask[..., None], up)
    return embeds


def hidden_states(llm, ids: torch.Tensor, attention_mask: torch.Tensor, features, image_token_id: int):
    return split_hidden_states(llm, ids, attention_mask, features, image_token_id)[0]


def split_hidden_states(llm, ids: torch.Tensor, attention_mask: torch.Tensor, features, image_token_id: int,
                        class_layer: int = 0):
    """The final hidden states, and with class_layer > 0 the output of the first class_layer layers (else None)."""
    embeds = splice(llm, ids, features, image_token_id)
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    if not class_layer:
        hidden, _ = llm.decode(embeds, attention_mask, positions)
        return hidden, None
    middle, _ = llm.decode(embeds, attention_mask, positions, layers=(0, class_layer))
    hidden, _ = llm.decode(middle, attention_mask, positions, layers=(class_layer, len(llm.model.layers)))
    return hidden, middle


def losses(vision, llm, batch: dict, image_token_id: int, class_layer: int = 0) -> dict:
    """Text cross-entropy over the answer tokens and mean squared error of the regressed visual embeddings; with
    class_layer > 0 and class targets in the batch also "class": the cross-entropy of the output of the first
    class_layer layers, read through the final norm and lm_head, against the class word at the token before each
    few-shot label (data.Encoder.mark_class). A training device only, the architecture is unchanged: it puts the
    class an image shows into the token the label is predicted from, where in-context binding can then find it
    (docs/emu2-toy/README.md, "Binding")."""
    features = encode_images(vision, batch["pixels"]) if batch["pixels"].shape[0] else None
    hidden, middle = split_hidden_states(llm, batch["ids"], batch["attention_mask"], features, image_token_id,
                                         class_layer)
    out = {}
    if middle is not None and batch["class_pos"].shape[0]:
        b, t = batch["class_pos"][:, 0], batch["class_pos"][:, 1]
        out["class"] = F.cross_entropy(llm.lm_head(llm.model.norm(middle[b, t])), batch["class_target"])
    sel = batch["targets"] != -100
    if sel.any():
        logits = llm.lm_head(hidden[sel])
        out["text"] = F.cross_entropy(logits, batch["targets"][sel])
    if batch["regress_pos"].shape[0]:
        b, t = batch["regress_pos"][:, 0], batch["regress_pos"][:, 1]
        predicted = llm.project_down(hidden[b, t])
        target = features[batch["regress_image"], batch["regress_query"]].detach()
        out["regression"] = F.mse_loss(predicted, target)
    return out


def regress(llm, ids: list, img_id: int, n_query: int = None) -> torch.Tensor:
    """Emu2-Gen's image regression as the runtime runs it (src/llm/regress.ts): the prompt ids and `[IMG]`, then
    n_query steps, each projecting the last hidden state down to a visual embedding and feeding project_up of it back
    as the next input. -> [n_query, width]."""
    n_query = n_query or N_QUERY
    with torch.no_grad():
        embeds = llm.embed_tokens(torch.tensor([list(ids) + [img_id]]))
        out = []
        for _ in range(n_query):
            length = embeds.shape[1]
            hidden, _ = llm.decode(embeds, torch.ones(1, length, dtype=torch.long), torch.arange(length)[None])
            visual = llm.project_down(hidden[:, -1])
            out.append(visual[0])
            embeds = torch.cat([embeds, llm.project_up(visual)[:, None]], dim=1)
    return torch.stack(out)
