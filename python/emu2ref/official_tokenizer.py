"""Writes fixtures/tokenizer/official.json: what the official Emu2 tokenizer files give, for the TypeScript tokenizer
to match (test/tokenizer/official.test.ts). The official files are not in this repository; pass the folder `Emu2/emu`
of a checkout of https://github.com/baaivision/Emu:

    cd python && /usr/bin/python3 -m emu2ref.official_tokenizer EMU_CHECKOUT/Emu2/emu [OUT]

- conf/llama_config/tokenizer.model: LLaMA's sentencepiece model (its sha256 is checked against LLaMA-1's); the real
  sentencepiece library encodes every corpus string of fixtures/tokenizer/parity.json with it, under the
  transformers 4.31 slow-tokenizer rules of python/emu2ref/tokenizer.py, for the chat and the base token set;
- conf/llama_config/tokenizer.json: its vocabulary must equal the model's pieces; its own added tokens (<unk>, <s>,
  </s>) and a sha256 of its vocabulary and merges are recorded, so the test can check the tokenizer.json this project
  writes (tools/build-tokenizer.ts) against them;
- constants.py and lm.py: Emu2's added tokens in the order lm.py hands them to add_special_tokens (pad first, then
  its special_tokens_list, then [USER] [ASSISTANT] for the instruct model), with the ids that gives them (32000 on).
"""
import ast
import hashlib
import importlib.util
import json
import os
import sys

from .tokenizer import ReferenceTokenizer
from .tokenizer_parity import HAND_WRITTEN, generated

LLAMA_TOKENIZER_MODEL_SHA256 = "9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347"
REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def vocabulary_digest(tokenizer_json: dict) -> str:
    """sha256 of the pieces in id order and the merges (as "left right" strings), JSON-encoded: equal digests mean
    the same BPE vocabulary. tools/build-tokenizer.ts's output is checked with the same digest."""
    vocab = tokenizer_json["model"]["vocab"]
    pieces = [p for p, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer_json["model"]["merges"]]
    return sha256(json.dumps({"pieces": pieces, "merges": merges}, ensure_ascii=False, separators=(",", ":")).encode())


def emu2_added_tokens(emu_dir: str, instruct: bool) -> list:
    """Emu2's added tokens in lm.py's order: add_location_symbols() comes from lm.py itself (its function, run on
    constants.py), the rest of special_tokens_list from constants.py."""
    spec = importlib.util.spec_from_file_location("emu2_constants", os.path.join(emu_dir, "constants.py"))
    constants = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(constants)
    with open(os.path.join(emu_dir, "lm.py")) as f:
        tree = ast.parse(f.read())
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "add_location_symbols")
    namespace = dict(vars(constants))
    exec(compile(ast.Module(body=[function], type_ignores=[]), "lm.py", "exec"), namespace)
    c = constants
    tokens = [c.DEFAULT_PAD_TOKEN, c.DEFAULT_IMG_TOKEN, c.DEFAULT_IMG_END_TOKEN, c.DEFAULT_IMAGE_TOKEN,
              c.DEFAULT_gIMG_TOKEN, c.DEFAULT_gIMG_END_TOKEN, c.DEFAULT_EOC_TOKEN, c.DEFAULT_VIDEO_TOKEN]
    tokens += namespace["add_location_symbols"]()
    if instruct:
        tokens += [c.USER_TOKEN, c.ASSISTANT_TOKEN]
    return tokens


def main() -> None:
    emu_dir = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(REPO, "fixtures", "tokenizer", "official.json")
    config = os.path.join(emu_dir, "conf", "llama_config")
    with open(os.path.join(config, "tokenizer.model"), "rb") as f:
        model = f.read()
    if sha256(model) != LLAMA_TOKENIZER_MODEL_SHA256:
        raise SystemExit(f"{config}/tokenizer.model: sha256 {sha256(model)} is not LLaMA-1's {LLAMA_TOKENIZER_MODEL_SHA256}")
    with open(os.path.join(config, "tokenizer.json"), "rb") as f:
        json_bytes = f.read()
    official_json = json.loads(json_bytes)

    tokenizers = {}
    added = {}
    for variant, instruct in (("chat", True), ("base", False)):
        tokens = emu2_added_tokens(emu_dir, instruct)
        added[variant] = {t: 32000 + i for i, t in enumerate(tokens)}
        table = official_json["added_tokens"] + [{"content": t, "id": i} for t, i in added[variant].items()]
        tokenizers[variant] = ReferenceTokenizer({"added_tokens": table}, sentencepiece_model=model)
    sp = tokenizers["chat"].sp
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    vocab = official_json["model"]["vocab"]
    if pieces != [p for p, _ in sorted(vocab.items(), key=lambda kv: kv[1])]:
        raise SystemExit(f"{config}/tokenizer.json: its vocabulary differs from tokenizer.model's pieces")

    corpus = HAND_WRITTEN + generated(1100)
    chat, base = tokenizers["chat"], tokenizers["base"]
    cases = [{"chat": chat.encode(t), "base": base.encode(t.replace("[USER]", "").replace("[ASSISTANT]", "")),
              "decoded": chat.decode(chat.encode(t), skip_special_tokens=True)} for t in corpus]
    doc = {
        "about": "ids of the official Emu2 tokenizer (python/emu2ref/official_tokenizer.py) for the texts of "
                 "fixtures/tokenizer/parity.json, case by case",
        "source": "https://github.com/baaivision/Emu Emu2/emu/conf/llama_config",
        "tokenizer_model_sha256": sha256(model),
        "tokenizer_json_sha256": sha256(json_bytes),
        "vocabulary_digest": vocabulary_digest(official_json),
        "official_added_tokens": {t["content"]: t["id"] for t in official_json["added_tokens"]},
        "emu2_added_tokens": added,
        "cases": cases,
    }
    with open(out, "w") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(cases)} cases to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
