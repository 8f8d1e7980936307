"""Is an emu2-toy checkpoint binding nonsense labels in context? Two measures on held-out 4-way episodes:

- at the demonstrations: on 8-demonstration episodes whose classes are drawn independently (in a balanced episode the
  counts alone say which labels can come next), the loss on the first token of every label whose class was shown
  before, against log(number of labels shown so far) (what copying one of them at random scores), and how often the
  right one ranks first among the labels shown so far; then the same with every image replaced by another episode's
  (the batch's images rotated): a model that binds labels to images does better with its own, one that learned a
  text-only pattern does the same with both;
- at the query's answer (what fewshot-eval measures): accuracy of ranking the episode's 4 labels after the prompt,
  at 0, 4 and 8 demonstrations (chance 25%).

    /usr/bin/python3 python/toy_binding_probe.py CHECKPOINT [--episodes 96]

CHECKPOINT is a small checkpoint (fixtures/checkpoints/emu2-toy.pt) or a training run's WORKDIR/last.pt.
"""
import argparse
import math
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import train_toy  # noqa: E402
from emu2ref.tokenizer import load_reference_tokenizer  # noqa: E402
from emu2toy import data, model  # noqa: E402


def load(path: str):
    state = torch.load(path)
    if "vocab_rows" in state:
        vision, llm, _ = model.load_checkpoint(path)
        return vision, llm
    # A run's last.pt holds every parameter: what the build draws is all overwritten.
    vision, llm = model.build(0)
    vision.load_state_dict(state["vision"])
    llm.load_state_dict(state["llm"])
    return vision.eval(), llm.eval()


@torch.no_grad()
def demonstration_labels(vision, llm, enc, episodes: int, seed: int, rotate_images: bool) -> dict:
    pad = enc.tokenizer.added["[PAD]"]
    rng = random.Random(seed)
    loss, copy_level, ranked_first, count = 0.0, 0.0, 0, 0
    for start in range(0, episodes, 16):
        eps = [data.episode(rng, 8, 4, rng.choice(["shape", "color"]), balanced=False)
               for _ in range(min(16, episodes - start))]
        samples = []
        for ep in eps:
            ids = enc.encode(data.chat_text([(data.episode_prompt(ep), None)]), True)
            samples.append({"ids": ids, "targets": [data.IGNORE] * len(ids), "regress": [],
                            "scenes": [s for s, _ in ep["demos"]] + [ep["query"]]})
        batch = train_toy.collate(samples, pad)
        pixels = batch["pixels"]
        # By more than an episode's 9 images, so that none keeps its own.
        features = model.encode_images(vision, pixels.roll(11, 0) if rotate_images else pixels)
        hidden = model.hidden_states(llm, batch["ids"], batch["attention_mask"], features, enc.image_id)
        logp = torch.log_softmax(llm.lm_head(hidden), -1)
        for b, ep in enumerate(eps):
            ids = samples[b]["ids"]
            first = {w: enc.encode(w, False)[0] for w in ep["labels"]}
            words = [w for _, w in ep["demos"]]
            seen, k = [], 0
            for t in range(1, len(ids)):
                # A demonstration's label: its first piece right after "This is a".
                if k < len(words) and ids[t] == first[words[k]] and enc.tokenizer.decode([ids[t - 1]]).strip() == "a":
                    if words[k] in seen:
                        row = logp[b, t - 1]
                        loss -= row[ids[t]].item()
                        copy_level += math.log(len(set(seen)))
                        ranked_first += max({first[w] for w in seen}, key=lambda c: row[c].item()) == ids[t]
                        count += 1
                    seen.append(words[k])
                    k += 1
    return {"repeated labels": count, "loss": loss / count, "copy level": copy_level / count,
            "ranked first among shown": ranked_first / count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--episodes", type=int, default=96)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    enc = data.Encoder(load_reference_tokenizer(train_toy.TOKENIZER), model.N_QUERY)
    vision, llm = load(args.checkpoint)
    for rotate in (False, True):
        demos = demonstration_labels(vision, llm, enc, args.episodes, seed=77, rotate_images=rotate)
        print(f"demonstrations ({'images rotated' if rotate else 'own images'}): " +
              ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in demos.items()))
    answers = {shots: train_toy.fewshot_accuracy(vision, llm, enc, shots, args.episodes, seed=31337)
               for shots in (0, 4, 8)}
    print("answer accuracy: " + ", ".join(f"{shots}-shot {acc:.3f}" for shots, acc in answers.items()))


if __name__ == "__main__":
    main()
