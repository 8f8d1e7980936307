"""Trains emu2-toy's LLM (and, from scratch, its visual encoder), a miniature Emu2-Chat for the toy world
(python/emu2toy/world.py), one step of its recipe per run. python/make_toy.py runs the whole recipe in one command and
lists the arguments of each step; docs/emu2-toy/README.md has the runs and what they measured. For example, the
binding step (a new LLM beside a pretrained, frozen encoder, on nonsense-label episodes alone):

    /usr/bin/python3 python/train_toy.py --workdir /tmp/toy/bind --init-from /tmp/toy/enc.pt --fresh-llm \
        --freeze-vision --mix episodes-this-is --class-layer 2 --lr 2e-3 --batch-size 16 --steps 2000 \
        --embed-init-std 1.0 --head-init-std 0.072 --out /tmp/toy/bind.pt

Each run resumes from WORKDIR/last.pt when present, writes WORKDIR/{last.pt,loss.csv,eval.csv}, and at its end the
small checkpoint --out with its curves beside it (-loss.csv, -eval.csv, -loss.png). Trained here beside the LLM, the
encoder learns at --vision-lr-scale of the text rate: Adam turns its small gradients into full-size steps, and at the
text rate its features grew until the LLM's RMSNorm flattened their gradient and the LLM learned to ignore the image
(the first recorded run). The recipe pretrains it on the world's labels instead (python/pretrain_toy_encoder.py) and
freezes it (--freeze-vision), which also fixes the space the visual decoder (python/train_toy_decoder.py) learns.

CPU, seeded: batch number n is drawn from random.Random(seed, n), so a resumed run sees the same batches as an
uninterrupted one. Objective: Emu2's unified autoregressive one at toy scale, text cross-entropy on the answers plus
the regression of the next visual embedding (python/emu2toy/data.py lists the tasks). Every --eval-every steps the
run records held-out few-shot accuracy and the image-use check: caption loss with each image against the same
captions with the images rotated across the batch (a model that ignores the image scores both alike).
"""
import argparse
import csv
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from emu2ref.preprocess import preprocess  # noqa: E402
from emu2ref.tokenizer import load_reference_tokenizer  # noqa: E402
from emu2toy import data, model, world  # noqa: E402
from emu2toy.plot import plot_losses  # noqa: E402

CHECKPOINT = os.path.join(ROOT, "fixtures", "checkpoints", "emu2-toy.pt")
TOKENIZER = os.path.join(ROOT, "fixtures", "models", "emu2-chat-tiny", "tokenizer.json")
REGRESSION_WEIGHT = 1.0


def pixels_of(scenes: list) -> torch.Tensor:
    if not scenes:
        return torch.zeros(0, 3, world.IMAGE_SIZE, world.IMAGE_SIZE)
    return torch.from_numpy(np.stack([preprocess(world.render(s), model.VISION["image_size"]) for s in scenes]))


def collate(samples: list, pad_id: int) -> dict:
    """Right-padded batch; images in order of appearance, sample by sample (the order splicing consumes them)."""
    length = max(len(s["ids"]) for s in samples)
    ids = torch.full((len(samples), length), pad_id, dtype=torch.long)
    targets = torch.full((len(samples), length), data.IGNORE, dtype=torch.long)
    mask = torch.zeros((len(samples), length), dtype=torch.long)
    scenes, regress, classes = [], [], []
    for b, s in enumerate(samples):
        n = len(s["ids"])
        ids[b, :n] = torch.tensor(s["ids"])
        targets[b, :n] = torch.tensor(s["targets"])
        mask[b, :n] = 1
        for pos, query in s["regress"]:
            regress.append((b, pos, len(scenes), query))  # the sample's first image is the regressed one
        classes.extend((b, pos, word) for pos, word in s.get("classes", ()))
        scenes.extend(s["scenes"])
    r = torch.tensor(regress, dtype=torch.long).reshape(-1, 4)
    c = torch.tensor(classes, dtype=torch.long).reshape(-1, 3)
    return {"ids": ids, "targets": targets, "attention_mask": mask, "pixels": pixels_of(scenes),
            "regress_pos": r[:, :2], "regress_image": r[:, 2], "regress_query": r[:, 3],
            "class_pos": c[:, :2], "class_target": c[:, 2]}


def mean_present(values: list) -> float:
    """Mean over the steps that had the loss (a batch may hold no regression sample); nan when none had it."""
    present = [v for v in values if not np.isnan(v)]
    return float(np.mean(present)) if present else float("nan")


def batch_for(enc, seed: int, step: int, size: int, mix=None) -> list:
    rng = random.Random(seed * 1_000_003 + step)
    return [data.training_sample(enc, rng, mix) for _ in range(size)]


def trained_vocabulary(enc, seed: int) -> list:
    """Ids of every token the world's texts use (from a large fixed draw of training samples, plus every nonsense
    word and answer spelled on its own)."""
    rng = random.Random(seed + 17)
    ids = set()
    for _ in range(3000):
        ids.update(data.training_sample(enc, rng)["ids"])
    for word in world.NONSENSE_WORDS + world.SHAPES + sorted(world.COLORS) + world.QUADRANTS + ["yes", "no", "1", "2", "3"]:
        ids.update(enc.encode(word, False))
    return sorted(ids)


@torch.no_grad()
def image_use(vision, llm, enc, pad_id: int) -> tuple:
    """Caption loss on 32 fixed held-out captioning samples with their own images, and with the images rotated by one
    across the batch. Equal losses mean the model ignores the image."""
    rng = random.Random(4242)
    batch = collate([data.caption_sample(enc, rng) for _ in range(32)], pad_id)
    own = float(model.losses(vision, llm, batch, enc.image_id)["text"])
    batch["pixels"] = batch["pixels"].roll(1, 0)
    return own, float(model.losses(vision, llm, batch, enc.image_id)["text"])


@torch.no_grad()
def fewshot_accuracy(vision, llm, enc, shots: int, episodes: int, seed: int) -> float:
    """4-way nonsense-label accuracy on held-out episodes: the label whose tokens have the highest mean
    log-probability after the prompt wins (classification by ranking)."""
    rng = random.Random(seed)
    correct = 0
    for _ in range(episodes):
        ep = data.episode(rng, shots, 4, rng.choice(["shape", "color"]))
        prompt = data.chat_text([(data.episode_prompt(ep), None)])
        prompt_ids = enc.encode(prompt, True)
        samples = []
        for label in ep["labels"]:
            label_ids = enc.encode(label, False)
            samples.append({"ids": prompt_ids + label_ids,
                            "targets": [data.IGNORE] * (len(prompt_ids) - 1) + label_ids + [data.IGNORE],
                            "scenes": [s for s, _ in ep["demos"]] + [ep["query"]], "regress": []})
        batch = collate(samples, pad_id=enc.tokenizer.added["[PAD]"])
        features = model.encode_images(vision, batch["pixels"])
        hidden = model.hidden_states(llm, batch["ids"], batch["attention_mask"], features, enc.image_id)
        logp = torch.log_softmax(llm.lm_head(hidden), -1)
        scores = []
        for b in range(len(samples)):
            t = batch["targets"][b]
            sel = t != data.IGNORE
            scores.append(logp[b][sel].gather(-1, t[sel][:, None]).mean().item())
        correct += ep["labels"][int(np.argmax(scores))] == ep["answer"]
    return correct / episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/emu2-toy-train")
    parser.add_argument("--steps", type=int, default=1200, help="length of the learning-rate schedule")
    parser.add_argument("--stop-at", type=int, help="end (and publish) at this step, before the schedule's end")
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--save-every", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=500)
    # One thread: on a shared, oversubscribed machine two OpenMP threads wait on each other (measured 2x slower).
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=CHECKPOINT, help="the small checkpoint to write; its loss curves go beside it")
    parser.add_argument("--init-from", help="start from this small checkpoint (phase 2 starts from phase 1's)")
    parser.add_argument("--fresh-llm", action="store_true",
                        help="with --init-from: take only the visual encoder from it; the LLM starts from its seeded "
                             "initialization")
    parser.add_argument("--freeze-vision", action="store_true",
                        help="keep the visual encoder as loaded (project_up still learns)")
    parser.add_argument("--vision-lr-scale", type=float, default=1.0,
                        help="learning rate of the visual encoder and project_up relative to --lr")
    parser.add_argument("--mix", choices=sorted(data.MIXES), default="all", help="task mixture (python/emu2toy/data.py)")
    parser.add_argument("--no-publish", action="store_true", help="leave fixtures/ and docs/ alone (trial runs)")
    parser.add_argument("--class-layer", type=int, default=0,
                        help="train the output of this many LLM layers to name the class at the token before each "
                             "few-shot label (model.losses' class loss; 0: off)")
    parser.add_argument("--class-weight", type=float, default=1.0, help="weight of the class loss")
    parser.add_argument("--embed-init-std", type=float,
                        help=f"a new LLM's embed_tokens drawn from N(0, this), default {model.VOCAB_INIT_STD}; 1.0 is "
                             "PyTorch's own")
    parser.add_argument("--head-init-std", type=float,
                        help=f"a new LLM's lm_head drawn from N(0, this), default {model.VOCAB_INIT_STD}; 0.072 is the "
                             "spread of PyTorch's own")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.workdir, exist_ok=True)

    enc = data.Encoder(load_reference_tokenizer(TOKENIZER), model.N_QUERY)
    pad_id = enc.tokenizer.added["[PAD]"]
    start_llm = None  # the LLM this run continues (None: a new one from the seed)
    if args.init_from:
        start_vision, loaded_llm, start = model.load_checkpoint(args.init_from)
        if start["seed"] != args.seed:
            sys.exit(f"--init-from {args.init_from}: trained with --seed {start['seed']}, this run has {args.seed}")
        if not args.fresh_llm:
            if args.embed_init_std is not None or args.head_init_std is not None:
                sys.exit(f"--embed-init-std/--head-init-std: the LLM comes from --init-from {args.init_from}, drawn "
                         f"at {model.vocab_init_std(start)}; they apply to a new LLM only (--fresh-llm or no "
                         "--init-from)")
            start_llm = loaded_llm
    # The scales the LLM was drawn with: the committed checkpoint keeps only the trained vocabulary rows and rebuilds
    # the others from the seed at these scales (model.checkpoint_state).
    vocab_std = (model.vocab_init_std(start) if start_llm is not None else
                 tuple(model.VOCAB_INIT_STD if std is None else std for std in (args.embed_init_std, args.head_init_std)))
    vision, llm = model.build(args.seed, *vocab_std)
    trained_ids = trained_vocabulary(enc, args.seed)
    if args.init_from:
        vision.load_state_dict(start_vision.state_dict())
    if start_llm is not None:
        llm.load_state_dict(start_llm.state_dict())
    if args.freeze_vision:
        vision.requires_grad_(False)
    frozen_rows = torch.ones(model.VOCAB_SIZE, 1)
    frozen_rows[trained_ids] = 0
    params = dict(llm.named_parameters())
    for name in model.VOCAB_PARAMS:
        params[name].register_hook(lambda g: g.masked_fill(frozen_rows.bool(), 0.0))
    vocab = [params[n] for n in model.VOCAB_PARAMS]
    visual = ([] if args.freeze_vision else list(vision.parameters())) + [llm.project_up.weight]
    rest = [p for n, p in params.items() if n not in model.VOCAB_PARAMS and n != "project_up.weight"]
    # No weight decay on the vocabulary: decay would move the untrained rows away from their seeded values.
    # The visual path may get a lower rate: Adam turns its small gradients into full-size steps, and at the text
    # rate the encoder's weights random-walked until its features were so large that the LLM's RMSNorm flattened
    # their gradient (docs/emu2-toy/README.md).
    optimizer = torch.optim.AdamW([{"params": rest, "weight_decay": 0.01}, {"params": vocab, "weight_decay": 0.0},
                                   {"params": visual, "weight_decay": 0.01, "lr": args.lr * args.vision_lr_scale}],
                                  lr=args.lr, betas=(0.9, 0.98))
    warmup = 100
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * (
        0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(1.0, s / args.steps)))))

    last = os.path.join(args.workdir, "last.pt")
    loss_csv, eval_csv = os.path.join(args.workdir, "loss.csv"), os.path.join(args.workdir, "eval.csv")
    step, elapsed = 0, 0.0
    if os.path.exists(last):
        state = torch.load(last)
        vision.load_state_dict(state["vision"])
        llm.load_state_dict(state["llm"])
        step, elapsed = state["step"], state["elapsed"]
        if step < min(args.steps, args.stop_at or args.steps):
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
        print(f"resumed at step {step}", file=sys.stderr)
    else:
        with open(loss_csv, "w") as f:
            f.write("step,seconds,text_loss,regression_loss,lr\n")
        with open(eval_csv, "w") as f:
            f.write("step,metric,value\n")

    def save():
        torch.save({"vision": vision.state_dict(), "llm": llm.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "step": step, "elapsed": elapsed}, last + ".tmp")
        os.replace(last + ".tmp", last)

    vision.train()
    llm.train()
    window = []
    end = min(args.steps, args.stop_at or args.steps)
    while step < end:
        start = time.time()
        batch = collate(batch_for(enc, args.seed, step, args.batch_size, data.MIXES[args.mix]), pad_id)
        out = model.losses(vision, llm, batch, enc.image_id, args.class_layer)
        loss = (out.get("text", 0.0) + REGRESSION_WEIGHT * out.get("regression", 0.0)
                + args.class_weight * out.get("class", 0.0))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(vision.parameters()) + list(llm.parameters()), 1.0)
        optimizer.step()
        schedule.step()
        step += 1
        elapsed += time.time() - start
        window.append(tuple(float(out.get(k, torch.tensor(float("nan")))) for k in ("text", "regression", "class")))
        if step % 25 == 0:
            text, reg, cls = (mean_present([w[i] for w in window]) for i in range(3))
            window = []
            with open(loss_csv, "a") as f:
                f.write(f"{step},{elapsed:.1f},{text:.5f},{reg:.5f},{schedule.get_last_lr()[0]:.6f}\n")
            extra = f" class {cls:.4f}" if args.class_layer else ""
            print(f"step {step} {elapsed:.0f}s text {text:.4f} regression {reg:.4f}{extra}", file=sys.stderr)
        if step % args.eval_every == 0 or step == end:
            vision.eval()
            llm.eval()
            metrics = dict(zip(("caption loss", "caption loss, images rotated"), image_use(vision, llm, enc, pad_id)))
            for shots in (0, 4):
                metrics[f"{shots}-shot accuracy"] = fewshot_accuracy(vision, llm, enc, shots, 32, seed=999)
            with open(eval_csv, "a") as f:
                for name, value in metrics.items():
                    f.write(f'{step},"{name}",{value:.4f}\n')
            print(f"step {step} " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()), file=sys.stderr)
            vision.train()
            llm.train()
        if step % args.save_every == 0 or step == end:
            save()

    if args.no_publish:
        return
    vision.eval()
    llm.eval()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    torch.save(model.checkpoint_state(vision, llm, args.seed, trained_ids, *vocab_std), args.out)
    stem = os.path.splitext(args.out)[0]
    for name in ("loss.csv", "eval.csv"):
        with open(os.path.join(args.workdir, name)) as src, open(f"{stem}-{name}", "w") as dst:
            dst.write(src.read())
    plot_losses(f"{stem}-loss.csv", f"{stem}-eval.csv", f"{stem}-loss.png")
    print(f"wrote {args.out} and its curves", file=sys.stderr)


if __name__ == "__main__":
    main()
