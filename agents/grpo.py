"""Native GRPO (Shao et al. 2024), read top to bottom: sample a group of responses per prompt, score them
through the env, push up the log-probability of responses that beat their group's mean.

Defaults, chosen on the embedded world: mean-centred advantages (Dr. GRPO; `scale_rewards="group"` divides by the
group std as in the original GRPO, which amplifies wording differences inside all-refusal groups there), lr 1e-4,
one gradient step per batch (TRL's default `num_iterations=1`, so the PPO ratio is 1 and clipping is a no-op), loss
normalised by a constant (batch * max_new_tokens) as in Dr. GRPO. A KL penalty to the reference is `beta` (or,
equivalently, `constraints=[KLConstraint(beta)]`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from rlft_gym import generation
from rlft_gym.agent import Agent, Batch, Constraint, group_layout
from rlft_gym.callbacks import StepReport
from rlft_gym.validate import check_finite, require_non_negative, require_one_of, require_positive

SCALE_REWARDS = ("none", "group")


def group_advantages(rewards: np.ndarray, group_size: int, scale_rewards: str) -> np.ndarray:
    """A_i = r_i - mean(r_group), / (std(r_group) + 1e-4) if scale_rewards="group", for rows laid out group by group:
    GRPO's learning signal as a pure function, so its sign and scale are tested on their own."""
    grouped = rewards.reshape(-1, group_size)
    adv = grouped - grouped.mean(1, keepdims=True)
    if scale_rewards == "group":
        adv = adv / (grouped.std(1, keepdims=True) + 1e-4)
    return adv.reshape(-1)


def check_hyperparameters(
    env: gym.Env | gym.vector.VectorEnv,
    *,
    learning_rate: float,
    group_size: int,
    num_prompts: int,
    temperature: float,
    beta: float,
    scale_rewards: str,
    max_grad_norm: float,
    scale_choices: Sequence[str] = SCALE_REWARDS,
) -> int:
    """Validate GRPO's hyperparameters (ours and TRL's share them); return the prompts per step (`group_layout`)."""
    require_positive(learning_rate=learning_rate, temperature=temperature, max_grad_norm=max_grad_norm)
    require_non_negative(beta=beta)
    require_one_of("scale_rewards", scale_rewards, scale_choices)
    return group_layout(env, group_size, num_prompts)  # advantages are relative to the group: >= 2 samples


class GRPO(Agent):
    """Group Relative Policy Optimisation on an rlft-gym env.

    With a vector env, each step uses the whole batch: `num_envs // group_size` prompts x `group_size` samples.
    With a single env, each step uses `num_prompts x group_size` responses, stepped one by one.
    """

    def __init__(
        self,
        env: gym.Env | gym.vector.VectorEnv,
        policy: str | Path | None = None,
        *,
        learning_rate: float = 1e-4,
        group_size: int = 8,
        num_prompts: int = 16,
        temperature: float = 1.0,
        beta: float = 0.0,
        scale_rewards: str = "none",
        max_grad_norm: float = 1.0,
        constraints: Sequence[Constraint] = (),
        seed: int = 0,
        device: str = "cpu",
        mixed_precision: str = "no",
    ) -> None:
        num_prompts = check_hyperparameters(
            env,
            learning_rate=learning_rate,
            group_size=group_size,
            num_prompts=num_prompts,
            temperature=temperature,
            beta=beta,
            scale_rewards=scale_rewards,
            max_grad_norm=max_grad_norm,
        )
        from rlft_gym.baselines.kl import KLConstraint

        constraints = list(constraints) + ([KLConstraint(beta)] if beta > 0 else [])
        super().__init__(env, policy, constraints, seed, device, mixed_precision)
        self.learning_rate, self.group_size, self.num_prompts = learning_rate, group_size, num_prompts
        self.temperature, self.beta, self.scale_rewards, self.max_grad_norm = (
            temperature,
            beta,
            scale_rewards,
            max_grad_norm,
        )
        trainable = [p for p in self.policy.parameters() if p.requires_grad]  # only the adapters under LoRA
        self.optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.0)

    def hyperparameters(self) -> dict:
        return {
            k: getattr(self, k)
            for k in (
                "learning_rate",
                "group_size",
                "num_prompts",
                "temperature",
                "beta",
                "scale_rewards",
                "max_grad_norm",
                "seed",
                "mixed_precision",
            )
        }

    def respond(self, prompts: list[str]) -> generation.Rollout:
        """Sample the group's responses from the current policy: `prompts` holds each prompt `group_size` times in a
        row."""
        return self.sample_groups(prompts, self.group_size, self.temperature)

    def policy_loss(self, rollout: generation.Rollout, advantages: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The policy's per-token log-probs of the responses (B, T, with grad) and the loss on them: Dr. GRPO's
        -A_i * log pi(y_i,t | x, y_i,<t) over response tokens / (batch * max_new_tokens). The one place a subclass
        replaces the update (e.g. TokenBuncher's Token Noiser steps); constraints and the report still see `logp`."""
        with self.accelerator.autocast():
            logp = generation.response_logprobs(self.policy, rollout)
        mask = rollout.response_mask.float()
        return logp, -(advantages[:, None] * logp * mask).sum() / (mask.shape[0] * self.max_new_tokens)

    def train_step(self) -> StepReport:
        t0 = time.perf_counter()
        step = self.num_steps + 1
        # 1. a group of `group_size` responses for each of `num_prompts` attack prompts
        prompt_ids = np.repeat(self.rng.integers(len(self.prompts), size=self.num_prompts), self.group_size)
        self.policy.eval()
        rollout, rewards, costs = self.env_feedback(prompt_ids, self.respond)
        check_finite(rewards.sum(), step, "reward")
        t_sample = time.perf_counter()

        # 2. group-relative advantages: A_i = r_i - mean(r_group)  (divided by std(r_group) if scale_rewards="group")
        adv = group_advantages(rewards, self.group_size, self.scale_rewards)
        advantages = torch.as_tensor(adv, dtype=torch.float32, device=self.device)

        # 3. policy-gradient loss on response tokens: -A_i * log pi(y_i,t | x, y_i,<t), Dr. GRPO normalisation
        self.policy.train()
        logp, pg_loss = self.policy_loss(rollout, advantages)
        mask = rollout.response_mask.float()
        # reference log-probs: the whole batch if a constraint needs them, else one response per group (enough
        # for an unbiased estimate of the reported KL at 1/group_size of the cost)
        full_ref = any(c.needs_reference for c in self.constraints)
        rows = slice(None) if full_ref else slice(None, None, self.group_size)
        with torch.no_grad(), self.accelerator.autocast():
            ref_logp = generation.response_logprobs(self.reference, rollout[rows])
        batch = Batch(rollout, logp, ref_logp if full_ref else None, rewards, costs)
        extra_losses = [c.loss(self, batch) for c in self.constraints]
        loss = pg_loss + sum(x for x in extra_losses if x is not None)
        check_finite(loss.detach(), step, "loss")

        # 4. one optimizer step, then the constraints' post-step hooks (e.g. projections)
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        self.accelerator.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.after_optimizer_step()

        kl = float(((logp.detach()[rows] - ref_logp) * mask[rows]).sum() / mask[rows].sum().clamp_min(1))
        return StepReport(
            step=step,
            reward=float(rewards.mean()),
            cost=float(costs.mean()),
            loss=float(loss.detach()),
            kl=kl,
            extra={"length": float(mask.sum(1).mean()), "sample_s": t_sample - t0, "step_s": time.perf_counter() - t0},
        )
