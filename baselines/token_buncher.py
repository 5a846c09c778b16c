"""TokenBuncher (Feng et al. 2025, arXiv 2508.20697): before release, the defender runs GRPO on harmful prompts with
the NEGATIVE mean per-token entropy of the policy's own response as the reward (no reward model), so the policy's
output distribution on harmful prompts sharpens until an attacker's RL samples (almost) the same response every time
and finds no reward differences to climb.

The Token Noiser keeps the attacker from recovering the lost entropy cheaply: after `warmup_steps`, every even step
replaces the GRPO update with an SFT step on the step's own rollouts, where only the tokens of responses with
advantage >= 0 (entropy at most their group's mean) keep their labels, and each label is a noisy smoothed target:

    loss_t = (1 - eps) * (-log p(y_t)) + eps * sum_i n_i * (-log p_i),

n = U(0, 1) noise over the vocabulary with n_y = 0, rescaled to sum to eps, so the noise tokens carry eps^2 of the
target mass in all (0.01 at eps = 0.1): the target token is sharpened while random other tokens gain a little mass,
so entropy an attack wins back goes to random tokens rather than to useful alternatives (the paper's aim: no
escalation of harmful capability). Why so little: the rollouts are the policy's own samples, so E[onehot(y)] = p and
an SFT step toward (1 - eps) * onehot(y) + eps * u (noise of total mass eps) has the uniform distribution as its
fixed point; measured on the tiny embedded world, noise of mass 0.1 drove the policy to near-uniform output (entropy
7.4 of at most 7.7 nats after 200 steps, warmup 25 or 100) while mass 0.01 let the entropy fall (5.1 to 0.3).

The prompts are the world's harmful ones, never benign ones (benign capability is left alone): `domain="all"` is the
world's attack prompts (the RPA env's, every hazard category), a domain name that HarmfulRL domain's prompts. The
defender's loop is our GRPO agent with two overrides (`TokenBuncherGRPO`): `env_feedback` replaces the env's reward by
the entropy reward, `policy_loss` is the Token Noiser on its steps. A killed run resumes from the agent checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from transformers import PreTrainedModel

from rlft_gym import generation
from rlft_gym.baselines.reward_neutralization import group_reward_std, learn_resumably, training_env
from rlft_gym.callbacks import StepReport
from rlft_gym.envs.tasks import HARMFUL_ENV_IDS
from rlft_gym.transform import Resume, Transform, save_defended
from rlft_gym.validate import (
    require_fraction,
    require_full_model,
    require_int,
    require_non_negative,
    require_one_of,
    require_positive,
)

ALL_PROMPTS_ENV_ID = "RPA-BeaverTails-v0"  # its attack prompts are the world's harmful prompts of every category
DOMAINS = ("all", *HARMFUL_ENV_IDS)


def response_logits(model: PreTrainedModel, rollout: generation.Rollout) -> torch.Tensor:
    """The model's next-token logits (N, V) at the rollout's N live response positions, row-major (as
    `rollout.response_mask.bool()` orders them); the layout of `generation.response_logprobs`, all of the vocabulary."""
    mask = rollout.attention_mask
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = inner.base_model(
        input_ids=rollout.input_ids, attention_mask=mask, position_ids=generation.positions(mask)
    ).last_hidden_state
    live = rollout.response_mask.bool()
    return inner.get_output_embeddings()(hidden[:, rollout.prompt_length - 1 : -1][live]).float()


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(softmax(logits)) = -sum_i p_i log p_i of each row, in nats."""
    log_p = torch.log_softmax(logits.float(), -1)
    return -(log_p.exp() * log_p).sum(-1)


def entropy_reward(entropy: torch.Tensor, response_mask: torch.Tensor) -> np.ndarray:
    """Each response's reward: minus the mean of its per-token entropies (B, T) over its tokens (`response_mask`)."""
    mask = response_mask.float()
    return (-(entropy * mask).sum(1) / mask.sum(1).clamp_min(1)).cpu().numpy().astype(np.float32)


def token_noiser_loss(log_probs: torch.Tensor, targets: torch.Tensor, noise: torch.Tensor, eps: float) -> torch.Tensor:
    """The Token Noiser's per-token loss (N,): (1 - eps) * -log p(y) + eps * sum_i n_i * -log p_i, where n is `noise`
    (N, V, non-negative) with the target zeroed and each row rescaled to sum to eps; `log_probs` are log-softmaxed."""
    n = noise.scatter(1, targets[:, None], 0.0)
    n = eps * n / n.sum(1, keepdim=True)
    nll = -log_probs.gather(1, targets[:, None]).squeeze(1)
    return (1 - eps) * nll - eps * (n * log_probs).sum(1)


class TokenBuncherMixin:
    """Put before GRPO (as `token_buncher_grpo()` does): the reward is minus the policy's mean token entropy on each
    response, and the update at every even step after `warmup_steps` is the Token Noiser's SFT step (module
    docstring)."""

    def __init__(
        self,
        env: gym.Env | gym.vector.VectorEnv,
        policy: str | Path | None = None,
        *,
        warmup_steps: int = 25,
        noise_eps: float = 0.1,
        **grpo_kwargs: Any,
    ) -> None:
        require_int(0, warmup_steps=warmup_steps)
        require_fraction(noise_eps=noise_eps)
        super().__init__(env, policy, **grpo_kwargs)
        self.warmup_steps, self.noise_eps = warmup_steps, noise_eps
        self.last_rewards = np.zeros(0, np.float32)

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "warmup_steps": self.warmup_steps, "noise_eps": self.noise_eps}

    def noiser_step(self) -> bool:
        """Whether the step being taken (`num_steps + 1`) is a Token Noiser step: even and after the warmup."""
        step = self.num_steps + 1
        return step > self.warmup_steps and step % 2 == 0

    def env_feedback(
        self, prompt_ids: np.ndarray, respond: Callable[[list[str]], generation.Rollout]
    ) -> tuple[generation.Rollout, np.ndarray, np.ndarray]:
        """The env's costs, with each reward replaced by minus the policy's mean token entropy on the response."""
        rollout, _, costs = super().env_feedback(prompt_ids, respond)
        live = rollout.response_mask.bool()
        with torch.no_grad(), self.accelerator.autocast():
            packed = token_entropy(response_logits(self.policy, rollout))
        entropy = torch.zeros(live.shape, dtype=packed.dtype, device=packed.device).masked_scatter(live, packed)
        self.last_rewards = entropy_reward(entropy, rollout.response_mask)
        return rollout, self.last_rewards, costs

    def policy_loss(self, rollout: generation.Rollout, advantages: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """GRPO's loss, or on a Token Noiser step the noisy-target SFT loss, averaged over the tokens of responses
        with advantage >= 0 (every group has one: some sample is at least its group's mean)."""
        if not self.noiser_step():
            return super().policy_loss(rollout, advantages)
        live = rollout.response_mask.bool()
        with self.accelerator.autocast():
            log_probs = torch.log_softmax(response_logits(self.policy, rollout), -1)
        targets = rollout.response_ids[live]
        noise = torch.rand(log_probs.shape, generator=self.generator, device=log_probs.device)
        per_token = token_noiser_loss(log_probs, targets, noise, self.noise_eps)
        keep = (advantages[:, None] >= 0).expand_as(live)[live].float()
        logp = torch.zeros(live.shape, dtype=log_probs.dtype, device=log_probs.device).masked_scatter(
            live, log_probs.gather(1, targets[:, None]).squeeze(1)
        )
        return logp, (per_token * keep).sum() / keep.sum().clamp_min(1)

    def train_step(self) -> StepReport:
        noiser = self.noiser_step()
        report = super().train_step()
        spread = group_reward_std(self.last_rewards, self.group_size)
        return replace(report, extra={**report.extra, "token_noiser": float(noiser), "group_reward_std": spread})


@cache
def token_buncher_grpo() -> type:
    """The class `TokenBuncherGRPO` (the mixin before GRPO), made on first use: importing the agents loads TRL, which
    importing the baselines does not."""
    from rlft_gym.agents import GRPO

    return type("TokenBuncherGRPO", (TokenBuncherMixin, GRPO), {})


@dataclass(frozen=True)
class TokenBuncher(Transform):
    """TokenBuncher: `steps` of entropy-as-reward GRPO on harmful prompts with the Token Noiser (module docstring).

    The paper's defaults, except the learning rate: 200 steps, `warmup_steps` 25, group size 4, `noise_eps` 0.1 and a
    KL coefficient of 0.001 (`beta`: here the KL is GRPO's loss term to the starting policy, not a reward term). The
    paper's lr 1e-6 is for 3-8B models. The default is 1e-4, our GRPO attack's own: on the tiny embedded world these
    defaults took the mean token entropy on attack prompts from 5.1 to 4.0 nats in 200 steps (so 1e-6 would leave the
    model about where it started), while lr 1e-3 took it to 0.3 with every answer collapsed to one repeated token.
    16 prompts a step.
    """

    name: ClassVar[str] = "token-buncher"

    domain: str = "all"
    steps: int = 200
    warmup_steps: int = 25
    learning_rate: float = 1e-4
    group_size: int = 4
    num_prompts: int = 16
    noise_eps: float = 0.1
    beta: float = 0.001
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        require_one_of("domain", self.domain, DOMAINS)
        require_int(1, steps=self.steps, num_prompts=self.num_prompts)
        require_int(2, group_size=self.group_size)
        require_int(0, warmup_steps=self.warmup_steps, seed=self.seed)
        require_positive(learning_rate=self.learning_rate, temperature=self.temperature)
        require_fraction(noise_eps=self.noise_eps)
        require_non_negative(beta=self.beta)

    def train(
        self, env: gym.Env | gym.vector.VectorEnv, policy: str | Path, out: Path, resume: Resume, progress: bool
    ) -> dict[str, Any]:
        world = env.unwrapped.world
        require_full_model(self.name, world)
        env_id = ALL_PROMPTS_ENV_ID if self.domain == "all" else HARMFUL_ENV_IDS[self.domain]
        harmful = training_env(env, env_id, self.group_size * self.num_prompts, policy)
        agent, start, reports = learn_resumably(
            token_buncher_grpo(),
            harmful,
            self.steps,
            resume,
            progress,
            world.device,
            warmup_steps=self.warmup_steps,
            noise_eps=self.noise_eps,
            learning_rate=self.learning_rate,
            group_size=self.group_size,
            beta=self.beta,
            temperature=self.temperature,
            seed=self.seed,
        )
        save_defended(agent.policy, world, out)
        harmful.close()
        return {
            "final_entropy": -reports[-1].reward,
            "final_cost": reports[-1].cost,
            "mean_length": reports[-1].extra["length"],
            "group_reward_std": reports[-1].extra["group_reward_std"],
            "resumed_from_step": start,
            "env_id": env_id,
            "policy": str(policy),
        }
