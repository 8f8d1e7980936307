"""Trains emu2-toy's visual decoder (python/emu2toy/decoder.py): a VAE, then a UNet conditioned on the FROZEN toy
encoder's visual embeddings, so that the embeddings of a toy-world image decode back to an image of the same
shapes, color, count and quadrants (autoencoding), and the LLM's regressed embeddings to the image a caption
describes (text-to-image).

    nice -n 10 /usr/bin/python3 python/train_toy_decoder.py --encoder fixtures/checkpoints/emu2-toy.pt \
        --workdir /tmp/toy-decoder --out fixtures/checkpoints/emu2-toy-decoder.pt

--encoder takes the toy checkpoint (its "vision" state) or a bare EvaViT state_dict; without it, the seeded initial
encoder of python/emu2toy/model.py (model.build(--seed)) stands in. The decoder checkpoint records the sha256 of the
encoder state it was trained on (encoder_digest), which python/export_toy.py checks against the package's encoder.

Stage 1 (VAE, independent of the encoder) writes WORKDIR/vae.pt and is skipped when that file (or --vae) exists;
stage 2 (UNet) starts afresh. A retrain on a new encoder: the same command with --vae OLD_WORKDIR/vae.pt. One thread (torch.set_num_threads(1)), seeded: the same command gives the same checkpoint. Writes
WORKDIR/{loss.csv,eval.csv} and, beside --out, its curves (-loss.csv, -eval.csv, -loss.png). eval.csv: fraction of
held-out scenes (the first --eval-scenes of fixtures/toy-eval/caption.jsonl's seeds) whose autoencoded image
(Python pipeline, python/emu2ref/golden_diffusion.py) the pixel judge (python/emu2toy/judge.py) finds right.
"""
import argparse
import copy
import os
import random
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from emu2ref.export_diffusion import visual_decoder_section  # noqa: E402
from emu2ref.eva_vit import EvaViT  # noqa: E402
from emu2ref.golden_diffusion import generate, to_uint8  # noqa: E402
from emu2ref.preprocess import preprocess  # noqa: E402
from emu2ref.vae import AutoencoderKLDecoder  # noqa: E402
from emu2ref.tokenizer import load_reference_tokenizer  # noqa: E402
from emu2toy import data, decoder, judge, model, world  # noqa: E402
from emu2toy.plot import plot_decoder_losses  # noqa: E402

CHECKPOINT = os.path.join(ROOT, "fixtures", "checkpoints", "emu2-toy-decoder.pt")
TOKENIZER = os.path.join(ROOT, "fixtures", "models", "emu2-chat-tiny", "tokenizer.json")
NULL_ZERO_IMAGE, NULL_MEAN = 0.1, 0.05
EMA_DECAY = 0.999


def load_encoder(path, seed: int) -> EvaViT:
    if path is None:
        return model.build(seed)[0].eval()
    state = torch.load(path)
    vision = EvaViT(**model.VISION)
    vision.load_state_dict(state["vision"] if "vision" in state else state)
    return vision.eval()


def render(scenes: list) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(world.render(s)) for s in scenes]))


def encoder_pixels(scenes: list) -> torch.Tensor:
    """The runtime's preprocessing (bicubic resize to the encoder size, CLIP normalization)."""
    return torch.from_numpy(np.stack([preprocess(world.render(s), model.VISION["image_size"]) for s in scenes]))


def features_of(vision, pixels: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model.encode_images(vision, pixels[i:i + chunk]) for i in range(0, len(pixels), chunk)])


def null_features(vision) -> torch.Tensor:
    """The runtime's autoencoding null condition: the features of an all-zero normalized image [1,Q,W]."""
    s = model.VISION["image_size"]
    return features_of(vision, torch.zeros(1, 3, s, s))


def regressed_conditions(llm_checkpoint: str, scenes: list):
    """The LLM's regressed visual embeddings for each scene's caption prompt [N,Q,W] (as `emu2 generate "caption"`
    regresses them, python/emu2toy/model.py regress), and for the empty prompt [Q,W] (the runtime's guidance null)."""
    _, llm, _ = model.load_checkpoint(llm_checkpoint)
    enc = data.Encoder(load_reference_tokenizer(TOKENIZER), model.N_QUERY)
    memo = {}

    def of(text: str, bos: bool = True) -> torch.Tensor:
        if text not in memo:
            memo[text] = model.regress(llm, enc.encode(text, bos), enc.img_id)
        return memo[text]

    rows = torch.stack([of(data.chat_text([(world.caption(s), None)])) for s in scenes])
    return rows, of("")


def cosine(step: int, steps: int, warmup: int = 50) -> float:
    return min(1.0, (step + 1) / warmup) * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(1.0, step / steps))))


def log(path: str, row: list) -> None:
    with open(path, "a") as f:
        f.write(",".join(str(v) for v in row) + "\n")


def train_vae(args, loss_csv: str) -> dict:
    encoder, vae, _ = decoder.build(args.seed)
    params = list(encoder.parameters()) + list(vae.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine(s, args.vae_steps))
    generator = torch.Generator().manual_seed(args.seed)
    window, elapsed = [], 0.0
    for step in range(1, args.vae_steps + 1):
        start = time.time()
        rng = random.Random(f"decoder-vae-{args.seed}-{step}")
        images = decoder.images_to_unit(render([world.sample_scene(rng) for _ in range(args.vae_batch)]))
        out = decoder.vae_loss(encoder, vae, images, generator)
        optimizer.zero_grad(set_to_none=True)
        (out["reconstruction"] + decoder.KL_WEIGHT * out["kl"]).backward()
        optimizer.step()
        schedule.step()
        elapsed += time.time() - start
        window.append((float(out["reconstruction"]), float(out["kl"])))
        if step % 25 == 0:
            rec, kl = np.mean(window, axis=0)
            window = []
            lr = schedule.get_last_lr()[0]
            log(loss_csv, ["vae", step, f"{elapsed:.1f}", f"{rec:.6f}", f"{kl:.5f}", f"{lr:.6f}"])
            print(f"vae step {step} {elapsed:.0f}s reconstruction {rec:.5f} kl {kl:.4f}", file=sys.stderr)
    # scaling_factor: 1 / std of the latents the UNet will see (the SD recipe), over images it did not train on.
    with torch.no_grad():
        rng = random.Random(f"decoder-scale-{args.seed}")
        mean, logvar = encoder(decoder.images_to_unit(render([world.sample_scene(rng) for _ in range(1024)])))
        latents = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator)
        # How often the VAE alone keeps what the judge reads (the ceiling of the whole decoder), on held-out scenes.
        scenes = [world.sample_scene(random.Random(f"eval-scene-{i}")) for i in range(100)]
        rebuilt = (vae(encoder(decoder.images_to_unit(render(scenes)))[0]) / 2 + 0.5).clamp(0, 1)
        right = [judge.agreement(s, judge.judge(to_uint8(img))) for s, img in zip(scenes, rebuilt)]
    reconstruction = {k: float(np.mean([r[k] for r in right])) for k in ("color", "shape", "count", "quadrants")}
    print(f"vae reconstructions judged right: {reconstruction}", file=sys.stderr)
    return {"encoder": encoder.state_dict(), "vae": vae.state_dict(), "scaling_factor": float(1.0 / latents.std()),
            "steps": args.vae_steps, "seconds": elapsed, "reconstruction_right": reconstruction}


def autoencode_accuracy(unet, vae, section: dict, vision, scenes: list, null: torch.Tensor) -> dict:
    """Fractions of `scenes` whose autoencoded image (Python pipeline, the package's steps and guidance) the judge
    finds right, per attribute."""
    cond = features_of(vision, encoder_pixels(scenes))
    images = generate(unet, vae, section, cond, null.expand_as(cond), section["num_inference_steps"],
                      section["guidance_scale"], seed=0)["image"]
    right = [judge.agreement(s, judge.judge(to_uint8(img))) for s, img in zip(scenes, images)]
    return {k: float(np.mean([r[k] for r in right])) for k in ("color", "shape", "count", "quadrants")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", help="toy checkpoint or EvaViT state_dict (default: the seeded initial encoder)")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--vae", help="stage 1's result (WORKDIR/vae.pt of an earlier run with this seed): the VAE "
                        "does not depend on the encoder, so a retrain on a new encoder needs only stage 2")
    parser.add_argument("--init-unet", help="start the UNet (and its EMA) from this decoder checkpoint's")
    parser.add_argument("--llm", help="toy checkpoint whose LLM regresses the text-to-image conditions: with it, "
                        "--regressed of the rows are conditioned on the LLM's regression of the scene's caption "
                        "(what `emu2 generate` feeds the UNet) instead of the encoder's features, and the guidance "
                        "null is the regression of the empty prompt")
    parser.add_argument("--regressed", type=float, default=0.5)
    parser.add_argument("--out", default=CHECKPOINT)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--vae-steps", type=int, default=400)
    parser.add_argument("--vae-batch", type=int, default=16)
    parser.add_argument("--unet-steps", type=int, default=500)
    parser.add_argument("--unet-batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--scenes", type=int, default=4000, help="training scenes of the UNet stage")
    parser.add_argument("--eval-every", type=int, default=125)
    parser.add_argument("--eval-scenes", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.workdir, exist_ok=True)
    loss_csv, eval_csv = os.path.join(args.workdir, "loss.csv"), os.path.join(args.workdir, "eval.csv")

    vae_path = args.vae or os.path.join(args.workdir, "vae.pt")
    if not os.path.exists(vae_path):
        with open(loss_csv, "w") as f:
            f.write("stage,step,seconds,loss,kl,lr\n")
        torch.save(train_vae(args, loss_csv), vae_path)
    else:  # stage 2 again: the loss curve keeps stage 1's rows (from the --vae run's workdir) and drops old UNet rows
        with open(os.path.join(os.path.dirname(os.path.abspath(vae_path)), "loss.csv")) as f:
            rows = [line for line in f if not line.startswith("unet,")]
        with open(loss_csv, "w") as f:
            f.writelines(rows)
    stage1 = torch.load(vae_path)
    encoder, vae, unet = decoder.build(args.seed)
    encoder.load_state_dict(stage1["encoder"])
    vae = AutoencoderKLDecoder({**decoder.VAE, "scaling_factor": stage1["scaling_factor"]})
    vae.load_state_dict(stage1["vae"])
    encoder.eval()
    vae.eval()
    scaling = stage1["scaling_factor"]

    vision = load_encoder(args.encoder, args.seed)
    digest = decoder.encoder_digest(vision)
    print(f"encoder sha256 {digest}", file=sys.stderr)
    rng = random.Random(f"decoder-unet-{args.seed}")
    scenes = [world.sample_scene(rng) for _ in range(args.scenes)]
    features, means, stds = [], [], []
    with torch.no_grad():
        for i in range(0, len(scenes), 256):
            chunk = scenes[i:i + 256]
            features.append(features_of(vision, encoder_pixels(chunk)))
            mean, logvar = encoder(decoder.images_to_unit(render(chunk)))
            means.append(mean)
            stds.append(torch.exp(0.5 * logvar))
    features, means, stds = torch.cat(features), torch.cat(means), torch.cat(stds)
    nulls = torch.cat([null_features(vision), features.mean(dim=0, keepdim=True)])
    regressed = None
    if args.llm:
        regressed, nulls[1] = regressed_conditions(args.llm, scenes)
    print(f"encoded {len(scenes)} scenes", file=sys.stderr)

    if args.init_unet:
        unet.load_state_dict({k: v.float() for k, v in torch.load(args.init_unet)["unet"].items()})
    ema = copy.deepcopy(unet).eval()
    unet.train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine(s, args.unet_steps))
    acp = decoder.alphas_cumprod(visual_decoder_section(unet, vae)["scheduler"])
    section = {**visual_decoder_section(ema, vae), "num_inference_steps": decoder.NUM_INFERENCE_STEPS,
               "guidance_scale": decoder.GUIDANCE_SCALE}
    eval_scenes = [world.sample_scene(random.Random(f"eval-scene-{i}")) for i in range(args.eval_scenes)]
    with open(eval_csv, "w") as f:
        f.write("step,color,shape,count,quadrants\n")
    generator = torch.Generator().manual_seed(args.seed + 1)
    window, elapsed = [], 0.0
    for step in range(1, args.unet_steps + 1):
        start = time.time()
        idx = torch.randint(0, len(scenes), (args.unet_batch,), generator=generator)
        latents = (means[idx] + stds[idx] * torch.randn(means[idx].shape, generator=generator)) * scaling
        cond = features[idx].clone()
        # The null conditions classifier-free guidance pushes away from: the runtime's for autoencoding (an all-zero
        # normalized image) and, standing in for the LLM's regression of the empty prompt, the mean embedding.
        draw = torch.rand(args.unet_batch, generator=generator)
        cond[draw < NULL_ZERO_IMAGE] = nulls[0]
        cond[(draw >= NULL_ZERO_IMAGE) & (draw < NULL_ZERO_IMAGE + NULL_MEAN)] = nulls[1]
        if regressed is not None:
            # Text-to-image rows: the UNet learns to draw the scene from what the LLM regresses for its caption (an
            # average over what the caption leaves open: a blend of the encoder's features it never saw otherwise).
            text = torch.rand(args.unet_batch, generator=generator) < args.regressed
            text &= draw >= NULL_ZERO_IMAGE + NULL_MEAN
            cond[text] = regressed[idx[text]]
        loss = decoder.unet_loss(unet, latents, cond, acp, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            decay = min(EMA_DECAY, (1 + step) / (10 + step))
            for e, p in zip(ema.parameters(), unet.parameters()):
                e.mul_(decay).add_(p.detach(), alpha=1 - decay)
        elapsed += time.time() - start
        window.append(float(loss))
        if step % 25 == 0:
            lr = schedule.get_last_lr()[0]
            log(loss_csv, ["unet", step, f"{elapsed:.1f}", f"{np.mean(window):.6f}", "", f"{lr:.6f}"])
            print(f"unet step {step} {elapsed:.0f}s loss {np.mean(window):.5f}", file=sys.stderr)
            window = []
        if step % args.eval_every == 0 or step == args.unet_steps:
            acc = autoencode_accuracy(ema, vae, section, vision, eval_scenes, nulls[:1])
            log(eval_csv, [step] + [f"{acc[k]:.4f}" for k in ("color", "shape", "count", "quadrants")])
            print(f"unet step {step} autoencoding right: {acc}", file=sys.stderr)
            # The checkpoint so far (EMA weights, float16 as the package stores them), to export before the end.
            half = lambda state: {k: v.detach().to(torch.float16).clone() for k, v in state.items()}  # noqa: E731
            torch.save({"format": decoder.FORMAT, "seed": args.seed, "encoder_sha256": digest,
                        "unet_config": decoder.UNET, "vae_config": {**decoder.VAE, "scaling_factor": scaling},
                        "unet": half(ema.state_dict()), "vae": half(vae.state_dict()), "vae_steps": stage1["steps"],
                        "unet_steps": step, "vae_reconstruction_right": stage1["reconstruction_right"],
                        "autoencoding_right": acc}, os.path.join(args.workdir, "decoder.pt"))

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    shutil.copyfile(os.path.join(args.workdir, "decoder.pt"), args.out)
    stem = os.path.splitext(args.out)[0]
    shutil.copyfile(loss_csv, f"{stem}-loss.csv")
    shutil.copyfile(eval_csv, f"{stem}-eval.csv")
    plot_decoder_losses(f"{stem}-loss.csv", f"{stem}-eval.csv", f"{stem}-loss.png")
    print(f"wrote {args.out} and its curves", file=sys.stderr)


if __name__ == "__main__":
    main()
