"""Checks of the visual decoder reference: the scheduler against an independent float64 numpy derivation of
diffusers' formulas and SDXL's known numbers, the seeded noise generator, the diffusers state-dict layout, and the
float16 export pass.

    cd python && /usr/bin/python3 -m unittest tests.test_diffusion
"""
import math
import os
import sys
import tempfile
import unittest

import numpy as np
import onnx
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emu2ref import manifest as mf  # noqa: E402
from emu2ref.export_diffusion import build_visual_decoder, export_visual_decoder  # noqa: E402
from emu2ref.noise import SplitMix64, initial_noise, normals  # noqa: E402
from emu2ref.scheduler import EulerDiscreteScheduler  # noqa: E402


def numpy_euler_sigmas(steps: int) -> tuple:
    """diffusers' scaled_linear / leading / steps_offset 1 schedule, written again in float64 numpy."""
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    alphas_cumprod = np.cumprod(1.0 - betas)
    train = np.sqrt((1.0 - alphas_cumprod) / alphas_cumprod)
    timesteps = np.arange(steps)[::-1] * (1000 // steps) + 1
    return timesteps, np.append(train[timesteps], 0.0)


class SchedulerTest(unittest.TestCase):
    def scheduler(self, steps):
        s = EulerDiscreteScheduler.from_section(mf.scheduler_section())
        s.set_timesteps(steps)
        return s

    def test_sigmas_match_an_independent_float64_derivation(self):
        for steps in (50, 30, 4, 1):
            s = self.scheduler(steps)
            timesteps, sigmas = numpy_euler_sigmas(steps)
            np.testing.assert_array_equal(s.timesteps.numpy(), timesteps.astype(np.float32))
            np.testing.assert_allclose(s.sigmas.numpy(), sigmas, rtol=2e-5, atol=1e-7)

    def test_sdxl_numbers(self):
        s = self.scheduler(50)
        self.assertEqual(s.timesteps[0].item(), 981.0)
        self.assertEqual(s.timesteps[-1].item(), 1.0)
        self.assertAlmostEqual(s.sigmas[0].item(), 13.1204, places=3)
        self.assertAlmostEqual(s.init_noise_sigma.item(), 13.1585, places=3)  # sqrt(sigma_max^2 + 1), leading spacing
        self.assertEqual(s.sigmas[-1].item(), 0.0)

    def test_step_with_true_noise_recovers_the_clean_sample(self):
        s = self.scheduler(4)
        clean, eps = torch.randn(8), torch.randn(8)
        x = clean + s.sigmas[3] * eps
        torch.testing.assert_close(s.step(eps, 3, x), clean, rtol=0, atol=1e-5)
        torch.testing.assert_close(s.scale_model_input(x, 3) * (s.sigmas[3] ** 2 + 1) ** 0.5, x)


class NoiseTest(unittest.TestCase):
    def test_splitmix64_reference_value(self):
        # Vigna's splitmix64.c seeded with 0 yields 0xE220A8397B1DCDAF first.
        self.assertEqual(SplitMix64(0).next(), 0xE220A8397B1DCDAF)

    def test_first_normals_follow_box_muller(self):
        rng = SplitMix64(1234)
        u1, u2 = rng.uniform(), rng.uniform()
        r = math.sqrt(-2 * math.log(1 - u1))
        first = normals(1234, 3)
        self.assertEqual(first[0], r * math.cos(2 * math.pi * u2))
        self.assertEqual(first[1], r * math.sin(2 * math.pi * u2))

    def test_deterministic_and_batch_equals_images_one_by_one(self):
        a = initial_noise(42, (2, 4, 8, 8))
        np.testing.assert_array_equal(a, initial_noise(42, (2, 4, 8, 8)))
        np.testing.assert_array_equal(a[1:], initial_noise(43, (1, 4, 8, 8)))
        self.assertFalse(np.array_equal(a[0], a[1]))
        self.assertEqual(a.dtype, np.float32)
        big = initial_noise(7, (1, 4, 64, 64))
        self.assertLess(abs(big.mean()), 0.03)
        self.assertLess(abs(big.std() - 1), 0.03)


class LayoutTest(unittest.TestCase):
    def test_state_dict_uses_diffusers_keys(self):
        unet, vae, _ = build_visual_decoder({"cross_attention_dim": 32}, 0)
        keys = set(unet.state_dict())
        for key in ["conv_in.weight", "time_embedding.linear_1.weight", "add_embedding.linear_2.bias",
                    "down_blocks.0.resnets.0.time_emb_proj.weight", "down_blocks.0.downsamplers.0.conv.weight",
                    "down_blocks.1.attentions.0.proj_in.weight", "down_blocks.1.resnets.0.conv_shortcut.weight",
                    "down_blocks.2.attentions.0.transformer_blocks.1.attn2.to_k.weight",
                    "down_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj.weight",
                    "down_blocks.1.attentions.0.transformer_blocks.0.ff.net.2.weight",
                    "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0.bias",
                    "mid_block.attentions.0.norm.weight", "mid_block.resnets.1.conv2.weight",
                    "up_blocks.0.attentions.1.proj_out.weight", "up_blocks.1.upsamplers.0.conv.weight",
                    "up_blocks.2.resnets.1.conv_shortcut.weight", "conv_norm_out.weight", "conv_out.bias"]:
            self.assertIn(key, keys)
        self.assertNotIn("down_blocks.2.downsamplers.0.conv.weight", keys)
        self.assertNotIn("up_blocks.2.upsamplers.0.conv.weight", keys)
        self.assertNotIn("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.bias", keys)
        vae_keys = set(vae.state_dict())
        for key in ["post_quant_conv.weight", "decoder.conv_in.weight", "decoder.mid_block.attentions.0.group_norm.weight",
                    "decoder.mid_block.attentions.0.to_q.bias", "decoder.up_blocks.0.upsamplers.0.conv.weight",
                    "decoder.up_blocks.3.resnets.0.conv_shortcut.weight", "decoder.conv_norm_out.bias"]:
            self.assertIn(key, vae_keys)

    def test_sdxl_skip_widths(self):
        unet, _, _ = build_visual_decoder({"unet": {"block_out_channels": [8, 16, 24], "attention_head_dim": [1, 2, 3],
                                                    "layers_per_block": 2}}, 0)
        # CrossAttnUpBlock2D 0: 24 from below plus skips 24, 24, 16; UpBlock2D 2: 16 + 8, 8 + 8, 8 + 8.
        self.assertEqual([r.conv1.in_channels for r in unet.up_blocks[0].resnets], [48, 48, 40])
        self.assertEqual([r.conv1.in_channels for r in unet.up_blocks[2].resnets], [24, 16, 16])
        out = unet(torch.randn(1, 4, 8, 8), torch.tensor([10.0]), torch.randn(1, 5, 32), torch.randn(1, 32),
                   torch.tensor([[64.0, 64, 0, 0, 64, 64]]))
        self.assertEqual(tuple(out.shape), (1, 4, 8, 8))


class Float16ExportTest(unittest.TestCase):
    def test_float16_graphs_store_half_weights_and_half_io(self):
        unet, vae, config = build_visual_decoder({}, 0)
        with tempfile.TemporaryDirectory() as out:
            section = export_visual_decoder(out, unet, vae, config, dtype="float16")
            model = onnx.load(os.path.join(out, section["vae_decoder_file"]))
            onnx.checker.check_model(model)
            self.assertEqual(model.graph.input[0].type.tensor_type.elem_type, onnx.TensorProto.FLOAT16)
            self.assertEqual(model.graph.output[0].type.tensor_type.elem_type, onnx.TensorProto.FLOAT16)
            self.assertTrue(all(t.data_type != onnx.TensorProto.FLOAT for t in model.graph.initializer))
            unet_model = onnx.load(os.path.join(out, section["unet_file"]))
            self.assertEqual([i.name for i in unet_model.graph.input],
                             ["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"])


if __name__ == "__main__":
    unittest.main()
