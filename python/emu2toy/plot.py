"""Loss curves as a PNG drawn with PIL (matplotlib is not among the project's Python dependencies)."""
import csv
import math

from PIL import Image, ImageDraw

_W, _H, _PAD = 900, 320, 50
_COLORS = [(200, 40, 40), (40, 90, 200), (30, 150, 60), (150, 60, 200)]


def _panel(draw, top: int, title: str, series: dict, log: bool) -> None:
    xs = [x for points in series.values() for x, _ in points]
    ys = [y for points in series.values() for _, y in points if not math.isnan(y)]
    if not xs or not ys:
        return
    f = (lambda v: math.log10(max(v, 1e-6))) if log else (lambda v: v)
    x0, x1 = 0, max(xs)
    y0, y1 = min(f(y) for y in ys), max(f(y) for y in ys)
    if y1 == y0:
        y1 = y0 + 1
    left, right, low, high = _PAD, _W - 20, top + _H - 30, top + 30

    def at(x, y):
        return (left + (right - left) * (x - x0) / max(1, x1 - x0), low - (low - high) * (f(y) - y0) / (y1 - y0))

    draw.rectangle([left, high, right, low], outline=(0, 0, 0))
    draw.text((left, top + 8), title, fill=(0, 0, 0))
    draw.text((left - 45, high - 5), f"{10 ** y1 if log else y1:.3g}", fill=(0, 0, 0))
    draw.text((left - 45, low - 5), f"{10 ** y0 if log else y0:.3g}", fill=(0, 0, 0))
    draw.text((right - 60, low + 5), f"step {x1}", fill=(0, 0, 0))
    for i, (name, points) in enumerate(series.items()):
        color = _COLORS[i % len(_COLORS)]
        line = [at(x, y) for x, y in points if not math.isnan(y)]
        if len(line) > 1:
            draw.line(line, fill=color, width=2)
        for x, y in line:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)
        draw.text((right - 220, high + 8 + 14 * i), name, fill=color)


def plot_losses(loss_csv: str, eval_csv: str, out_png: str) -> None:
    with open(loss_csv) as f:
        rows = list(csv.DictReader(f))
    with open(eval_csv) as f:
        evals = list(csv.DictReader(f))
    image = Image.new("RGB", (_W, 2 * _H), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    by_metric = {}
    for r in evals:
        by_metric.setdefault(r["metric"], []).append((int(r["step"]), float(r["value"])))
    losses = {
        "text cross-entropy": [(int(r["step"]), float(r["text_loss"])) for r in rows],
        "visual embedding regression (MSE)": [(int(r["step"]), float(r["regression_loss"])) for r in rows],
    }
    losses.update({f"held-out {k}": v for k, v in by_metric.items() if k.startswith("caption loss")})
    _panel(draw, 0, "training loss (log scale)", losses, log=True)
    accuracy = {f"{k} (nonsense labels)": v for k, v in by_metric.items() if k.endswith("accuracy")}
    _panel(draw, _H, "held-out 4-way few-shot accuracy (chance 0.25)", accuracy, log=False)
    image.save(out_png)


def plot_decoder_losses(loss_csv: str, eval_csv: str, out_png: str) -> None:
    """The visual decoder's curves (python/train_toy_decoder.py): VAE reconstruction and UNet noise-prediction MSE,
    and the held-out autoencoding accuracy per attribute."""
    with open(loss_csv) as f:
        rows = list(csv.DictReader(f))
    with open(eval_csv) as f:
        evals = list(csv.DictReader(f))
    image = Image.new("RGB", (_W, 3 * _H), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for i, (stage, title) in enumerate([("vae", "VAE pixel reconstruction, weighted MSE (log scale)"),
                                        ("unet", "UNet noise-prediction MSE (log scale)")]):
        points = [(int(r["step"]), float(r["loss"])) for r in rows if r["stage"] == stage]
        _panel(draw, i * _H, title, {f"{stage} loss": points}, log=True)
    _panel(draw, 2 * _H, "held-out autoencoding: fraction judged right", {
        name: [(int(r["step"]), float(r[name])) for r in evals] for name in ("color", "shape", "count", "quadrants")
    }, log=False)
    image.save(out_png)
