"""emu2-toy's visual decoder: module shapes, seeded determinism, the training noise against the runtime's scheduler,
the encoder digest and the pixel judge.
    cd python && /usr/bin/python3 -m unittest tests.test_toy_decoder"""
import os
import random
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from emu2ref import manifest as mf  # noqa: E402
from emu2ref.scheduler import EulerDiscreteScheduler  # noqa: E402
from emu2toy import decoder, judge, model, world  # noqa: E402


class ToyDecoderModulesTest(unittest.TestCase):
    def test_shapes_image_to_latent_to_noise_prediction_to_image(self):
        encoder, vae, unet = decoder.build(0)
        images = torch.rand(2, 3, decoder.IMAGE_SIZE, decoder.IMAGE_SIZE) * 2 - 1
        with torch.no_grad():
            mean, logvar = encoder(images)
            side = decoder.LATENT_SIZE
            self.assertEqual(tuple(mean.shape), (2, decoder.LATENT_CHANNELS, side, side))
            self.assertEqual(mean.shape, logvar.shape)
            cond = torch.randn(2, model.N_QUERY, model.VISION["width"])
            out = unet(mean, torch.tensor([981.0, 1.0]), cond, cond.mean(dim=1), decoder.time_ids(2))
            self.assertEqual(out.shape, mean.shape)
            self.assertEqual(tuple(vae(mean).shape), tuple(images.shape))

    def test_build_and_losses_are_seeded(self):
        a, b = decoder.build(7), decoder.build(7)
        for ma, mb in zip(a, b):
            for (na, pa), (nb, pb) in zip(ma.state_dict().items(), mb.state_dict().items()):
                self.assertEqual(na, nb)
                self.assertTrue(torch.equal(pa, pb), na)
        images = torch.rand(2, 3, decoder.IMAGE_SIZE, decoder.IMAGE_SIZE) * 2 - 1
        losses = [decoder.vae_loss(m[0], m[1], images, torch.Generator().manual_seed(3)) for m in (a, b)]
        self.assertEqual(float(losses[0]["reconstruction"]), float(losses[1]["reconstruction"]))
        self.assertNotEqual(float(decoder.vae_loss(a[0], a[1], images, torch.Generator().manual_seed(4))["kl"]), 0.0)

    def test_training_noise_is_what_the_euler_sampler_feeds_the_unet(self):
        # The runtime's sampler gives the UNet scale_model_input(x_0 + sigma_i eps) at timestep t_i; training must
        # draw x_t from that same distribution: sqrt(acp_t) x_0 + sqrt(1 - acp_t) eps.
        section = mf.scheduler_section()
        scheduler = EulerDiscreteScheduler.from_section(section)
        scheduler.set_timesteps(decoder.NUM_INFERENCE_STEPS)
        acp = decoder.alphas_cumprod(section)
        self.assertTrue(torch.equal(acp, scheduler.alphas_cumprod))
        g = torch.Generator().manual_seed(0)
        x0, eps = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
        for i in (0, 7, decoder.NUM_INFERENCE_STEPS - 1):
            t = int(scheduler.timesteps[i])
            sampler = scheduler.scale_model_input(x0 + scheduler.sigmas[i] * eps, i)
            training = decoder.noisy_latents(x0, eps, torch.tensor([t]), acp)
            torch.testing.assert_close(training, sampler, rtol=0, atol=2e-6)

    def test_encoder_digest_follows_the_weights(self):
        vision = model.build(1)[0]
        copy = model.build(1)[0]
        self.assertEqual(decoder.encoder_digest(vision), decoder.encoder_digest(copy))
        with torch.no_grad():
            copy.patch_embed.proj.weight[0, 0, 0, 0] += 1e-3
        self.assertNotEqual(decoder.encoder_digest(vision), decoder.encoder_digest(copy))


class ToyDecoderExportTest(unittest.TestCase):
    def test_export_refuses_a_decoder_trained_on_another_encoder(self):
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        import export_toy
        vision, llm = model.build(5)
        _, vae, unet = decoder.build(0)
        with tempfile.TemporaryDirectory() as tmp:
            toy, dec = os.path.join(tmp, "toy.pt"), os.path.join(tmp, "decoder.pt")
            torch.save(model.checkpoint_state(vision, llm, 5, [0, 1]), toy)
            state = {"format": decoder.FORMAT, "encoder_sha256": decoder.encoder_digest(model.build(6)[0]),
                     "unet_config": decoder.UNET, "vae_config": {**decoder.VAE, "scaling_factor": 1.0},
                     "unet": unet.state_dict(), "vae": vae.state_dict()}
            torch.save(state, dec)
            out = os.path.join(tmp, "pkg")
            with self.assertRaisesRegex(ValueError, "trained on the visual encoder"):
                export_toy.export_toy(toy, out, decoder_checkpoint=dec)
            self.assertFalse(os.path.exists(out))


class ToyJudgeTest(unittest.TestCase):
    def test_rendered_scenes_are_judged_right(self):
        for i in range(60):
            scene = world.sample_scene(random.Random(f"judge-test-{i}"))
            verdict = judge.judge(np.asarray(world.render(scene)))
            self.assertEqual(judge.agreement(scene, verdict),
                             {"color": True, "shape": True, "count": True, "quadrants": True}, (scene, verdict))

    def test_an_empty_grey_image_has_no_objects(self):
        verdict = judge.judge(np.full((64, 64, 3), 50, dtype=np.uint8))
        self.assertEqual(verdict, {"color": None, "shape": None, "count": 0, "quadrants": []})

    def test_the_toys_caption_of_an_image_is_read_for_color_and_shape_as_whole_words(self):
        from judge_toy_images import caption_names
        scene = {"shape": "star", "color": "red", "count": 2}
        self.assertEqual(caption_names("two red stars", scene), {"color": True, "shape": True})
        self.assertEqual(caption_names("a red star in the top left", scene), {"color": True, "shape": True})
        self.assertEqual(caption_names("two blue stars", scene), {"color": False, "shape": True})
        self.assertEqual(caption_names("a red square in the top left", scene), {"color": True, "shape": False})
        self.assertEqual(caption_names("three reddish starfish", scene), {"color": False, "shape": False})


if __name__ == "__main__":
    unittest.main()
