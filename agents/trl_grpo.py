"""GRPO (Shao et al. 2024) through TRL's `GRPOTrainer`, driven by the env, read top to bottom: TRL samples a group
of completions per attack prompt; its reward function serves them to the env - through its wrappers, e.g.
`CostGatedReward` - by prompt id and returns the env's rewards; TRL forms group-relative advantages and takes one
optimizer step. The env's cost and the KL to the reference are logged from the reward function (TRL's `log_metric`).

Defaults match our native GRPO (`rlft_gym.agents.GRPO`) so the two are comparable: lr 1e-4, group 8,
mean-centred advantages (`scale_rewards="none"`), Dr. GRPO loss normalised by batch x max tokens
(`loss_type="dr_grpo"`), one gradient step per batch (`num_iterations=1`), no KL penalty (`beta=0`), grad-norm clip
1.0, constant lr, temperature 1 without top-k / top-p. `beta > 0` is TRL's k3 KL penalty to a frozen copy of the
initial policy (TRL builds it); a `KLConstraint(beta)` in `constraints` is applied the same way; other constraints
that add a loss term are added to TRL's loss. `trl_args` passes further `GRPOConfig` fields (e.g. use_vllm,
gradient_accumulation_steps, which splits each step's batch of groups into micro-batches; see `rlft_gym.trl_bridge`).
On the standard embedded world (16 prompts x 8): held-out harmfulness 0.00 -> 0.96 in 80 steps (seed 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import gymnasium as gym
import numpy as np
import torch
import trl
from transformers import TrainerState

from rlft_gym import generation
from rlft_gym.agent import Constraint
from rlft_gym.agents.grpo import check_hyperparameters
from rlft_gym.callbacks import StepReport
from rlft_gym.trl_bridge import TRLAgent
from rlft_gym.validate import check_finite, require_one_of

SCALE_REWARDS = ("none", "group", "batch")
LOSS_TYPES = ("dr_grpo", "grpo", "dapo", "bnpo")


class _EpochSeededSampler(torch.utils.data.Sampler):
    """TRL's prompt sampler, reshuffled at each epoch from seed + epoch. TRL's own restarts its generator at every
    `train()`, so a run resumed after an epoch boundary would replay the first epoch's order."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler

    def set_epoch(self, epoch: int) -> None:
        if self.sampler.shuffle:
            self.sampler.generator.manual_seed(self.sampler.seed + epoch)

    def __iter__(self):
        return iter(self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class _GRPOTrainer(trl.GRPOTrainer):
    """`trl.GRPOTrainer` with an epoch-seeded prompt order, so resumed runs continue the data order exactly."""

    def _get_train_sampler(self, dataset: datasets.Dataset | None = None) -> torch.utils.data.Sampler:
        return _EpochSeededSampler(super()._get_train_sampler(dataset))


class TRLGRPO(TRLAgent):
    """TRL's GRPO on an rlft-gym env; `learn(n)` takes n optimizer steps, each on a fresh batch of groups.

    With a vector env, each step uses the whole batch: `num_envs // group_size` prompts x `group_size` samples.
    With a single env, each step uses `num_prompts x group_size` completions, stepped one by one.
    """

    config_arguments = {
        "num_generations": "group_size",
        "per_device_train_batch_size": "num_prompts",
        "generation_batch_size": "num_prompts",
    }

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
        loss_type: str = "dr_grpo",
        max_grad_norm: float = 1.0,
        output_dir: str | Path | None = None,
        constraints: Sequence[Constraint] = (),
        trl_args: dict[str, Any] | None = None,
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
            scale_choices=SCALE_REWARDS,
        )
        require_one_of("loss_type", loss_type, LOSS_TYPES)
        from rlft_gym.baselines.kl import KLConstraint

        beta += sum(c.beta for c in constraints if isinstance(c, KLConstraint))  # TRL's KL term is the same k3 estimate
        constraints = [c for c in constraints if not isinstance(c, KLConstraint)]
        super().__init__(
            env,
            policy,
            probe_prompts=0,
            output_dir=output_dir,
            constraints=constraints,
            trl_args=trl_args,
            seed=seed,
            device=device,
            mixed_precision=mixed_precision,
        )
        self.learning_rate, self.group_size, self.num_prompts, self.temperature = (
            learning_rate,
            group_size,
            num_prompts,
            temperature,
        )
        self.beta, self.scale_rewards, self.loss_type, self.max_grad_norm = (
            beta,
            scale_rewards,
            loss_type,
            max_grad_norm,
        )
        # the attack prompts, formatted as the policy sees them, with their env prompt id for the reward function
        prompts = datasets.Dataset.from_dict(
            {
                "prompt": [self.world.format_prompt(p) for p in self.prompts.prompts],
                "prompt_id": list(range(len(self.prompts))),
            }
        )
        self.trainer = self.make_trainer(
            _GRPOTrainer,
            trl.GRPOConfig,
            dict(
                learning_rate=learning_rate,
                num_generations=group_size,
                per_device_train_batch_size=num_prompts * group_size,
                generation_batch_size=num_prompts * group_size,
                num_iterations=1,
                max_completion_length=self.max_new_tokens,
                temperature=temperature,
                top_p=1.0,
                top_k=0,
                beta=beta,
                scale_rewards=scale_rewards,
                loss_type=loss_type,
                max_grad_norm=max_grad_norm,
                log_completions=False,
            ),
            reward_funcs=[self.env_reward],
            train_dataset=prompts,
        )

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
                "loss_type",
                "max_grad_norm",
                "trl_args",
                "seed",
                "mixed_precision",
            )
        }

    def env_reward(
        self,
        prompts: list[str],
        completions: list[str],
        completion_ids: list[list[int]],
        prompt_id: list[int],
        trainer_state: TrainerState,
        log_metric: Any,
        **kwargs: Any,
    ) -> list[float]:
        """TRL reward function: the completions scored through the env by prompt id; logs the mean cost and the KL."""
        rollout = self.rollout(prompts, completion_ids, completions)
        _, rewards, costs = self.env_feedback(np.asarray(prompt_id), lambda _: rollout)
        check_finite(rewards.sum(), trainer_state.global_step + 1, "reward")
        log_metric("cost", float(costs.mean()))
        # one completion per group: an unbiased KL estimate at 1/group_size of the cost (as native GRPO reports it)
        log_metric("kl_to_reference", self.kl_to_reference(rollout[:: self.group_size]))
        return rewards.tolist()

    def rollout(self, prompts: list[str], completion_ids: list[list[int]], texts: list[str]) -> generation.Rollout:
        """TRL's formatted prompts and completion token ids laid out as our `Rollout` (left-padded prompt, response)."""
        return generation.rollout_from_ids(self.tokenizer, prompts, completion_ids, texts, self.device)

    def step_report(self, step: int, logs: dict[str, float]) -> StepReport:
        """The trainer's loss; the env's mean reward and cost and the KL on the step's own batch; TRL's logs as
        extra."""
        reported = ("loss", "reward", "cost", "kl_to_reference")
        extra = {k: float(v) for k, v in logs.items() if k not in reported and isinstance(v, (int, float))}
        return StepReport(
            step=step,
            reward=float(logs["reward"]),
            cost=float(logs["cost"]),
            loss=float(logs["loss"]),
            kl=float(logs["kl_to_reference"]),
            extra=extra,
        )
