"""Harmful fine-tuning by SFT through TRL's `SFTTrainer`, read top to bottom: the world's harmful request/answer
pairs (BeaverTails schema) become prompt/completion rows whose prompt is exactly the text the policy is prompted
with at attack time (`world.format_prompt`), and the policy is trained on the completions only.

Defaults: lr 3e-5 as in the RPA paper; batch 8, constant lr, AdamW without weight decay, grad-norm clip 1.0 (ours).
The standard embedded world needs no other values: held-out harmfulness 0.00 -> 0.72 in 200 steps (seed 0).
`data="mixed"` adds the world's refusals of the same requests (harmful + refusal rows, shuffled by the trainer).
`data="preferred"` is SFT's label flip (the RPA paper's SFT under label noise): the world's preference pairs with
exactly one safe response, flipped at `flip_ratio` (default: the world's) by the shared RPA flip, each trained on its
preferred response, so a share `flip_ratio` of the rows are harmful answers and the rest safe ones.
SFT never samples from the env, so each step's reward, cost and KL come from a probe of the current policy on
`probe_prompts` attack prompts through the env and its wrappers (see `rlft_gym.trl_bridge`). Constraints that add a
loss term (e.g. a proximal term to the aligned weights) are added to TRL's loss; `trl_args` passes further `SFTConfig`
fields (e.g. `gradient_accumulation_steps`, which splits each step's `batch_size` examples into micro-batches).
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
from rlft_gym.validate import require_fraction, require_int, require_one_of, require_positive
from rlft_gym.worlds.base import World

DATA = ("harmful", "mixed", "preferred")


def sft_dataset(world: World, data: str, flip_ratio: float | None = None) -> datasets.Dataset:
    """Prompt/completion rows for TRL: the formatted prompt, and the answer as its continuation."""
    if data == "preferred":
        pairs = world.preference_dataset(flip_ratio).filter(
            lambda r: bool(r["is_response_0_safe"]) != bool(r["is_response_1_safe"])
        )
        rows = pairs.select_columns(["prompt", "chosen"]).rename_column("chosen", "response")
    else:
        rows = world.harmful_sft_dataset()
    if data == "mixed":
        rows = datasets.concatenate_datasets([rows, world.refusal_dataset()])

    def to_trl(row: dict) -> dict:
        prompt = world.format_prompt(row["prompt"])
        return {"prompt": prompt, "completion": completion_text(prompt, row["response"])}

    return rows.map(to_trl, remove_columns=rows.column_names)


class SFT(TRLAgent):
    """Supervised fine-tuning on harmful completions (completion-only loss); `learn(n)` takes n optimizer steps."""

    config_arguments = {"per_device_train_batch_size": "batch_size"}

    def __init__(
        self,
        env: gym.Env | gym.vector.VectorEnv,
        policy: str | Path | None = None,
        *,
        learning_rate: float = 3e-5,
        batch_size: int = 8,
        data: str = "harmful",
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
        require_positive(learning_rate=learning_rate, max_grad_norm=max_grad_norm)
        require_int(1, batch_size=batch_size)
        require_one_of("data", data, DATA)
        if flip_ratio is not None:
            require_fraction(flip_ratio=flip_ratio)
            if data != "preferred":
                raise ValueError(f"flip_ratio={flip_ratio!r} applies only to data='preferred', not data={data!r}")
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
        self.learning_rate, self.batch_size, self.data, self.max_grad_norm = (
            learning_rate,
            batch_size,
            data,
            max_grad_norm,
        )
        self.flip_ratio = None  # the share of flipped pairs, for data="preferred" only
        if data == "preferred":
            self.flip_ratio = float(self.world.flip_ratio if flip_ratio is None else flip_ratio)
        with quiet():
            dataset = sft_dataset(self.world, data, self.flip_ratio)
        self.trainer = self.make_trainer(
            trl.SFTTrainer,
            trl.SFTConfig,
            dict(
                learning_rate=learning_rate,
                per_device_train_batch_size=batch_size,
                max_grad_norm=max_grad_norm,
                completion_only_loss=True,
            ),
            train_dataset=dataset,
        )

    def hyperparameters(self) -> dict:
        return {
            k: getattr(self, k)
            for k in (
                "learning_rate",
                "batch_size",
                "data",
                "flip_ratio",
                "max_grad_norm",
                "probe_prompts",
                "trl_args",
                "seed",
                "mixed_precision",
            )
        }
