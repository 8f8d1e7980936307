"""Writes fixtures/tokenizer/parity.json: a deterministic corpus of varied strings and the ids the reference tokenizer
(emu2ref.tokenizer) gives them with the chat and the base tokenizer.json. The TypeScript tokenizer must give the same.

    cd python && /usr/bin/python3 -m emu2ref.tokenizer_parity TOKENIZER_CHAT_JSON TOKENIZER_BASE_JSON [OUT]

(tools/build-tokenizer.ts writes the two tokenizer.json files.)"""
import json
import os
import random
import sys

from .tokenizer import load_reference_tokenizer

HAND_WRITTEN = [
    "", " ", "  ", "\n", "\n\n", "\t", " \t \n ", "Hello world", "Hello  world", " Hello world ", "hello\nworld",
    "1234567890", "3.14159", "12,345.67", "2023-12-20T10:00:00Z", "a1b2c3", "x = y + 2 * (z - 1);",
    "naïve café résumé Ærøskøbing", "日本語のテキスト", "中文分词测试", "한국어 텍스트", "Привет, мир!", "مرحبا بالعالم",
    "emoji 🦙🔥👍🏽 end", "👨‍👩‍👧‍👦", "\u00a0non-breaking\u00a0space", "zero\u200bwidth", "tab\tseparated\tvalues",
    "[<IMG_PLH>]Describe the image in details:",
    "[<IMG_PLH>][red, white, 3, bottom left].[<IMG_PLH>][yellow, white, 2, top left].[<IMG_PLH>]",
    "[IMG]<image><image>[/IMG]", "text[IMG]text", "text [IMG] text", "text  [IMG]  text", "[IMG] leading", "trailing [/IMG]",
    "You are a helpful assistant, dedicated to delivering comprehensive and meticulous responses. [USER]: Hi [ASSISTANT]:",
    "answer</s>[USER]: next question [ASSISTANT]:", "a </s> b", "<s>start", "<unk> stays", "x <unk> y",
    "<grounding>An oil painting of<phrase>a cat</phrase><object>[<IMG_PLH>]</object>",
    "<phrase> the first dog </phrase><object><patch_index_0012><patch_index_0200></object>",
    "</delimiter_of_multi_objects/><REC>[gIMG][/gIMG][EOC][VIDEO][PAD]",
    "<patch_index_0256><patch_index_0000>", "<patch_index_9999> is not a token", "[IMG ] [ IMG] <image >",
    "[USER][ASSISTANT]", "[USER] : spaced", "[<IMG_PLH>] based on the picture, what is it? short answer:",
    "▁ already has the meta symbol ▁▁", "back\\slash and \"quotes\" and 'single'", "<html><body>tag</body></html>",
    "[[nested]] <<angle>>", "ends with space ", " starts with space", "\u3000ideographic space", "\r\nwindows\r\nnewlines",
]

WORDS = ("the a of to and in is it you that he was for on are with as I his they be at one have this from or had by "
         "word but what some we can out other were all there when up use your how said an each she which do their time "
         "if will way about many then them write would like so these her long make thing see him two has look more day "
         "could go come did number sound no most people my over know water than call first who may down side been now "
         "find dog cat photo image picture describe answer question red white blue bottom left top right").split()
UNICODE = ["é", "ü", "ñ", "ç", "ø", "å", "ß", "日", "本", "語", "中", "文", "한", "국", "я", "ж", "ш", "ع", "ب", "ש",
           "🦙", "🔥", "👍", "😀", "🎉", "∑", "∞", "≠", "€", "£", "¥", "©", "™", "…", "—", "“", "”", "‘", "’", "\u200b", "\u00a0"]
PUNCT = list(".,;:!?()[]{}<>/\\|@#$%^&*-_=+~`'\"")
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", " \n", "\r\n"]
SPECIALS = ["[IMG]", "[/IMG]", "<image>", "[gIMG]", "[/gIMG]", "[EOC]", "[VIDEO]", "<grounding>", "<phrase>", "</phrase>",
            "<object>", "</object>", "</delimiter_of_multi_objects/>", "<REC>", "[PAD]", "<s>", "</s>", "<unk>",
            "[USER]", "[ASSISTANT]", "[<IMG_PLH>]", "<patch_index_0001>", "<patch_index_0128>", "<patch_index_0256>"]


def generated(count: int, seed: int = 20231220) -> list:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 14)):
            kind = rng.random()
            if kind < 0.45:
                w = rng.choice(WORDS)
                parts.append(w.capitalize() if rng.random() < 0.2 else w)
            elif kind < 0.55:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 7))))
            elif kind < 0.65:
                parts.append("".join(rng.choice(UNICODE) for _ in range(rng.randint(1, 4))))
            elif kind < 0.75:
                parts.append(rng.choice(PUNCT))
            elif kind < 0.88:
                parts.append(rng.choice(SPECIALS))
            else:
                parts.append(rng.choice(SPACES))
            if rng.random() < 0.6:
                parts.append(rng.choice([" ", " ", " ", "", "\n", "  "]))
        out.append("".join(parts))
    return out


def main() -> None:
    chat_json, base_json = sys.argv[1], sys.argv[2]
    out = sys.argv[3] if len(sys.argv) > 3 else os.path.join(os.path.dirname(__file__), "..", "..", "fixtures",
                                                               "tokenizer", "parity.json")
    chat = load_reference_tokenizer(chat_json)
    base = load_reference_tokenizer(base_json)
    corpus = HAND_WRITTEN + generated(1100)
    cases = [{"text": t, "chat": chat.encode(t), "base": base.encode(t.replace("[USER]", "").replace("[ASSISTANT]", "")),
              "decoded": chat.decode(chat.encode(t), skip_special_tokens=True)} for t in corpus]
    with open(out, "w") as f:
        json.dump({"about": __doc__.split("\n")[0], "cases": cases}, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(cases)} cases to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
