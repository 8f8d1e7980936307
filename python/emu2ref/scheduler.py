"""EulerDiscreteScheduler as diffusers computes it for epsilon prediction without Karras sigmas and with s_churn 0
(the Emu2-Gen / SDXL setting), including its float32/float64 mix: betas and alphas_cumprod in torch float32, the
sigma interpolation in numpy float64, sigmas (with the final 0) stored as float32."""
import numpy as np
import torch


class EulerDiscreteScheduler:
    def __init__(self, num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 timestep_spacing="leading", steps_offset=1, prediction_type="epsilon"):
        if beta_schedule != "scaled_linear":
            raise ValueError(f"beta_schedule {beta_schedule!r}: only scaled_linear is implemented")
        if prediction_type != "epsilon":
            raise ValueError(f"prediction_type {prediction_type!r}: only epsilon is implemented")
        if timestep_spacing not in ("leading", "trailing", "linspace"):
            raise ValueError(f"timestep_spacing {timestep_spacing!r} is unknown")
        self.num_train_timesteps = num_train_timesteps
        self.timestep_spacing = timestep_spacing
        self.steps_offset = steps_offset
        betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train_timesteps, dtype=torch.float32) ** 2
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.sigmas = None
        self.timesteps = None

    @classmethod
    def from_section(cls, section: dict) -> "EulerDiscreteScheduler":
        """From the manifest's visual_decoder.scheduler section."""
        return cls(**{k: v for k, v in section.items() if k != "type"})

    def set_timesteps(self, num_inference_steps: int) -> None:
        n = self.num_train_timesteps
        if self.timestep_spacing == "linspace":
            timesteps = np.linspace(0, n - 1, num_inference_steps, dtype=np.float64)[::-1].copy()
        elif self.timestep_spacing == "leading":
            step_ratio = n // num_inference_steps
            timesteps = (np.arange(0, num_inference_steps) * step_ratio).round()[::-1].copy().astype(np.float32)
            timesteps += self.steps_offset
        else:
            step_ratio = n / num_inference_steps
            timesteps = np.arange(n, 0, -step_ratio).round().copy().astype(np.float32)
            timesteps -= 1
        train_sigmas = np.array(((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5)
        sigmas = np.interp(timesteps, np.arange(0, len(train_sigmas)), train_sigmas)
        sigmas = np.concatenate([sigmas, [0.0]]).astype(np.float32)
        self.sigmas = torch.from_numpy(sigmas)
        self.timesteps = torch.from_numpy(timesteps.astype(np.float32))

    @property
    def init_noise_sigma(self) -> torch.Tensor:
        max_sigma = self.sigmas.max()
        if self.timestep_spacing in ("linspace", "trailing"):
            return max_sigma
        return (max_sigma ** 2 + 1) ** 0.5

    def scale_model_input(self, sample: torch.Tensor, step_index: int) -> torch.Tensor:
        sigma = self.sigmas[step_index]
        return sample / ((sigma ** 2 + 1) ** 0.5)

    def step(self, model_output: torch.Tensor, step_index: int, sample: torch.Tensor) -> torch.Tensor:
        """x_t -> x_{t-1}: one Euler step of the probability-flow ODE (gamma = 0, so sigma_hat = sigma)."""
        sample = sample.to(torch.float32)
        sigma = self.sigmas[step_index]
        pred_original_sample = sample - sigma * model_output
        derivative = (sample - pred_original_sample) / sigma
        dt = self.sigmas[step_index + 1] - sigma
        return (sample + derivative * dt).to(model_output.dtype)
