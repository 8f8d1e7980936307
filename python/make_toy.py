"""Trains emu2-toy's LLM and visual decoder and exports the package: the recipe (docs/emu2-toy/README.md), one command.

    /usr/bin/python3 python/make_toy.py                       # about an hour on 2 cores; publishes the result
    /usr/bin/python3 python/make_toy.py --no-publish --workdir /tmp/toy   # the same, leaving fixtures/ and docs/ alone

It starts, as Emu2 starts from EVA-CLIP, from a pretrained visual encoder, frozen throughout: by default the one in
fixtures/checkpoints/emu2-toy.pt (docs/emu2-toy/README.md, steps 1-3, has the commands that made it). Two lanes
run side by side, one core each (one thread per process: a step is a chain of small matmuls that a second thread
only slows down):
  LLM lane      4. a new LLM beside the encoder on nonsense-label episodes alone, until it binds labels in context
                5. every task (captions, questions, chat, text-to-image), the episodes kept at a third
                6. polishing, questions weighted up, the episodes kept at a quarter
  decoder lane  features: the VAE (independent of everything else), then the UNet on the encoder's features
                regressed: the UNet also on what the LLM of step 5 regresses for each scene's caption
                final: the same on the final LLM's regression
The decoder lane waits for the LLM lane where it needs its output. Each step is one of the training scripts beside
this one (python/train_toy.py, train_toy_decoder.py), run with the arguments listed in steps() below; its log goes
to WORKDIR/<step>.log. A rerun resumes: a step whose checkpoint exists is skipped, an LLM step cut short goes on
from its last saved state, and a decoder step keeps its finished VAE and trains its UNet again.

Publishing copies the two checkpoints to fixtures/checkpoints/ (emu2-toy.pt, emu2-toy-decoder.pt), every step's curves
to docs/emu2-toy/, and exports fixtures/models/emu2-toy (python/export_toy.py). With --no-publish the package
goes to WORKDIR/package.

Seeded: the same command on the same BLAS gives the same checkpoints. The LLM's steps are 3x faster on OpenBLAS
(`apt-get install libopenblas0-openmp`); where it is installed this command uses it for its own processes only
(LD_LIBRARY_PATH), and says which BLAS it ran on. The committed checkpoints came from OpenBLAS.
"""
import argparse
import os
import shutil
import subprocess
import sys
import threading
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-openmp"
CHECKPOINTS = os.path.join(ROOT, "fixtures", "checkpoints")
CURVES = os.path.join(ROOT, "docs", "emu2-toy")


def steps(w: str, encoder: str) -> dict:
    """Each step: its lane, the steps it needs, its script and arguments, and the checkpoint it writes (in WORKDIR w)."""
    llm = ["python/train_toy.py", "--freeze-vision", "--class-layer", "2", "--batch-size", "16", "--eval-every", "500",
           "--save-every", "250"]
    unet = ["python/train_toy_decoder.py", "--encoder", encoder, "--vae", f"{w}/decoder-features/vae.pt", "--regressed", "0.8",
            "--lr", "1e-3"]
    return {
        # Binding comes from episodes alone, on a new LLM with PyTorch's own scales for its vocabulary matrices and
        # the class loss at layer 2 (README, "Binding"); the schedule is longer than the run so the rate stays up.
        "4-bind": ("llm", [], llm + [
            "--init-from", encoder, "--fresh-llm", "--mix", "episodes-this-is", "--lr", "2e-3", "--steps", "2000",
            "--stop-at", "1500", "--embed-init-std", "1.0", "--head-init-std", "0.072"]),
        "5-everything-bound": ("llm", ["4-bind"], llm + [
            "--init-from", f"{w}/4-bind.pt", "--mix", "everything-bound", "--lr", "1e-3", "--steps", "3000"]),
        "6-polish-bound": ("llm", ["5-everything-bound"], llm + [
            "--init-from", f"{w}/5-everything-bound.pt", "--mix", "polish-bound", "--lr", "1e-3", "--steps", "3000"]),
        "decoder-features": ("decoder", [], [
            "python/train_toy_decoder.py", "--encoder", encoder, "--workdir", f"{w}/decoder-features", "--vae-steps", "1500",
            "--unet-steps", "4000", "--eval-every", "1000"]),
        "decoder-regressed": ("decoder", ["decoder-features", "5-everything-bound"], unet + [
            "--init-unet", f"{w}/decoder-features.pt", "--llm", f"{w}/5-everything-bound.pt", "--unet-steps", "1200",
            "--eval-every", "600"]),
        "decoder-final": ("decoder", ["decoder-regressed", "6-polish-bound"], unet + [
            "--init-unet", f"{w}/decoder-regressed.pt", "--llm", f"{w}/6-polish-bound.pt", "--unet-steps", "1800",
            "--eval-every", "600"]),
    }


def command(name: str, spec: tuple, w: str) -> list:
    """The step's command line: its checkpoint is WORKDIR/<name>.pt, and the training scripts' own work (resumable
    state, curves as they grow) goes to WORKDIR/<name>/ unless the step names it."""
    script = spec[2]
    out = ["--out", f"{w}/{name}.pt"]
    if "--workdir" not in script:
        out += ["--workdir", f"{w}/{name}"]
    return [sys.executable, os.path.join(ROOT, script[0])] + script[1:] + out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/emu2-toy-make")
    parser.add_argument("--encoder", default=os.path.join(CHECKPOINTS, "emu2-toy.pt"),
                        help="the pretrained visual encoder: a toy checkpoint whose encoder to take (its LLM is not "
                             "used); by default the committed one's, which publishing rewrites with the same encoder")
    parser.add_argument("--no-publish", action="store_true", help="leave fixtures/ and docs/ alone")
    args = parser.parse_args()
    w = os.path.abspath(args.workdir)
    os.makedirs(w, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if os.path.exists(os.path.join(OPENBLAS, "libblas.so.3")):
        env["LD_LIBRARY_PATH"] = OPENBLAS + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
        print(f"BLAS: OpenBLAS ({OPENBLAS})", file=sys.stderr)
    else:
        print("BLAS: the system's libblas.so.3 (no OpenBLAS at {OPENBLAS}: `apt-get install libopenblas0-openmp` makes "
              "the LLM's steps about 3x faster; the floats, and so the checkpoints, differ from the committed ones)",
              file=sys.stderr)

    recipe = steps(w, os.path.abspath(args.encoder))
    done = {name: threading.Event() for name in recipe}
    failed = []
    began = time.time()

    def run_lane(lane: str) -> None:
        for name, spec in recipe.items():
            if spec[0] != lane:
                continue
            for need in spec[1]:
                done[need].wait()
            if failed:
                return
            out = f"{w}/{name}.pt"
            if os.path.exists(out):
                print(f"[{time.time() - began:6.0f}s] {name}: {out} exists, skipped", file=sys.stderr)
                done[name].set()
                continue
            cmd = command(name, spec, w)
            print(f"[{time.time() - began:6.0f}s] {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
            start = time.time()
            with open(f"{w}/{name}.log", "w") as log:
                rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
            if rc != 0:
                failed.append(f"{name} exited with {rc} (its log: {w}/{name}.log)")
                for event in done.values():
                    event.set()
                return
            print(f"[{time.time() - began:6.0f}s] {name}: done in {(time.time() - start) / 60:.1f} min",
                  file=sys.stderr, flush=True)
            done[name].set()

    lanes = [threading.Thread(target=run_lane, args=(lane,)) for lane in ("llm", "decoder")]
    for lane in lanes:
        lane.start()
    for lane in lanes:
        lane.join()
    if failed:
        sys.exit(f"make_toy: {failed[0]}")
    print(f"trained in {(time.time() - began) / 60:.1f} min", file=sys.stderr)

    llm, dec = f"{w}/6-polish-bound.pt", f"{w}/decoder-final.pt"
    if args.no_publish:
        export = [sys.executable, os.path.join(HERE, "export_toy.py"), "--checkpoint", llm, "--decoder", dec,
                  "--out", f"{w}/package"]
    else:
        # Saved again rather than copied: torch.save names its archive after the file, so the committed bytes depend
        # only on the tensors, not on the work folder's names.
        for src, name in ((llm, "emu2-toy.pt"), (dec, "emu2-toy-decoder.pt")):
            torch.save(torch.load(src), os.path.join(CHECKPOINTS, name))
        os.makedirs(CURVES, exist_ok=True)
        for name in recipe:
            for suffix in ("-loss.csv", "-eval.csv", "-loss.png"):
                if os.path.exists(f"{w}/{name}{suffix}"):
                    shutil.copyfile(f"{w}/{name}{suffix}", os.path.join(CURVES, name + suffix))
        export = [sys.executable, os.path.join(HERE, "export_toy.py")]
    subprocess.run(export, cwd=ROOT, env=env, check=True)
    print(f"done in {(time.time() - began) / 60:.1f} min", file=sys.stderr)


if __name__ == "__main__":
    main()
