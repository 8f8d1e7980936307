"""The PyTorch peer of `npm run bench`: the reference implementation (python/emu2ref, standing in for the Python
release of Emu2) timed on the same tiny model, inputs and settings as the TypeScript side.

    /usr/bin/python3 bench/peer_torch.py '<job JSON>'      (or the job JSON on stdin)

Prints one JSON object on stdout: the job's timings plus the process's resident-set sizes, so that the memory of
each side is its own process's. A failure prints {"error": "<one line>"} and exits 1.

Jobs (bench/run.ts builds them):
    {"kind": "probe"}                                          versions and thread counts
    {"kind": "preprocess", "threads", "images", "size", "mean", "std", "warmup", "repeats", "out_dir"}
    {"kind": "visual_encoder", "threads", "package", "vocab_size", "pixels", "n_query", "warmup", "repeats",
     "out_dir"}
    {"kind": "diffusion", "threads", "package", "section", "embeddings", "queries", "steps", "guidance_scale",
     "noise_seed", "warmup", "repeats", "out_dir"}
    {"kind": "tokenize", "tokenizer", "text"}                  the reference tokenizer's ids (bos included)
    {"kind": "llm", "threads", "package", "vocab_size", "eos_token_id", "pad_token_id", "ids", "greedy_new_tokens",
     "num_beams", "beam_new_tokens", "length_penalty", "warmup", "repeats"}
    {"kind": "export_hf_layout", "package", "out"}            the text decoder for the transformers.js peer
    {"kind": "limits", "threads", "m", "k", "n", "read_floats"}   GEMM GFLOP/s and read bandwidth (bench:real)
    {"kind": "standin_llm", "threads", "ids", "num_beams", "new_tokens", "eos_token_id", "pad_token_id"}   generation on bench:real's stand-in

The torch modules are rebuilt as python/build_tiny_packages.py builds the package named by "package" (its seed and
sizes are read from that script), so both sides run the same weights; bench/run.ts checks their outputs agree.
"""
import json
import os
import resource
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))


def peak_rss_kb() -> int:
    # Linux reports ru_maxrss in kilobytes.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def current_rss_kb() -> int:
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") // 1024


def set_threads(count: int) -> None:
    import torch
    # The TypeScript side gives ONNX Runtime `count` intra-op threads and one inter-op thread; torch gets the same.
    torch.set_num_threads(count)
    torch.set_num_interop_threads(1)


def median_ms(samples: list) -> float:
    return statistics.median(samples) * 1000.0


def loaded_blas() -> str:
    """The BLAS library this process loaded (torch calls libblas.so.3; bench/torch_env.ts chooses which)."""
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "blas" in line.split()[-1].rsplit("/", 1)[-1]}
    names = sorted(paths)
    if any("openblas" in p for p in names):
        return "OpenBLAS (" + ", ".join(names) + ")"
    return "reference BLAS (" + ", ".join(names) + ")" if names else "none loaded"


def probe(job: dict) -> dict:
    import numpy
    import PIL
    import torch
    return {"blas": loaded_blas(), "python": sys.version.split()[0], "torch": torch.__version__,
            "numpy": numpy.__version__, "pillow": PIL.__version__, "torch_default_threads": torch.get_num_threads(),
            "torch_parallel_backend": torch.__config__.parallel_info().splitlines()[-1].strip(),
            "torch_mkl": torch.backends.mkl.is_available()}


def run_preprocess(job: dict) -> dict:
    import numpy as np
    from emu2ref.preprocess import load_rgb, preprocess

    # PIL and numpy do this work, but the Python release always runs with torch loaded, so its import (and RSS) is
    # part of the peer's process here as well.
    set_threads(job["threads"])
    baseline = current_rss_kb()
    results = []
    for index, path in enumerate(job["images"]):
        def once():
            return preprocess(load_rgb(path), job["size"], job["mean"], job["std"])
        for _ in range(job["warmup"]):
            once()
        load_times, total_times = [], []
        for _ in range(job["repeats"]):
            start = time.perf_counter()
            image = load_rgb(path)
            loaded = time.perf_counter()
            pixels = preprocess(image, job["size"], job["mean"], job["std"])
            end = time.perf_counter()
            load_times.append(loaded - start)
            total_times.append(end - start)
        out = os.path.join(job["out_dir"], f"preprocess-{index}.f32")
        np.ascontiguousarray(pixels, dtype=np.float32).tofile(out)
        results.append({"image": path, "load_ms": median_ms(load_times), "total_ms": median_ms(total_times),
                        "total_samples_ms": [t * 1000.0 for t in total_times], "output": out})
    return {"images": results, "rss_baseline_kb": baseline}


def run_visual_encoder(job: dict) -> dict:
    import numpy as np
    import torch
    import build_tiny_packages as packages
    from emu2ref.eva_vit import pool_visual_features
    from emu2ref.llama import build_vision_llm

    set_threads(job["threads"])
    baseline = current_rss_kb()
    start = time.perf_counter()
    spec = packages.PACKAGES[job["package"]]
    torch.manual_seed(spec["seed"])
    vision, _ = build_vision_llm({"vision": packages.VISION,
                                  "llm": {**packages.LLM, "vocab_size": job["vocab_size"]}}, spec["seed"])
    build_ms = (time.perf_counter() - start) * 1000.0

    size = packages.VISION["image_size"]
    pixels = torch.from_numpy(np.fromfile(job["pixels"], dtype=np.float32).reshape(1, 3, size, size))

    def once():
        with torch.no_grad():
            return pool_visual_features(vision(pixels), job["n_query"])

    for _ in range(job["warmup"]):
        once()
    times = []
    for _ in range(job["repeats"]):
        start = time.perf_counter()
        features = once()
        times.append(time.perf_counter() - start)
    out = os.path.join(job["out_dir"], "visual-features.f32")
    features.numpy().astype(np.float32).tofile(out)
    return {"build_ms": build_ms, "encode_ms": median_ms(times), "features": out, "rss_baseline_kb": baseline}


def run_diffusion(job: dict) -> dict:
    import numpy as np
    import torch
    import build_tiny_packages as packages
    from emu2ref.export_diffusion import build_visual_decoder
    from emu2ref.golden_diffusion import decode, generate

    set_threads(job["threads"])
    baseline = current_rss_kb()
    start = time.perf_counter()
    width = packages.VISION["width"]
    # build_tiny_packages.py builds the visual decoder from the package's seed + 1.
    unet, vae, _ = build_visual_decoder({"cross_attention_dim": width}, packages.PACKAGES[job["package"]]["seed"] + 1)
    build_ms = (time.perf_counter() - start) * 1000.0

    queries = job["queries"]
    embeddings = np.fromfile(job["embeddings"], dtype=np.float32).reshape(2, 1, queries, width)
    cond, uncond = torch.from_numpy(embeddings[0]), torch.from_numpy(embeddings[1])
    section = job["section"]

    # One step is one period of the denoising loop (UNet on the [cond; uncond] batch, guidance, Euler update):
    # the time between consecutive UNet calls, the same boundary the TypeScript side takes from onStep.
    call_starts = []

    def timed_unet(*args):
        call_starts.append(time.perf_counter())
        return unet(*args)

    def once():
        call_starts.clear()
        return generate(timed_unet, vae, section, cond, uncond, job["steps"], job["guidance_scale"],
                        job["noise_seed"])

    for _ in range(job["warmup"]):
        once()
    totals, step_periods = [], []
    for _ in range(job["repeats"]):
        start = time.perf_counter()
        result = once()
        totals.append(time.perf_counter() - start)
        step_periods.extend(b - a for a, b in zip(call_starts, call_starts[1:]))

    latents = result["latents"]
    for _ in range(job["warmup"]):
        decode(vae, section, latents)
    decode_times = []
    for _ in range(job["repeats"]):
        start = time.perf_counter()
        decode(vae, section, latents)
        decode_times.append(time.perf_counter() - start)

    out = os.path.join(job["out_dir"], "diffusion-image.f32")
    result["image"].numpy().astype(np.float32).tofile(out)
    return {"build_ms": build_ms, "total_ms": median_ms(totals), "total_samples_ms": [t * 1000.0 for t in totals],
            "step_ms": median_ms(step_periods),
            "vae_decode_ms": median_ms(decode_times), "image": out, "image_dims": list(result["image"].shape),
            "rss_baseline_kb": baseline}


def tokenize(job: dict) -> dict:
    from emu2ref.tokenizer import load_reference_tokenizer
    return {"ids": load_reference_tokenizer(job["tokenizer"]).encode(job["text"])}


def run_llm(job: dict) -> dict:
    import torch
    import build_tiny_packages as packages
    from emu2ref.generation import beam_search, greedy
    from emu2ref.llama import build_vision_llm

    set_threads(job["threads"])
    baseline = current_rss_kb()
    start = time.perf_counter()
    spec = packages.PACKAGES[job["package"]]
    _, llm = build_vision_llm({"vision": packages.VISION,
                               "llm": {**packages.LLM, "vocab_size": job["vocab_size"]}}, spec["seed"])
    build_ms = (time.perf_counter() - start) * 1000.0

    eos, pad = job["eos_token_id"], job["pad_token_id"]
    ids = torch.tensor([job["ids"]], dtype=torch.long)
    mask = torch.ones_like(ids)

    def until_eos(tokens):
        # The TypeScript side returns the generated ids without eos (and the padding after it); with batch 1 the
        # reference's row is the sequence, then eos if it ended, then padding to the batch's width.
        return tokens[:tokens.index(eos)] if eos in tokens else tokens

    # Each run embeds the prompt, as the TypeScript side's generateText does; min_new_tokens 0 on both sides.
    def first_token():
        return greedy(llm, llm.embed_tokens(ids), mask, 1, eos, pad)[0].tolist()

    def greedy_ids():
        return until_eos(greedy(llm, llm.embed_tokens(ids), mask, job["greedy_new_tokens"], eos, pad)[0].tolist())

    def beam_ids():
        sequences, _ = beam_search(llm, llm.embed_tokens(ids), mask, job["num_beams"], job["beam_new_tokens"], eos, pad,
                                   length_penalty=job["length_penalty"])
        return until_eos(sequences[0].tolist())

    def timed(once):
        with torch.no_grad():
            for _ in range(job["warmup"]):
                once()
            times = []
            for _ in range(job["repeats"]):
                start = time.perf_counter()
                result = once()
                times.append(time.perf_counter() - start)
        return median_ms(times), result

    first_ms, first = timed(first_token)
    greedy_ms, greedy_out = timed(greedy_ids)
    beam_ms, beam_out = timed(beam_ids)
    return {"build_ms": build_ms, "first_token_ms": first_ms, "first_token": first[0], "greedy_ms": greedy_ms,
            "greedy_ids": greedy_out, "beam_ms": beam_ms, "beam_ids": beam_out, "rss_baseline_kb": baseline}


def run_limits(job: dict) -> dict:
    """The GEMM of bench/real_width.ts (m x k @ k x n) and a streaming read (sum) through PyTorch."""
    import torch
    set_threads(job["threads"])
    m, k, n = job["m"], job["k"], job["n"]
    a = torch.sin(torch.arange(m * k, dtype=torch.float32)).view(m, k)
    b = torch.cos(torch.arange(k * n, dtype=torch.float32)).view(k, n) * 0.01
    gemm = []
    for i in range(3):
        start = time.perf_counter()
        a @ b
        if i >= 1:
            gemm.append(time.perf_counter() - start)
    x = torch.ones(job["read_floats"])
    read = []
    for i in range(7):
        start = time.perf_counter()
        x.sum()
        if i >= 2:
            read.append(time.perf_counter() - start)
    return {"gemm_gflops": 2 * m * k * n / statistics.median(gemm) / 1e9,
            "bandwidth_gb_s": x.numel() * 4 / statistics.median(read) / 1e9, "rss_baseline_kb": current_rss_kb()}


def run_standin_llm(job: dict) -> dict:
    """Greedy or beam search on bench/standin_package.py's weights (rebuilt from its seed), with the same settings
    as bench/real_width.ts: min_new_tokens = max_new_tokens, length penalty 1. Times every llm.decode call: the
    first is the prefill, the periods between the others are the per-token figures (the first one is warm-up)."""
    import torch
    from emu2ref.generation import beam_search, greedy
    from standin_package import standin_modules

    set_threads(job["threads"])
    baseline = current_rss_kb()
    start = time.perf_counter()
    vision, llm = standin_modules()
    del vision
    build_ms = (time.perf_counter() - start) * 1000.0
    spans = []
    decode = llm.decode

    def timed_decode(*args):
        begin = time.perf_counter()
        out = decode(*args)
        spans.append((begin, time.perf_counter()))
        return out

    llm.decode = timed_decode
    ids = torch.tensor([job["ids"]], dtype=torch.long)
    mask = torch.ones_like(ids)
    n = job["new_tokens"]
    with torch.no_grad():
        embeds = llm.embed_tokens(ids)
        if job["num_beams"] == 1:
            out = greedy(llm, embeds, mask, n, job["eos_token_id"], job["pad_token_id"], min_new_tokens=n)[0].tolist()
        else:
            sequences, _ = beam_search(llm, embeds, mask, job["num_beams"], n, job["eos_token_id"],
                                       job["pad_token_id"], length_penalty=1.0, min_new_tokens=n)
            out = sequences[0].tolist()
    periods = [(b[0] - a[0]) * 1000.0 for a, b in zip(spans[1:], spans[2:])][1:]
    return {"build_ms": build_ms, "prefill_ms": (spans[0][1] - spans[0][0]) * 1000.0,
            "per_token_ms": {"median": statistics.median(periods), "min": min(periods), "max": max(periods),
                             "n": len(periods)},
            "ids": out, "rss_baseline_kb": baseline}


def export_hf_layout(job: dict) -> dict:
    """bench/export_hf_layout.py: the package's text decoder in the layout transformers.js loads."""
    import subprocess
    subprocess.run([sys.executable, os.path.join(ROOT, "bench", "export_hf_layout.py"), job["package"], job["out"]],
                   check=True, stdout=subprocess.DEVNULL)
    return {"out": job["out"], "rss_baseline_kb": current_rss_kb()}


JOBS = {"probe": probe, "export_hf_layout": export_hf_layout, "limits": run_limits, "standin_llm": run_standin_llm, "preprocess": run_preprocess, "visual_encoder": run_visual_encoder, "diffusion": run_diffusion,
        "tokenize": tokenize, "llm": run_llm}


def main() -> None:
    text = sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read()
    try:
        job = json.loads(text)
        run = JOBS.get(job.get("kind"))
        if run is None:
            raise ValueError(f"unknown job kind {job.get('kind')!r} (expected one of {', '.join(JOBS)})")
        result = run(job)
    except Exception as err:  # the bench prints this one line and stops
        print(json.dumps({"error": f"{type(err).__name__}: {' '.join(str(err).split())}"}))
        sys.exit(1)
    result["rss_peak_kb"] = peak_rss_kb()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
