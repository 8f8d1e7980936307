"""Checks of the reference's video path (emu2ref/video.py): the sampling rule, PIL's frames of the fixture clips (a
GIF, a WebP and a frames folder holding the same pictures), the official input loop's text, and [gIMG] splicing.

    cd python && /usr/bin/python3 -m unittest tests.test_video
"""
import os
import sys
import unittest

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emu2ref.generation import prepare_prompt_embeds  # noqa: E402
from emu2ref.llama import build_vision_llm  # noqa: E402
from emu2ref.video import expand_placeholders, load_video_frames, prepare_inputs, sample_frame_indices  # noqa: E402

VIDEOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "fixtures", "videos")


class VideoTest(unittest.TestCase):
    def test_sampling_takes_the_middle_of_each_segment(self):
        self.assertEqual(sample_frame_indices([0, 1, 2, 3, 4, 5], 6, 4), [0, 2, 3, 5])
        self.assertEqual(sample_frame_indices([0, 100, 200, 900], 1000, 3), [1, 2, 2])
        self.assertEqual(sample_frame_indices([0, 1, 2], 3, 8), [0, 1, 2])

    def test_gif_webp_and_folder_give_the_same_frames(self):
        for clip in ("red-square-right", "blue-bar-up", "green-blink"):
            for count in (2, 4, 8):
                indices, frames = load_video_frames(os.path.join(VIDEOS, clip), count)
                for ext in (".gif", ".webp"):
                    other_indices, other = load_video_frames(os.path.join(VIDEOS, clip + ext), count)
                    self.assertEqual(other_indices, indices, f"{clip}{ext} x{count}")
                    for a, b in zip(other, frames):
                        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    def test_official_input_loop(self):
        frame = object()
        image = object()
        text, images, frames = prepare_inputs(["[VIDEO]", frame, frame, "[/VIDEO]", "Then ", image, "?"])
        self.assertEqual(text, "[VIDEO][<VID_PLH>][<VID_PLH>]Then [<IMG_PLH>]?")
        self.assertEqual((len(images), len(frames)), (1, 2))
        self.assertEqual(expand_placeholders("[VIDEO][<VID_PLH>]x[<IMG_PLH>]", 2, 3),
                         "[VIDEO][IMG][gIMG][gIMG][gIMG][/IMG]x[IMG]<image><image>[/IMG]")

    def test_frames_take_the_gimg_rows_and_images_the_image_rows(self):
        _, llm = build_vision_llm({"vision": {"image_size": 28, "patch_size": 14, "width": 8, "layers": 1, "heads": 1,
                                              "mlp_hidden": 8},
                                   "llm": {"vocab_size": 20, "hidden_size": 8, "num_layers": 1, "num_heads": 2,
                                           "intermediate_size": 8, "max_position_embeddings": 64,
                                           "rms_norm_eps": 1e-6}}, 1)
        ids = torch.tensor([[1, 5, 5, 3, 7, 7]])  # 5 = [gIMG], 7 = <image>
        frames, images = torch.randn(1, 2, 8), torch.randn(1, 2, 8)
        embeds, _ = prepare_prompt_embeds(llm, ids, torch.ones_like(ids), images, 7, frames, 5)
        torch.testing.assert_close(embeds[0, 1:3], llm.project_up(frames)[0])
        torch.testing.assert_close(embeds[0, 4:6], llm.project_up(images)[0])
        torch.testing.assert_close(embeds[0, 3], llm.embed_tokens(torch.tensor([3]))[0])
        with self.assertRaises(ValueError):
            prepare_prompt_embeds(llm, ids, torch.ones_like(ids), images, 7, None, 5)


if __name__ == "__main__":
    unittest.main()
