"""The toy visual world emu2-toy is trained and evaluated on: seeded scenes of 1 to 3 shapes of one kind and one color,
each in its own quadrant of a 64x64 image, with the text made from each scene record (caption, questions and
answers, attribute labels).

    scene = sample_scene(random.Random(seed)); image = render(scene)  # PIL RGB, IMAGE_SIZE x IMAGE_SIZE

Images are drawn 4x larger and box-filtered down, so edges are anti-aliased; the same record always gives the same
pixels. The image side equals the toy encoder's input size (fixtures/models/emu2-toy/manifest.yaml, vision.image_size),
so the real preprocessing (bicubic resize + CLIP normalization) leaves the geometry unchanged.
"""
import math
import random

from PIL import Image, ImageDraw

IMAGE_SIZE = 64
SHAPES = ["circle", "square", "triangle", "star"]
COLORS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 90, 230), "yellow": (235, 215, 40),
          "purple": (150, 60, 200), "orange": (245, 140, 30)}
QUADRANTS = ["top left", "top right", "bottom left", "bottom right"]
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
# Made-up words for the few-shot "fast binding" episodes (Frozen): each episode maps its classes to words drawn here,
# so only the demonstrations in the prompt say which word names which class.
NONSENSE_WORDS = ["dax", "wug", "blicket", "fep", "zorp", "toma", "kiki", "bouba", "gazzer", "moxy", "plim", "rudd",
                  "snerg", "tove", "vork", "yenk", "quib", "lorn", "mib", "pelt", "skree", "fush", "drell", "nubo"]
_SCALE = 4


def sample_scene(rng: random.Random) -> dict:
    count = rng.randint(1, 3)
    return {
        "shape": rng.choice(SHAPES),
        "color": rng.choice(sorted(COLORS)),
        "count": count,
        "quadrants": sorted(rng.sample(range(4), count)),
        # Per object: size in pixels and offset of its centre from the quadrant's centre; background grey level.
        "sizes": [rng.randint(14, 20) for _ in range(count)],
        "offsets": [(rng.randint(-4, 4), rng.randint(-4, 4)) for _ in range(count)],
        "rotations": [rng.uniform(-0.3, 0.3) for _ in range(count)],
        "background": rng.randint(25, 70),
    }


def _polygon(shape: str, cx: float, cy: float, r: float, rotation: float) -> list:
    if shape == "square":
        corners = [math.pi / 4 + k * math.pi / 2 for k in range(4)]
        return [(cx + r * math.cos(a + rotation), cy + r * math.sin(a + rotation)) for a in corners]
    if shape == "triangle":
        return [(cx + r * math.cos(a + rotation), cy + r * math.sin(a + rotation))
                for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    points = []
    for k in range(10):
        radius = r if k % 2 == 0 else r * 0.45
        a = -math.pi / 2 + k * math.pi / 5 + rotation
        points.append((cx + radius * math.cos(a), cy + radius * math.sin(a)))
    return points


def render(scene: dict) -> Image.Image:
    side = IMAGE_SIZE * _SCALE
    g = scene["background"]
    image = Image.new("RGB", (side, side), (g, g, g))
    draw = ImageDraw.Draw(image)
    fill = COLORS[scene["color"]]
    for quadrant, size, (dx, dy), rotation in zip(scene["quadrants"], scene["sizes"], scene["offsets"],
                                                  scene["rotations"]):
        cx = (IMAGE_SIZE / 4 + (quadrant % 2) * IMAGE_SIZE / 2 + dx) * _SCALE
        cy = (IMAGE_SIZE / 4 + (quadrant // 2) * IMAGE_SIZE / 2 + dy) * _SCALE
        r = size / 2 * _SCALE
        if scene["shape"] == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        else:
            draw.polygon(_polygon(scene["shape"], cx, cy, r * (0.85 if scene["shape"] == "square" else 1.0) * 1.2,
                                  rotation), fill=fill)
    return image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BOX)


def plural(shape: str, count: int) -> str:
    return shape if count == 1 else shape + "s"


def caption(scene: dict) -> str:
    """'a red circle in the top left' for one object, else 'two red circles' / 'three blue stars'."""
    if scene["count"] == 1:
        article = "an" if scene["color"][0] in "aeiou" else "a"
        return f"{article} {scene['color']} {scene['shape']} in the {QUADRANTS[scene['quadrants'][0]]}"
    return f"{NUMBER_WORDS[scene['count']]} {scene['color']} {plural(scene['shape'], scene['count'])}"


def questions(scene: dict, rng: random.Random) -> list:
    """(question, answer) pairs about the scene; yes/no questions are balanced by drawing the asked value."""
    shape, color, count = scene["shape"], scene["color"], scene["count"]
    asked_shape = shape if rng.random() < 0.5 else rng.choice([s for s in SHAPES if s != shape])
    asked_color = color if rng.random() < 0.5 else rng.choice([c for c in sorted(COLORS) if c != color])
    pairs = [
        (f"what color is the {shape}?" if count == 1 else f"what color are the {plural(shape, count)}?", color),
        ("what shape is in the picture?", shape),
        ("how many shapes are there?", str(count)),
        (f"is there a {asked_shape}?", "yes" if asked_shape == shape else "no"),
        (f"are the shapes {asked_color}?", "yes" if asked_color == color else "no"),
    ]
    if count == 1:
        pairs.append((f"where is the {shape}?", QUADRANTS[scene["quadrants"][0]]))
    return pairs


def attribute_values(attribute: str) -> list:
    return {"shape": SHAPES, "color": sorted(COLORS), "count": [1, 2, 3]}[attribute]


# The attribute held fixed in a nonsense-label episode about the other one (the episode's images differ only in the
# named attribute, count and placement).
OTHER_ATTRIBUTE = {"shape": "color", "color": "shape"}


def sample_scene_with(rng: random.Random, fixed: dict) -> dict:
    """A scene drawn as sample_scene draws it, redrawn until its attributes equal `fixed` (e.g. {"color": "red"})."""
    while True:
        scene = sample_scene(rng)
        if all(scene[k] == v for k, v in fixed.items()):
            return scene
