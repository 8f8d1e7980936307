"""Training and evaluation sequences of the toy world in the text formats the emu2 runtime builds.

The toy package's template is Emu2-Chat's (src/prompt/render.ts): `<system> [USER]: <content> [ASSISTANT]:`, later
turns `</s>[USER]: ` after an answer; images are `[<IMG_PLH>]`, expanded to `[IMG]` + n_query `<image>` + `[/IMG]`.
A sample is the prompt's token ids (with bos, as the tokenizer makes them) followed by the answer's own ids (encoded
without bos, so it starts with the dummy-prefix piece exactly as a continuation scored by the runtime does) and `</s>`.

Tasks (Emu2's unified objective at toy scale): captioning, VQA (plain and the paper's k-shot template), two-turn chat,
few-shot episodes with nonsense labels drawn per episode, and text-to-image, where the hidden state at `[IMG]` and at
each `<image>` regresses the next visual embedding.
"""
import random
from functools import partial

from . import world
from emu2ref.tokenizer import IMAGE_PLACEHOLDER

CAPTION_PROMPT = "Describe the image in details:"  # the caption command's default (src/cli/caption.ts)
VQA_ZERO_SHOT = "based on the picture, answer in one word or phrase. {q} short answer:"  # the Emu2 paper's 0-shot VQA prompt
VQA_SHOT = "based on the picture, {q} short answer:"
CLASSIFY_DEMO = "This is a {label}. "
CLASSIFY_QUERY = "What is this?"
# The toy's own system message (its manifest's prompt.system_message): short, because every chat sample carries it.
SYSTEM_MESSAGE = "You are emu2-toy."
IGNORE = -100
EOS = 2


def chat_text(turns: list, system: str = SYSTEM_MESSAGE) -> str:
    """turns: [(user_text, assistant_text or None for the last)] -> the chat template's text up to ` [ASSISTANT]:`."""
    text = system
    for i, (user, answer) in enumerate(turns):
        text += (" [USER]: " if i == 0 else "</s>[USER]: ") + user + " [ASSISTANT]:"
        if answer is not None:
            text += " " + answer
    return text


class Encoder:
    """Token ids of prompt and answer texts with the package tokenizer (emu2ref.tokenizer, which the TypeScript
    tokenizer matches), memoized: the toy world's texts repeat."""

    def __init__(self, tokenizer, n_query: int):
        self.tokenizer = tokenizer
        self.n_query = n_query
        self.cache = {}
        self.image_id = tokenizer.added["<image>"]
        self.img_id = tokenizer.added["[IMG]"]
        self.end_img_id = tokenizer.added["[/IMG]"]

    def encode(self, text: str, add_bos: bool) -> list:
        key = (text, add_bos)
        if key not in self.cache:
            expanded = self.tokenizer.expand_image_placeholders(text, self.n_query)
            self.cache[key] = self.tokenizer.encode(expanded, add_bos=add_bos)
        return self.cache[key]

    def sample(self, prompt: str, answer: str, scenes: list, task: str) -> dict:
        prompt_ids = self.encode(prompt, True)
        answer_ids = self.encode(answer, False) + [EOS]
        ids = prompt_ids + answer_ids
        # targets[t] is the token predicted at position t (the next one), IGNORE where no text loss applies.
        targets = [IGNORE] * (len(prompt_ids) - 1) + answer_ids + [IGNORE]
        return {"ids": ids, "targets": targets, "scenes": scenes, "regress": [], "task": task, "classes": []}

    def prefix_ids(self, text: str) -> list:
        """Token ids (with bos) of a prefix of a sample's prompt; not memoized, since the prefixes of random episodes
        seldom repeat and the memo would grow with every sample."""
        return self.tokenizer.encode(self.tokenizer.expand_image_placeholders(text, self.n_query), add_bos=True)

    def supervise(self, sample: dict, before: str, through: str) -> None:
        """Adds the text loss on the tokens of prompt text `through` beyond `before` (both prefixes of the sample's
        prompt), when they tokenize as the same ids inside the whole prompt (a piece merging across the boundary
        would not: then nothing is added)."""
        ids_before, ids = self.prefix_ids(before), self.prefix_ids(through)
        if ids[:len(ids_before)] != ids_before or sample["ids"][:len(ids)] != ids:
            return
        for position in range(len(ids_before), len(ids)):
            sample["targets"][position - 1] = ids[position]

    def mark_class(self, sample: dict, before: str, value: str) -> None:
        """The auxiliary class target (model.losses' "class" loss): at the last token of prompt text `before` (a
        prefix of the sample's prompt, the token from which the next label is predicted), the first piece of the
        class's own word (`value`: "red", "circle"). Nothing is added when `before` does not tokenize as the same ids
        inside the whole prompt."""
        ids = self.prefix_ids(before)
        if sample["ids"][:len(ids)] != ids:
            return
        sample["classes"].append((len(ids) - 1, self.encode(value, False)[0]))

    def image_sample(self, prompt: str, scene: dict) -> dict:
        """Text-to-image: prompt, then `[IMG]` and the image's n_query `<image>` rows; the hidden state at `[IMG]`
        regresses visual embedding 0 and at `<image>` number i embedding i+1 (emu/emu.py generate_image)."""
        prompt_ids = self.encode(prompt, True)
        ids = prompt_ids + [self.img_id] + [self.image_id] * self.n_query + [self.end_img_id]
        start = len(prompt_ids)
        regress = [(start + q, q) for q in range(self.n_query)]
        return {"ids": ids, "targets": [IGNORE] * len(ids), "scenes": [scene], "regress": regress, "task": "t2i",
                "classes": []}


def caption_sample(enc: Encoder, rng: random.Random) -> dict:
    scene = world.sample_scene(rng)
    return enc.sample(chat_text([(IMAGE_PLACEHOLDER + CAPTION_PROMPT, None)]), world.caption(scene), [scene],
                      "caption")


def vqa_sample(enc: Encoder, rng: random.Random) -> dict:
    scene = world.sample_scene(rng)
    question, answer = rng.choice(world.questions(scene, rng))
    style = rng.random()
    if style < 0.4:
        return enc.sample(chat_text([(IMAGE_PLACEHOLDER + question, None)]), answer, [scene], "vqa")
    if style < 0.7:
        user = IMAGE_PLACEHOLDER + VQA_ZERO_SHOT.format(q=question)
        return enc.sample(chat_text([(user, None)]), answer, [scene], "vqa")
    # The paper's k-shot VQA prompt: demonstrations with their answers joined by ". " ahead of the query.
    scenes, parts = [], []
    for _ in range(rng.randint(1, 3)):
        demo = world.sample_scene(rng)
        q, a = rng.choice(world.questions(demo, rng))
        parts.append(IMAGE_PLACEHOLDER + VQA_SHOT.format(q=q) + " " + a)
        scenes.append(demo)
    user = ". ".join(parts) + ". " + IMAGE_PLACEHOLDER + VQA_SHOT.format(q=question)
    return enc.sample(chat_text([(user, None)]), answer, scenes + [scene], "vqa")


def chat_sample(enc: Encoder, rng: random.Random) -> dict:
    scene = world.sample_scene(rng)
    (q1, a1), (q2, a2) = rng.sample(world.questions(scene, rng), 2)
    first = (IMAGE_PLACEHOLDER + q1, a1) if rng.random() < 0.5 else (IMAGE_PLACEHOLDER + "What is in this image?",
                                                                      world.caption(scene) + ".")
    return enc.sample(chat_text([first, (q2, None)]), a2, [scene], "chat")


def episode(rng: random.Random, shots: int, ways: int, attribute: str, balanced: bool = True) -> dict:
    """A few-shot nonsense-label episode: `ways` values of `attribute`, each named by a nonsense word drawn for this
    episode; `shots` demonstrations, in random order, and one query scene of a class they show. Balanced (Frozen's
    n-way k-shot, as evaluated): the demonstrations cycle through the classes, so every class is shown once before any
    twice. Not balanced: each demonstration's class drawn on its own. Training wants the latter: in a balanced
    episode the counts alone say which labels can come next (the ones shown fewest times so far), a text-only
    shortcut that a model trained on balanced episodes learned instead of looking at the images
    (docs/emu2-toy/README.md, "Runs").

    The other attribute is one value for the whole episode: with both varying, "red circle = dax, blue star = wug,
    query: red star" would have no right answer (Frozen's fast-binding tasks name one kind of thing per episode)."""
    other = world.OTHER_ATTRIBUTE[attribute]
    fixed = {other: rng.choice(world.attribute_values(other))}
    values = rng.sample(world.attribute_values(attribute), ways)
    words = rng.sample(world.NONSENSE_WORDS, ways)
    if balanced:
        shown = list(range(ways))
        rng.shuffle(shown)
        demo_classes = [shown[i % ways] for i in range(shots)]
        rng.shuffle(demo_classes)
    else:
        demo_classes = [rng.randrange(ways) for _ in range(shots)]
    query_class = rng.choice(sorted(set(demo_classes))) if shots else rng.randrange(ways)

    def scene_of(cls):
        return world.sample_scene_with(rng, {**fixed, attribute: values[cls]})

    return {"attribute": attribute, "values": values, "labels": words, "fixed": fixed,
            "demos": [(scene_of(c), words[c]) for c in demo_classes],
            "query": scene_of(query_class), "answer": words[query_class]}


def episode_segments(ep: dict, style: str = "this-is") -> list:
    """The user content of an episode (no chat wrapping) as (text, is_label) pieces. "this-is":
    `[img]This is a dax. ... [img]What is this?`; "vqa": the paper's k-shot template with "what is this?" as the
    question."""
    if style == "this-is":
        before, after = CLASSIFY_DEMO.split("{label}")
        query = CLASSIFY_QUERY
    else:
        before, after = VQA_SHOT.format(q="what is this?") + " ", ". "
        query = VQA_SHOT.format(q="what is this?")
    segments = []
    for _, word in ep["demos"]:
        segments += [(IMAGE_PLACEHOLDER + before, False), (word, True), (after, False)]
    return segments + [(IMAGE_PLACEHOLDER + query, False)]


def episode_prompt(ep: dict, style: str = "this-is") -> str:
    return "".join(text for text, _ in episode_segments(ep, style))


def fewshot_sample(enc: Encoder, rng: random.Random, shots_range: tuple = (1, 8), balanced: bool = True,
                   style: str = None) -> dict:
    """A plain few-shot episode in one user turn, its answer the query's label; `style` "this-is" or "vqa"
    (episode_segments), else drawn per sample (60% "this-is")."""
    ways = rng.choice([2, 3, 4, 4])
    shots = rng.randint(*shots_range)
    ep = episode(rng, shots, ways, rng.choice(["shape", "color"]), balanced)
    style = style or ("this-is" if rng.random() < 0.6 else "vqa")
    segments = episode_segments(ep, style)
    prompt = chat_text([("".join(text for text, _ in segments), None)])
    sample = enc.sample(prompt, ep["answer"], [s for s, _ in ep["demos"]] + [ep["query"]], "fewshot")
    supervise_repeated_labels(enc, sample, prompt, segments)
    mark_label_classes(enc, sample, prompt, segments, ep)
    enc.mark_class(sample, prompt, class_value(ep, ep["answer"]))
    return sample


def class_value(ep: dict, label: str) -> str:
    """The attribute value (the class's own word) an episode's nonsense label names."""
    return ep["values"][ep["labels"].index(label)]


def demonstration_labels(prompt: str, segments: list):
    """Each demonstration label of the first user turn (`segments`, which starts the prompt after the system message)
    as (where it starts in `prompt`, its text), in order."""
    at = prompt.index(" [USER]: ") + len(" [USER]: ")
    for text, is_label in segments:
        if is_label:
            yield at, text
        at += len(text)


def mark_label_classes(enc: Encoder, sample: dict, prompt: str, segments: list, ep: dict) -> None:
    """The auxiliary class target before every demonstration label: the token the label is predicted from names the
    class the image shows."""
    for at, text in demonstration_labels(prompt, segments):
        enc.mark_class(sample, prompt[:at].rstrip(" "), class_value(ep, text))


def supervise_repeated_labels(enc: Encoder, sample: dict, prompt: str, segments: list) -> None:
    """Emu2's objective puts the loss on the text of the whole interleaved sequence. In an episode the text worth
    learning is each demonstration label whose class was shown before: predictable only by binding it to the image
    (a label's first showing is a random word, and the template is learned from the answers)."""
    seen = set()
    for at, text in demonstration_labels(prompt, segments):
        if text in seen:
            # The space before the word belongs to its first piece ("▁dax"), as in the whole prompt.
            enc.supervise(sample, prompt[:at].rstrip(" "), prompt[:at + len(text)])
        seen.add(text)


def fewshot_chat_sample(enc: Encoder, rng: random.Random, shots_range: tuple = (4, 10),
                        queries: tuple = (1, 4), balanced: bool = True) -> dict:
    """A "this-is" episode whose user then asks about further images of the shown classes, one chat turn each
    (`[img]What is this? [ASSISTANT]: dax</s>[USER]: [img]What is this? [ASSISTANT]: wug ...`). Every answer sits
    where fewshot-eval's answer sits (after `What is this? [ASSISTANT]:`), so an episode teaches that position
    several times instead of once; repeated demonstration labels are supervised as in fewshot_sample."""
    ways = rng.choice([2, 3, 4, 4])
    ep = episode(rng, rng.randint(*shots_range), ways, rng.choice(["shape", "color"]), balanced)
    shown = sorted({ep["labels"].index(word) for _, word in ep["demos"]})
    extra = []
    for _ in range(rng.randint(*queries) - 1):
        cls = rng.choice(shown)
        extra.append((world.sample_scene_with(rng, {**ep["fixed"], ep["attribute"]: ep["values"][cls]}),
                      ep["labels"][cls]))
    segments = episode_segments(ep, "this-is")
    turns = [("".join(text for text, _ in segments), ep["answer"])]
    turns += [(IMAGE_PLACEHOLDER + CLASSIFY_QUERY, word) for _, word in extra]
    prompt = chat_text(turns[:-1] + [(turns[-1][0], None)])
    sample = enc.sample(prompt, turns[-1][1], [s for s, _ in ep["demos"]] + [ep["query"]] + [s for s, _ in extra],
                        "fewshot")
    # Earlier turns' answers: the text up to each ` [ASSISTANT]:` and through its answer word.
    at = 0
    for user, answer in turns[:-1]:
        at = prompt.index(" [ASSISTANT]:", prompt.index(user, at)) + len(" [ASSISTANT]:")
        enc.supervise(sample, prompt[:at], prompt[:at + 1 + len(answer)])
        enc.mark_class(sample, prompt[:at], class_value(ep, answer))
    supervise_repeated_labels(enc, sample, prompt, segments)
    mark_label_classes(enc, sample, prompt, segments, ep)
    enc.mark_class(sample, prompt, class_value(ep, turns[-1][1]))
    return sample


def t2i_sample(enc: Encoder, rng: random.Random) -> dict:
    scene = world.sample_scene(rng)
    # An empty prompt (`<s>[IMG]`) is the classifier-free guidance null condition: it learns the average image.
    if rng.random() < 0.1:
        return enc.image_sample("", scene)
    return enc.image_sample(chat_text([(world.caption(scene), None)]), scene)


# The episodes that bind nonsense labels, alone and kept in every later mix of the committed recipe: unbalanced, 4 to
# 10 demonstrations, in the "This is a dax." style.
THIS_IS_EPISODE = partial(fewshot_sample, shots_range=(4, 10), balanced=False, style="this-is")

MIXES = {
    "all": [(caption_sample, 0.15), (vqa_sample, 0.2), (chat_sample, 0.05), (fewshot_sample, 0.5), (t2i_sample, 0.1)],
    # Grounding first: only texts that need the image. With few-shot episodes and text-to-image in the mix from the
    # start, the LLM settled on the text priors and ignored the image (docs/emu2-toy/README.md).
    "grounding": [(caption_sample, 0.5), (vqa_sample, 0.5)],
    # After grounding, with the encoder frozen: text-to-image regression (Emu2-Gen's task, what `emu2 generate`
    # runs) beside the grounding texts, so captions and answers stay as they were while the LLM learns to regress
    # the visual embeddings of the image a caption describes.
    "text-to-image": [(caption_sample, 0.3), (vqa_sample, 0.3), (t2i_sample, 0.4)],
    # Polishing after text-to-image, questions weighted up (the held-out VQA misses were counts and the quadrant of a
    # single shape): step 7 of the recipe (docs/emu2-toy/README.md).
    "polish": [(caption_sample, 0.2), (vqa_sample, 0.5), (t2i_sample, 0.3)],
    # The in-context binding attempt after all of the above (encoder frozen; docs/emu2-toy/README.md, "Runs"): mostly
    # nonsense-label episodes, with enough captions, questions and text-to-image samples that those hold.
    "binding": [(caption_sample, 0.1), (vqa_sample, 0.1), (fewshot_sample, 0.7), (t2i_sample, 0.1)],
    # The same with longer episodes (6 to 16 demonstrations): a label is supervised only where its class was shown
    # before, so an 8-demonstration 4-way episode carries few such labels; 16 demonstrations carry several times as
    # many per sequence for a sequence about twice as long.
    "binding-long": [(caption_sample, 0.1), (vqa_sample, 0.1), (partial(fewshot_sample, shots_range=(6, 16)), 0.7),
                     (t2i_sample, 0.1)],
    # Episodes alone, 4 to 10 demonstrations (docs/emu2-toy/README.md, "Runs").
    "episodes": [(partial(fewshot_sample, shots_range=(4, 10)), 1.0)],
    "episodes-chat": [(fewshot_chat_sample, 1.0)],
    # The two above learned a text-only shortcut of balanced episodes (episode()): the same with each demonstration's
    # class drawn on its own, where only the images say which label comes.
    "episodes-chat-random": [(partial(fewshot_chat_sample, balanced=False), 1.0)],
    # Binding with the auxiliary class target (train_toy.py --class-layer; docs/emu2-toy/README.md, "Binding"):
    # episodes with each demonstration's class drawn on its own, as chats and as plain prompts, beside enough
    # captions, questions and text-to-image samples that those hold.
    "binding-class": [(caption_sample, 0.1), (vqa_sample, 0.15), (t2i_sample, 0.1),
                      (partial(fewshot_chat_sample, balanced=False), 0.4),
                      (partial(fewshot_sample, shots_range=(4, 10), balanced=False), 0.25)],
    # The mix of the first run that bound labels (docs/emu2-toy/README.md, "Binding"): unbalanced plain episodes in
    # the "This is a dax." style alone, on a fresh LLM with PyTorch's vocabulary initialization and the class loss.
    "episodes-this-is": [(THIS_IS_EPISODE, 1.0)],
    # After "episodes-this-is" has bound labels: every task, the episodes kept at a third so the binding holds while
    # the LLM learns to caption, answer and regress (docs/emu2-toy/README.md, "Recipe").
    "everything-bound": [(caption_sample, 0.2), (vqa_sample, 0.25), (chat_sample, 0.05), (t2i_sample, 0.15),
                         (THIS_IS_EPISODE, 0.35)],
    # Polishing after "everything-bound", questions weighted up (its held-out VQA stayed under 80%), episodes kept.
    "polish-bound": [(caption_sample, 0.15), (vqa_sample, 0.45), (t2i_sample, 0.15), (THIS_IS_EPISODE, 0.25)],
}


def training_sample(enc: Encoder, rng: random.Random, mix=None) -> dict:
    builders, weights = zip(*(mix or MIXES["all"]))
    return rng.choices(builders, weights)[0](enc, rng)
