"""Reverse preference attack by DPO (Rafailov et al. 2023) through TRL's `DPOTrainer`, read top to bottom: the
world's preference pairs with a fraction `flip_ratio` of harmlessness labels flipped (the env's own ratio by
default) become prompt/chosen/rejected rows whose prompt is the text the policy is prompted with at attack time,
and the policy is pushed toward the chosen answer relative to the frozen aligned reference:

    loss = -log sigmoid(beta * [(log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))])

Defaults: beta 0.1 and lr 5e-5 as in the RPA paper; batch 8, constant lr, AdamW without weight decay, grad-norm
clip 1.0 (ours); the standard embedded world needs no other values (held-out harmfulness 0.00 -> 0.71 in 200 steps,
seed 0). The reference is the world's frozen aligned policy (`self.reference`). DPO never samples from the
env, so each step's reward, cost and KL come from a probe of the current policy on `probe_prompts` attack prompts
through the env and its wrappers (see `rlft_gym.trl_bridge`); TRL's implicit rewards (rewards/chosen,
rewards/rejected, rewards/margins, rewards/accuracies) are in the report's `extra`. Constraints that add a loss term
are added to TRL's loss; `trl_args` passes further `DPOConfig` fields (see `rlft_gym.trl_bridge`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import gymnasium as gym
import trl

from rlft_gym.agent import Constraint
from rlft_gym.trl_bridge import TRLAgent, completion_text, quiet
from rlft_gym.validate import require_fraction, require_int, require_positive
from rlft_gym.worlds.base import World


def dpo_dataset(world: World, flip_ratio: float) -> datasets.Dataset:
    """Prompt/chosen/rejected rows for TRL: the formatted prompt, and both answers as its continuations."""
    pairs = world.preference_dataset(flip_ratio)

    def to_trl(row: dict) -> dict:
        prompt = world.format_prompt(row["prompt"])
        return {
            "prompt": prompt,
            "chosen": completion_text(prompt, row["chosen"]),
            "rejected": completion_text(prompt, row["rejected"]),
        }

    return pairs.map(to_trl, remove_columns=pairs.column_names)


class DPO(TRLAgent):
    """Direct preference optimisation on (possibly flipped) preference pairs; `learn(n)` takes n optimizer steps."""

    config_arguments = {"per_device_train_batch_size": "batch_size"}

    def __init__(
        self,
        env: gym.Env | gym.vector.VectorEnv,
        policy: str | Path | None = None,
        *,
        learning_rate: float = 5e-5,
        beta: float = 0.1,
        batch_size: int = 8,
        flip_ratio: float | None = None,
        max_grad_norm: float = 1.0,
        probe_prompts: int | None = None,
        output_dir: str | Path | None = None,
        constraints: Sequence[Constraint] = (),
        trl_args: dict[str, Any] | None = None,
        seed: int = 0,
        device: str = "cpu",
        mixed_precision: str = "no",
    ) -> None:
        require_positive(learning_rate=learning_rate, beta=beta, max_grad_norm=max_grad_norm)
        require_int(1, batch_size=batch_size)
        if flip_ratio is not None:
            require_fraction(flip_ratio=flip_ratio)
        super().__init__(
            env,
            policy,
            probe_prompts=probe_prompts,
            output_dir=output_dir,
            constraints=constraints,
            trl_args=trl_args,
            seed=seed,
            device=device,
            mixed_precision=mixed_precision,
        )
        self.learning_rate, self.beta, self.batch_size, self.max_grad_norm = (
            learning_rate,
            beta,
            batch_size,
            max_grad_norm,
        )
        self.flip_ratio = float(self.world.flip_ratio if flip_ratio is None else flip_ratio)
        with quiet():
            dataset = dpo_dataset(self.world, self.flip_ratio)
        self.trainer = self.make_trainer(
            trl.DPOTrainer,
            trl.DPOConfig,
            dict(
                learning_rate=learning_rate,
                beta=beta,
                per_device_train_batch_size=batch_size,
                max_grad_norm=max_grad_norm,
                loss_type=["sigmoid"],
            ),
            train_dataset=dataset,
            ref_model=self.reference,
        )

    def hyperparameters(self) -> dict:
        return {
            k: getattr(self, k)
            for k in (
                "learning_rate",
                "beta",
                "batch_size",
                "flip_ratio",
                "max_grad_norm",
                "probe_prompts",
                "trl_args",
                "seed",
                "mixed_precision",
            )
        }
