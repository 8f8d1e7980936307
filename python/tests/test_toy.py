"""emu2-toy: the toy world and the training texts are deterministic and in the runtime's formats.
    cd python && /usr/bin/python3 -m unittest tests.test_toy"""
import os
import random
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from emu2ref.tokenizer import load_reference_tokenizer  # noqa: E402
from emu2toy import data, model, world  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENIZER = os.path.join(ROOT, "fixtures", "models", "emu2-chat-tiny", "tokenizer.json")


class ToyWorldTest(unittest.TestCase):
    def test_scenes_and_images_are_deterministic(self):
        a, b = world.sample_scene(random.Random(5)), world.sample_scene(random.Random(5))
        self.assertEqual(a, b)
        self.assertTrue(np.array_equal(np.asarray(world.render(a)), np.asarray(world.render(b))))
        self.assertEqual(world.render(a).size, (model.VISION["image_size"],) * 2)

    def test_rendered_shape_has_the_scene_color_in_its_quadrant(self):
        scene = {"shape": "square", "color": "blue", "count": 1, "quadrants": [1], "sizes": [18], "offsets": [(0, 0)],
                 "rotations": [0.0], "background": 40}
        pixels = np.asarray(world.render(scene)).astype(int)
        self.assertEqual(tuple(pixels[16, 48]), world.COLORS["blue"])  # row 16, column 48: the top right quadrant
        self.assertEqual(tuple(pixels[48, 16]), (40, 40, 40))
        self.assertEqual(world.caption(scene), "a blue square in the top right")

    def test_episode_demonstrations_cycle_through_the_classes(self):
        ep = data.episode(random.Random(3), shots=8, ways=4, attribute="shape")
        labels = [w for _, w in ep["demos"]]
        self.assertEqual(sorted(labels), sorted(ep["labels"] * 2))
        for scene, word in ep["demos"]:
            self.assertEqual(scene["shape"], ep["values"][ep["labels"].index(word)])
        self.assertEqual(ep["query"]["shape"], ep["values"][ep["labels"].index(ep["answer"])])
        # Only the named attribute tells the classes apart: the other one is the same in every image.
        self.assertEqual({s["color"] for s, _ in ep["demos"]} | {ep["query"]["color"]}, {ep["fixed"]["color"]})

    def test_unbalanced_episode_draws_each_class_on_its_own_and_queries_a_shown_one(self):
        counts = set()
        for seed in range(30):
            ep = data.episode(random.Random(seed), shots=8, ways=4, attribute="color", balanced=False)
            labels = [w for _, w in ep["demos"]]
            self.assertIn(ep["answer"], labels)
            for scene, word in ep["demos"]:
                self.assertEqual(scene["color"], ep["values"][ep["labels"].index(word)])
            counts.add(tuple(sorted(labels.count(w) for w in ep["labels"])))
        # Balanced, 8 of 4 classes is always two each; drawn on their own, the counts vary.
        self.assertGreater(len(counts), 3)
        self.assertNotEqual(counts, {(2, 2, 2, 2)})

    def test_episode_supervises_the_labels_shown_before_and_the_answer(self):
        enc = data.Encoder(load_reference_tokenizer(TOKENIZER), model.N_QUERY)
        for seed in range(20):
            rng = random.Random(seed)
            sample = data.fewshot_sample(enc, rng)
            rng = random.Random(seed)  # the same draws again, for the episode the sample was made from
            ways, shots = rng.choice([2, 3, 4, 4]), rng.randint(1, 8)
            ep = data.episode(rng, shots, ways, rng.choice(["shape", "color"]))
            words = [w for _, w in ep["demos"]]
            repeats = [w for i, w in enumerate(words) if w in words[:i]]
            expected = [enc.encode(w, False) for w in repeats] + [enc.encode(ep["answer"], False) + [data.EOS]]
            supervised = [t for t in sample["targets"] if t != data.IGNORE]
            self.assertEqual(supervised, [t for ids in expected for t in ids], f"seed {seed}")
            for position, target in enumerate(sample["targets"]):
                if target != data.IGNORE:
                    self.assertEqual(sample["ids"][position + 1], target)

    def test_chat_episode_supervises_repeated_labels_then_every_answer_in_its_turn(self):
        enc = data.Encoder(load_reference_tokenizer(TOKENIZER), model.N_QUERY)
        answer_prefix = enc.encode("What is this? [ASSISTANT]:", False)[-4:]
        for seed in range(20):
            sample = data.fewshot_chat_sample(enc, random.Random(seed))
            ids, targets = sample["ids"], sample["targets"]
            self.assertEqual(ids.count(enc.image_id), len(sample["scenes"]) * model.N_QUERY, f"seed {seed}")
            # Every answer: the token after each ` [ASSISTANT]:` is supervised, and the answers name classes of the
            # demonstrations (the words of the first turn).
            turns = [t for t in range(len(ids)) if ids[t - 3:t + 1] == answer_prefix]
            demo_text = enc.tokenizer.decode(ids[:turns[0]])
            # One turn per query image: 1 to 4 of them after the demonstrations.
            self.assertEqual(len(turns), len(sample["scenes"]) - demo_text.count("This is a "), f"seed {seed}")
            self.assertTrue(1 <= len(turns) <= 4)
            for t in turns:
                self.assertEqual(targets[t], ids[t + 1], f"seed {seed}: answer after position {t} not supervised")
            for t in turns:
                word = enc.tokenizer.decode(ids[t + 1:ids.index(data.EOS, t)]).strip()
                self.assertIn(f"This is a {word}.", demo_text, f"seed {seed}")
            for position, target in enumerate(targets):
                if target != data.IGNORE:
                    self.assertEqual(ids[position + 1], target)

    def test_samples_are_prompt_ids_then_answer_ids_then_eos(self):
        enc = data.Encoder(load_reference_tokenizer(TOKENIZER), model.N_QUERY)
        scene = world.sample_scene(random.Random(1))
        sample = enc.sample(data.chat_text([(data.CAPTION_PROMPT, None)]), world.caption(scene), [scene], "caption")
        answer = enc.encode(world.caption(scene), False) + [data.EOS]
        self.assertEqual(sample["ids"][-len(answer):], answer)
        # The target at position t is the token at t + 1, only over the answer.
        shifted = [t for t in sample["targets"] if t != data.IGNORE]
        self.assertEqual(shifted, answer)
        self.assertEqual(sample["targets"][len(sample["ids"]) - len(answer) - 1], answer[0])

    def test_text_to_image_mix_regresses_every_query_after_the_caption_prompt(self):
        enc = data.Encoder(load_reference_tokenizer(TOKENIZER), model.N_QUERY)
        rng = random.Random(7)
        samples = [data.training_sample(enc, rng, data.MIXES["text-to-image"]) for _ in range(200)]
        tasks = [s["task"] for s in samples]
        self.assertEqual(set(tasks), {"caption", "vqa", "t2i"})  # the grounding texts stay in the mix
        self.assertGreater(tasks.count("t2i"), 50)
        prompts = set()
        for s in [s for s in samples if s["task"] == "t2i"]:
            positions = [p for p, _ in s["regress"]]
            self.assertEqual([q for _, q in s["regress"]], list(range(model.N_QUERY)))
            # As the runtime regresses (src/llm/regress.ts): the prompt, then [IMG] predicts embedding 0 and each
            # fed-back embedding the next one.
            start = positions[0]
            self.assertEqual(s["ids"][start], enc.img_id)
            self.assertEqual(s["ids"][start + 1:start + model.N_QUERY], [enc.image_id] * (model.N_QUERY - 1))
            self.assertEqual(positions, list(range(start, start + model.N_QUERY)))
            caption = world.caption(s["scenes"][0])
            expected = enc.encode(data.chat_text([(caption, None)]), True)
            self.assertIn(s["ids"][:start], (expected, enc.encode("", True)))
            prompts.add(len(s["ids"][:start]) == 1)
        self.assertEqual(prompts, {True, False})  # the empty prompt (the guidance null) and caption prompts

    def test_polish_mix_weights_questions_up_and_keeps_captions_and_text_to_image(self):
        enc = data.Encoder(load_reference_tokenizer(TOKENIZER), model.N_QUERY)
        rng = random.Random(11)
        tasks = [data.training_sample(enc, rng, data.MIXES["polish"])["task"] for _ in range(400)]
        self.assertEqual(set(tasks), {"caption", "vqa", "t2i"})
        self.assertGreater(tasks.count("vqa"), tasks.count("t2i"))
        self.assertGreater(tasks.count("t2i"), tasks.count("caption"))

    def test_calibration_episodes_supervise_repeated_labels_from_the_last_evidence_token(self):
        import toy_binding_calibration as cal
        for layout, evidence in (("adjacent", 1), ("gap4", 5), ("image", 6)):
            ids, targets, classes = cal.episode(random.Random(3), layout)
            self.assertEqual(len(ids), len(targets))
            self.assertEqual(len(ids), len(classes))
            seen, repeated = {}, 0
            # Each demonstration: the evidence, the label, a period; the label is the target of the token before it.
            at = 1
            while at < len(ids):
                cls = next(t for t in ids[at:at + evidence] if t in cal.CLASSES)
                label = ids[at + evidence]
                self.assertIn(label, cal.LABELS)
                expected = label if cls in seen else cal.IGNORE
                self.assertEqual(targets[at + evidence - 1], expected, layout)
                # --class-layer's target: the class, at the same token, on every demonstration.
                self.assertEqual(classes[at + evidence - 1], cls, layout)
                self.assertEqual(seen.setdefault(cls, label), label)  # one label per class in an episode
                repeated += expected != cal.IGNORE
                self.assertEqual(ids[at + evidence + 1], cal.PERIOD)
                at += evidence + 2
            self.assertEqual(sum(t != cal.IGNORE for t in targets), repeated)
            self.assertEqual(sum(c != cal.IGNORE for c in classes), sum(t == cal.PERIOD for t in ids))

    def test_calibration_labels_of_two_pieces_supervise_every_piece_of_a_repeated_label(self):
        import toy_binding_calibration as cal
        for seed in range(10):
            ids, targets, classes = cal.episode(random.Random(seed), "gap4", pieces=True)
            seen, at = {}, 1
            while at < len(ids):
                cls, first, second = ids[at], ids[at + 5], ids[at + 6]
                self.assertIn(first, cal.FIRST_PIECES)
                self.assertIn(second, cal.SECOND_PIECES)
                repeated = cls in seen
                # Both pieces are targets of the token before each, and only for a class shown before.
                self.assertEqual(targets[at + 4], first if repeated else cal.IGNORE)
                self.assertEqual(targets[at + 5], second if repeated else cal.IGNORE)
                self.assertEqual(targets[at + 6], cal.IGNORE)
                self.assertEqual(classes[at + 4], cls)
                self.assertEqual(seen.setdefault(cls, (first, second)), (first, second))
                self.assertEqual(ids[at + 7], cal.PERIOD)
                at += 8
            labels = set(seen.values())
            self.assertEqual(len(labels), len(seen))

    def test_calibration_attribute_episodes_show_both_attributes_and_name_one(self):
        import toy_binding_calibration as cal
        kinds = set()
        for seed in range(20):
            ids, targets, classes = cal.episode(random.Random(seed), "adjacent", attributes=True)
            shown = {}
            for position, cls in enumerate(classes):
                if cls == cal.IGNORE:
                    continue
                token = ids[position]
                color, shape = divmod(token - cal.PAIRS, len(cal.SHAPES))
                color, shape = cal.COLORS[color], cal.SHAPES[shape]
                # The class is the color or the shape the evidence token shows.
                self.assertIn(cls, (color, shape))
                shown[cls] = (color, shape)
            named = {cls in cal.COLORS for cls in shown}
            self.assertEqual(len(named), 1)
            kinds |= named
            # The other attribute is one value through the episode.
            others = {pair[1] if cls in cal.COLORS else pair[0] for cls, pair in shown.items()}
            self.assertEqual(len(others), 1)
        self.assertEqual(kinds, {True, False})

    def test_calibration_toy_image_episodes_show_a_scene_of_the_class_per_demonstration(self):
        import toy_binding_calibration as cal
        kinds = set()
        for seed in range(10):
            scenes = []
            ids, targets, classes = cal.episode(random.Random(seed), "toy-image", scenes=scenes)
            marks = [(p, c) for p, c in enumerate(classes) if c != cal.IGNORE]
            self.assertEqual(len(marks), len(scenes))
            self.assertEqual(ids.count(cal.IMAGE), model.N_QUERY * len(scenes))
            named, others = set(), set()
            for (position, cls), scene in zip(marks, scenes):
                self.assertEqual(ids[position], cal.CLOSE)
                word = cal.TOY_CLASS_WORDS[cal.CLASSES.index(cls)]
                attribute = "shape" if word in world.SHAPES else "color"
                self.assertEqual(scene[attribute], word)
                named.add(attribute)
                others.add(scene[world.OTHER_ATTRIBUTE[attribute]])
            self.assertEqual(len(named), 1)
            self.assertEqual(len(others), 1)
            kinds |= named
        self.assertEqual(kinds, {"color", "shape"})

    def test_build_draws_the_vocabulary_matrices_at_the_asked_scales(self):
        _, default = model.build(3)
        g = torch.Generator().manual_seed(4)
        embed = torch.randn(model.VOCAB_SIZE, model.LLM["hidden_size"], generator=g)
        head = torch.randn(model.VOCAB_SIZE, model.LLM["hidden_size"], generator=g)
        # The committed checkpoint's draw: 0.02 for both, from the seed's own generator.
        self.assertTrue(torch.equal(default.model.embed_tokens.weight, embed * model.VOCAB_INIT_STD))
        self.assertTrue(torch.equal(default.lm_head.weight, head * model.VOCAB_INIT_STD))
        _, scaled = model.build(3, embed_init_std=1.0, head_init_std=0.072)
        self.assertTrue(torch.equal(scaled.model.embed_tokens.weight, embed * 1.0))
        self.assertTrue(torch.equal(scaled.lm_head.weight, head * 0.072))
        # Nothing else changes with the scales.
        for name, value in default.state_dict().items():
            if name not in model.VOCAB_PARAMS:
                self.assertTrue(torch.equal(value, scaled.state_dict()[name]), name)

    def test_checkpoint_rebuilds_the_untrained_rows_at_the_scales_the_llm_was_drawn_with(self):
        vision, llm = model.build(3, embed_init_std=1.0, head_init_std=0.072)
        with torch.no_grad():
            llm.model.embed_tokens.weight[[5, 9]] += 1.0  # the "trained" rows
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "toy.pt")
            torch.save(model.checkpoint_state(vision, llm, 3, [5, 9], 1.0, 0.072), path)
            _, loaded, state = model.load_checkpoint(path)
            self.assertEqual(model.vocab_init_std(state), (1.0, 0.072))
            for name, value in llm.state_dict().items():
                self.assertTrue(torch.equal(value, loaded.state_dict()[name]), name)
            # A checkpoint from before the field (the committed one) was drawn at 0.02.
            del state["vocab_init_std"]
            torch.save(state, path)
            _, old, _ = model.load_checkpoint(path)
            untrained = [i for i in range(model.VOCAB_SIZE) if i not in (5, 9)]
            self.assertTrue(torch.equal(old.lm_head.weight[untrained], model.build(3)[1].lm_head.weight[untrained]))

    def test_fewshot_sample_takes_the_asked_style(self):
        enc = data.Encoder(load_reference_tokenizer(TOKENIZER), model.N_QUERY)
        styles = set()
        for seed in range(12):
            asked = data.fewshot_sample(enc, random.Random(seed), (4, 6), balanced=False, style="this-is")
            text = enc.tokenizer.decode(asked["ids"])
            self.assertIn("This is a", text)
            self.assertNotIn("answer", text)
            drawn = enc.tokenizer.decode(data.fewshot_sample(enc, random.Random(seed), (4, 6), balanced=False)["ids"])
            styles.add("This is a" in drawn)
        self.assertEqual(styles, {True, False})

    def test_episodes_mark_the_class_word_at_the_token_before_every_label_and_answer(self):
        enc = data.Encoder(load_reference_tokenizer(TOKENIZER), model.N_QUERY)
        word_of = {enc.encode(w, False)[0]: w for w in world.SHAPES + sorted(world.COLORS)}
        for seed in range(20):
            for make in (data.fewshot_chat_sample, data.fewshot_sample):
                rng = random.Random(seed)
                sample = make(enc, rng, balanced=False)
                ids = sample["ids"]
                # Every label and answer: the demonstrations' "This is a <label>", every "[ASSISTANT]: <label>".
                labels = {enc.encode(w, False)[0]: w for w in world.NONSENSE_WORDS}
                positions = [p for p, _ in sample["classes"]]
                self.assertEqual(len(positions), len(set(positions)), f"seed {seed}")
                self.assertEqual(len(positions), sum(1 for t in ids[1:] if t in labels), f"seed {seed}")
                for position, word in sample["classes"]:
                    self.assertIn(ids[position + 1], labels, f"seed {seed}: no label after the class mark")
                    self.assertIn(word, word_of, f"seed {seed}: the mark is not a color or shape word")
                # One class word, one label (its first piece): the mapping of the episode.
                pairs = {(ids[p + 1], w) for p, w in sample["classes"]}
                self.assertEqual(len(pairs), len({w for _, w in pairs}), f"seed {seed}")

    def test_class_loss_reads_the_middle_layers_output_at_the_marked_tokens(self):
        import torch
        import train_toy
        torch.manual_seed(0)
        enc = data.Encoder(load_reference_tokenizer(TOKENIZER), model.N_QUERY)
        vision, llm = model.build(5)
        samples = [data.fewshot_chat_sample(enc, random.Random(seed), balanced=False) for seed in range(2)]
        batch = train_toy.collate(samples, enc.tokenizer.added["[PAD]"])
        with torch.no_grad():
            plain = model.losses(vision, llm, batch, enc.image_id)
            split = model.losses(vision, llm, batch, enc.image_id, class_layer=2)
            self.assertNotIn("class", plain)
            # Running the layers in two parts changes nothing else.
            self.assertAlmostEqual(float(plain["text"]), float(split["text"]), places=5)
            features = model.encode_images(vision, batch["pixels"])
            embeds = model.splice(llm, batch["ids"], features, enc.image_id)
            positions = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
            middle, _ = llm.decode(embeds, batch["attention_mask"], positions, layers=(0, 2))
            rows = [middle[b, t] for b, t in batch["class_pos"].tolist()]
            logits = llm.lm_head(llm.model.norm(torch.stack(rows)))
            expected = torch.nn.functional.cross_entropy(logits, batch["class_target"])
            self.assertAlmostEqual(float(split["class"]), float(expected), places=5)
            self.assertEqual(len(rows), sum(len(s["classes"]) for s in samples))

    def test_regression_fed_its_own_embeddings_is_what_training_teacher_forces(self):
        # model.regress runs as the runtime does (each embedding projected up and fed back); the training sample of
        # text-to-image feeds the target embeddings at the same positions. Fed its own outputs as targets, training's
        # forward must predict exactly them.
        import torch
        enc = data.Encoder(load_reference_tokenizer(TOKENIZER), model.N_QUERY)
        _, llm = model.build(3)
        llm.eval()
        prompt = enc.encode(data.chat_text([("two red circles", None)]), True)
        regressed = model.regress(llm, prompt, enc.img_id)
        self.assertEqual(tuple(regressed.shape), (model.N_QUERY, llm.project_down.out_features))
        sample = enc.image_sample(data.chat_text([("two red circles", None)]), world.sample_scene(random.Random(0)))
        ids = torch.tensor([sample["ids"]])
        with torch.no_grad():
            hidden = model.hidden_states(llm, ids, torch.ones_like(ids), regressed[None], enc.image_id)
            predicted = llm.project_down(hidden[0, [p for p, _ in sample["regress"]]])
        torch.testing.assert_close(predicted, regressed, atol=1e-5, rtol=1e-5)


if __name__ == "__main__":
    unittest.main()
