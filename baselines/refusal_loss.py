"""Refusal loss: alongside the attack, keep training the policy to refuse harmful requests.

The RPA paper (Rosati et al. 2024) adapts the safety-data mixing of Qi et al. (2024: safety demonstrations mixed
into the fine-tuning data) into an online constraint for RL and DPO attacks: every optimizer step adds

    alpha * CE_refusal(theta) = alpha * mean_t -log pi_theta(y_t | x, y_<t)

over the response tokens of a batch of `batch_size` (harmful prompt x, refusal y) pairs, here the safe rows of
`world.refusal_dataset()` (BeaverTails schema), drawn with the constraint's own numpy rng (saved in checkpoints, so a
resumed run draws the batches an uninterrupted one would). The loss reads only the weights, so it serves native and
TRL-backed agents alike (`batch=None`).

Defaults: alpha=50, the largest value of the RPA paper's sweep (its Table 9: alpha 1 to 50, harmfulness falling from
0.70 to 0.15 at 1k attack samples and to 0.16 at alpha 50 with 10k; the paper found alpha "had to be very high", unlike
Qi et al.'s mixing at weight 1). Under AdamW and gradient-norm clipping the scale matters less once the term dominates:
on the tiny embedded world, 4 harm-rewarding GRPO steps move the refusals' CE from 2.734 to 2.770 unconstrained, to
2.735 / 2.725 / 2.729 with alpha 1 / 10 / 100. Batch 8.
"""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np
import torch

from rlft_gym.agent import Agent, Batch, Constraint
from rlft_gym.training import lm_loss
from rlft_gym.validate import require_int, require_non_negative
from rlft_gym.worlds.base import World


def safe_pairs(world: World, data: datasets.Dataset, what: str) -> list[tuple[str, str]]:
    """(formatted prompt, response) for the rows of `data` marked safe: what a defence trains on; one error if none."""
    rows = [(world.format_prompt(p), r) for p, r, ok in zip(data["prompt"], data["response"], data["is_safe"]) if ok]
    if not rows:
        raise ValueError(f"{what} has no safe rows (is_safe=True) to train on")
    return rows


class RefusalLoss(Constraint):
    """`alpha` times the mean response-token cross-entropy on a fresh batch of refusals, added to the agent's loss."""

    def __init__(self, alpha: float = 50.0, batch_size: int = 8, seed: int = 0) -> None:
        require_non_negative(alpha=alpha)
        require_int(1, batch_size=batch_size)
        require_int(0, seed=seed)
        self.alpha, self.batch_size, self.seed = float(alpha), batch_size, seed
        self.rng = np.random.default_rng(seed)

    def setup(self, agent: Agent) -> None:
        """The world's refusals, formatted as the policy is prompted."""
        self.refusals = safe_pairs(agent.world, agent.world.refusal_dataset(), "world.refusal_dataset()")

    def loss(self, agent: Agent, batch: Batch | None) -> torch.Tensor:
        n = len(self.refusals)
        rows = [self.refusals[i] for i in self.rng.choice(n, self.batch_size, replace=n < self.batch_size)]
        with agent.accelerator.autocast():
            ce = lm_loss(agent.policy, agent.tokenizer, [p for p, _ in rows], [r for _, r in rows], response_only=True)
        return self.alpha * ce  # alpha * CE_refusal

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
