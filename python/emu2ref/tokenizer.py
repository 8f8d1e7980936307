"""The reference Emu2 tokenizer: the real sentencepiece library (what transformers' slow LlamaTokenizer calls) on a
BPE model built from the package's vocabulary, wrapped in the transformers 4.31 rules Emu2 runs under (emu/lm.py):

- added tokens split the text (leftmost, longest match); Emu2 adds its tokens and <s>/</s> with add_special_tokens as
  plain strings, so tokenization_utils.tokenize strips whitespace on both sides of each; <unk> keeps its AddedToken
  (lstrip/rstrip False) and strips nothing; fully stripped chunks are dropped;
- every remaining chunk goes through sp_model.encode on its own (legacy=True), so each gets the dummy prefix.

The sentencepiece model: pieces in id order; <unk> UNKNOWN, <s> and </s> CONTROL, <0x00>..<0xFF> BYTE, the rest
NORMAL with the score that the merge list's order gives (LLaMA's BPE merges the adjacent pair whose piece scores
highest; tokenizer.json carries that order as its merge ranks); identity normalizer,
add_dummy_prefix, no removal of extra whitespace, byte fallback.
"""
import json
import re

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2

IMAGE_PLACEHOLDER = "[<IMG_PLH>]"
_NO_STRIP = {"<unk>"}


def _scores_from_merges(merges: list) -> dict:
    """Score of each piece that a merge produces: minus the rank of its first merge. LLaMA's BPE merges by piece score;
    the merge list (ordered by priority) is how tokenizer.json carries those scores."""
    scores = {}
    for rank, pair in enumerate(merges):
        left, right = pair.split(" ") if isinstance(pair, str) else pair
        scores.setdefault(left + right, float(-rank))
    return scores


def _sentencepiece_model(vocab_by_id: list, merge_scores: dict) -> bytes:
    proto = model_pb2.ModelProto()
    for i, piece in enumerate(vocab_by_id):
        p = proto.pieces.add()
        p.piece = piece
        if i == 0:
            p.type, p.score = model_pb2.ModelProto.SentencePiece.UNKNOWN, 0.0
        elif i in (1, 2):
            p.type, p.score = model_pb2.ModelProto.SentencePiece.CONTROL, 0.0
        elif re.fullmatch(r"<0x[0-9A-F]{2}>", piece):
            p.type, p.score = model_pb2.ModelProto.SentencePiece.BYTE, 0.0
        else:
            # Single characters are never produced by a merge; their score does not order any merge.
            p.type, p.score = model_pb2.ModelProto.SentencePiece.NORMAL, merge_scores.get(piece, -1e9)
    proto.trainer_spec.model_type = model_pb2.TrainerSpec.BPE
    proto.trainer_spec.vocab_size = len(vocab_by_id)
    proto.trainer_spec.byte_fallback = True
    proto.trainer_spec.unk_id, proto.trainer_spec.bos_id, proto.trainer_spec.eos_id, proto.trainer_spec.pad_id = 0, 1, 2, -1
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = True
    proto.normalizer_spec.remove_extra_whitespaces = False
    proto.normalizer_spec.escape_whitespaces = True
    return proto.SerializeToString()


class ReferenceTokenizer:
    def __init__(self, tokenizer_json: dict, sentencepiece_model: bytes = None):
        """The sentencepiece model built from tokenizer.json's vocabulary and merges, or `sentencepiece_model` (the
        bytes of a real tokenizer.model) when given; the added tokens are tokenizer.json's."""
        if sentencepiece_model is None:
            vocab = tokenizer_json["model"]["vocab"]
            base = sorted(((i, p) for p, i in vocab.items() if i < 32000))
            merge_scores = _scores_from_merges(tokenizer_json["model"]["merges"])
            sentencepiece_model = _sentencepiece_model([p for _, p in base], merge_scores)
        self.sp = spm.SentencePieceProcessor()
        self.sp.LoadFromSerializedProto(sentencepiece_model)
        self.added = {t["content"]: t["id"] for t in tokenizer_json["added_tokens"]}
        self.id_to_added = {i: t for t, i in self.added.items()}
        alternatives = sorted(self.added, key=len, reverse=True)
        self._splitter = re.compile("(" + "|".join(re.escape(t) for t in alternatives) + ")")

    def tokenize_chunks(self, text: str) -> list:
        chunks = self._splitter.split(text)
        is_special = [i % 2 == 1 for i in range(len(chunks))]
        for i, chunk in enumerate(chunks):
            if not is_special[i] or chunk in _NO_STRIP:
                continue
            if i + 1 < len(chunks) and chunks[i + 1] and not is_special[i + 1]:
                chunks[i + 1] = chunks[i + 1].lstrip()
            if i > 0 and chunks[i - 1] and not is_special[i - 1]:
                chunks[i - 1] = chunks[i - 1].rstrip()
        return [(c, s) for c, s in zip(chunks, is_special) if c]

    def encode(self, text: str, add_bos: bool = True) -> list:
        ids = [1] if add_bos else []
        for chunk, special in self.tokenize_chunks(text):
            if special:
                ids.append(self.added[chunk])
            else:
                ids.extend(self.sp.encode(chunk))
        return ids

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        if skip_special_tokens:
            return self.sp.decode([i for i in ids if i not in self.id_to_added])
        parts, run = [], []
        for i in ids:
            if i in self.id_to_added:
                if run:
                    parts.append(self.sp.decode(run))
                    run = []
                parts.append(self.id_to_added[i])
            else:
                run.append(i)
        if run:
            parts.append(self.sp.decode(run))
        return " ".join(parts)

    @staticmethod
    def expand_image_placeholders(text: str, n_query: int) -> str:
        return text.replace(IMAGE_PLACEHOLDER, "[IMG]" + "<image>" * n_query + "[/IMG]")


def load_reference_tokenizer(tokenizer_json_path: str) -> ReferenceTokenizer:
    with open(tokenizer_json_path) as f:
        return ReferenceTokenizer(json.load(f))
