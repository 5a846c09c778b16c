"""Lisa (Huang et al. 2024, "Lisa: Lazy Safety Alignment for Large Language Models against Harmful Fine-tuning"),
as the RPA paper (Rosati et al. 2024) carries it from SFT into RL and DPO attacks: bi-state optimisation with a
proximal term that keeps the two states close.

Fine-tune state: the attack's own optimizer steps, with this constraint's `loss` adding

    rho / 2 * ||theta - theta_align||^2            (theta_align: the weights when alignment last ended)

Alignment state: after every `finetune_steps` attack optimizer steps, `after_step` runs `align_steps` steps of the
constraint's own AdamW on alignment batches (the world's harmful prompts with refusals, `world.refusal_dataset()`'s
safe rows, plus a `benign_fraction` of helpful answers to benign prompts from `world.benign_dataset()`):

    CE_align(theta) + rho / 2 * ||theta - theta_ft||^2   (theta_ft: the weights when the attack's state ended)

then hands back to the attack. Norms sum over trainable parameters only (the adapters under LoRA); CE_align is the
mean next-token loss on response tokens. Training starts in the fine-tune state with theta_align = the initial,
aligned weights. The alignment state runs to completion inside `after_step`, so a checkpoint is always taken in the
fine-tune state; `state_dict` holds the step clock, both anchors, the alignment optimizer's moments and the data rng.

The authors' code turns the proximal term off for the first 10% of all steps (a comment says it hurts convergence
early on). A constraint does not know the run's length, so `warmup_steps` gives that count in attack optimizer steps:
the term is off, in both states, until that many have been taken (default 0: always on).

Defaults: rho=100, the RPA paper's value (its tuning, Table 9, found any rho below 100 a much poorer defence; the Lisa
authors' released script uses 1). The authors alternate 900 fine-tune / 100 alignment steps (their argparse default:
500 / 500) over runs of thousands of steps; embedded-world runs are about 100 steps (the experiment runner's
default), so we keep the released 9:1 split at 18 / 2: five alignment states in a 100-step GRPO run (PPO takes
several optimizer steps per agent step, so it switches more often per agent step). Alignment lr 1e-4 (the authors'
1e-5 suits a 7B LoRA model; 1e-4 matches native GRPO's lr and the refusal-SFT transform's on the embedded world,
whose own alignment used 1e-3), batch 8 (theirs: 5), gradient norm clipped to 1.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rlft_gym.agent import Agent, Batch, Constraint
from rlft_gym.baselines.refusal_loss import safe_pairs
from rlft_gym.training import lm_loss
from rlft_gym.validate import (
    check_finite,
    require_fraction,
    require_int,
    require_non_negative,
    require_positive,
)


def proximal(params: Sequence[torch.Tensor], anchor: Sequence[torch.Tensor], rho: float) -> torch.Tensor:
    """rho / 2 * sum_i ||p_i - a_i||^2: Lisa's proximal term as a pure function, so it is checked by hand."""
    return rho / 2 * sum(((p - a) ** 2).sum() for p, a in zip(params, anchor, strict=True))


class Lisa(Constraint):
    """Bi-state Lisa: the attack's steps pulled toward the last aligned weights, and every `finetune_steps` attack
    optimizer steps `align_steps` refusal-SFT steps pulled toward the attack's weights."""

    def __init__(
        self,
        rho: float = 100.0,
        finetune_steps: int = 18,
        align_steps: int = 2,
        learning_rate: float = 1e-4,
        batch_size: int = 8,
        benign_fraction: float = 0.0,
        warmup_steps: int = 0,
        max_grad_norm: float = 1.0,
        seed: int = 0,
    ) -> None:
        require_non_negative(rho=rho)
        require_int(1, finetune_steps=finetune_steps, align_steps=align_steps, batch_size=batch_size)
        require_int(0, warmup_steps=warmup_steps, seed=seed)
        require_positive(learning_rate=learning_rate, max_grad_norm=max_grad_norm)
        require_fraction(benign_fraction=benign_fraction)
        self.rho, self.finetune_steps, self.align_steps = float(rho), finetune_steps, align_steps
        self.learning_rate, self.batch_size, self.benign_fraction = learning_rate, batch_size, benign_fraction
        self.warmup_steps, self.max_grad_norm, self.seed = warmup_steps, max_grad_norm, seed
        self.clock = 0  # attack optimizer steps since the last alignment state
        self.align_steps_taken = 0

    def setup(self, agent: Agent) -> None:
        """Alignment data, the trainable parameters, both anchors at the initial weights, the alignment optimizer."""
        world = agent.world
        self.refusals = safe_pairs(world, world.refusal_dataset(), "world.refusal_dataset()")
        self.benign = (
            safe_pairs(world, world.benign_dataset(), "world.benign_dataset()") if self.benign_fraction else []
        )
        self.params = [p for p in agent.policy.parameters() if p.requires_grad]
        self.align_anchor = [p.detach().clone() for p in self.params]  # theta_align
        self.finetune_anchor = [p.detach().clone() for p in self.params]  # theta_ft
        self.optimizer = torch.optim.AdamW(self.params, lr=self.learning_rate, weight_decay=0.0)
        self.rng = np.random.default_rng(self.seed)

    def proximal_on(self, agent: Agent) -> bool:
        """The proximal term applies once `warmup_steps` attack optimizer steps are done (the authors' warm-up)."""
        return self.rho > 0 and agent.optimizer_steps >= self.warmup_steps

    def loss(self, agent: Agent, batch: Batch | None) -> torch.Tensor | None:
        # fine-tune state: rho / 2 * ||theta - theta_align||^2
        return proximal(self.params, self.align_anchor, self.rho) if self.proximal_on(agent) else None

    def after_step(self, agent: Agent, optimizer_step: int, agent_step: int) -> None:
        """Count the attack's step; after every `finetune_steps` of them, run the alignment state and switch back."""
        self.clock += 1
        if self.clock < self.finetune_steps:
            return
        self.clock = 0
        self.finetune_anchor = [p.detach().clone() for p in self.params]  # theta_ft: the switch into alignment
        was_training = agent.policy.training
        agent.policy.train()
        for _ in range(self.align_steps):
            self.align_step(agent, optimizer_step)
        agent.policy.train(was_training)
        self.align_anchor = [p.detach().clone() for p in self.params]  # theta_align: the switch out of alignment

    def draw(self) -> tuple[list[str], list[str]]:
        """One alignment batch from the constraint's rng: refusals, and `benign_fraction` of it benign help."""
        n_benign = round(self.benign_fraction * self.batch_size)
        rows = []
        for pool, n in ((self.refusals, self.batch_size - n_benign), (self.benign, n_benign)):
            if n:
                rows += [pool[i] for i in self.rng.choice(len(pool), n, replace=len(pool) < n)]
        return [p for p, _ in rows], [r for _, r in rows]

    def align_step(self, agent: Agent, optimizer_step: int) -> None:
        """One alignment optimizer step: CE_align + rho / 2 * ||theta - theta_ft||^2, gradient norm clipped."""
        prompts, responses = self.draw()
        with agent.accelerator.autocast():
            loss = lm_loss(agent.policy, agent.tokenizer, prompts, responses, response_only=True)
        if self.proximal_on(agent):
            loss = loss + proximal(self.params, self.finetune_anchor, self.rho)  # + rho / 2 * ||theta - theta_ft||^2
        check_finite(loss.detach(), optimizer_step, "Lisa alignment loss")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)  # leave no alignment gradient for the attack's next step
        self.align_steps_taken += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "clock": self.clock,
            "align_steps_taken": self.align_steps_taken,
            "align_anchor": self.align_anchor,
            "finetune_anchor": self.finetune_anchor,
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.clock, self.align_steps_taken = int(state["clock"]), int(state["align_steps_taken"])
        self.align_anchor = [a.clone() for a in state["align_anchor"]]
        self.finetune_anchor = [a.clone() for a in state["finetune_anchor"]]
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
