"""TAR, tamper-resistant safeguards (Tamirisa et al. 2024): meta-learn weights that stay safe after an attacker
fine-tunes them. Each outer step, first-order:

  1. copy theta to theta'; draw an adversary (harmful SFT from the start, or retain SFT that switches to harmful SFT
     after M ~ Beta(6, 3) * K steps) and its learning rate from `adversary_lrs`;
  2. run K = `inner_steps` AdamW steps of the adversary's next-token loss on theta';
  3. every `inner_subsample`-th inner step, take the tamper-resistance loss L_TR at theta' and add its gradient,
     weighted tamper_weight * exp(0.0625 * (i - (K - 1))) (later, more-tampered steps count more), to a buffer;
  4. on theta: retain loss = CE(retain answers) + representation_retain_weight * mean_l MSE(h_l, h0_l) (h0 the
     starting model's hidden states), plus, for TAR + RepNoise, `repnoise_weight` x RepNoise's loss;
  5. one outer AdamW step on the retain gradient plus the buffer (gradients taken at theta', applied at theta).

L_TR for refusal is the DPO loss with beta `dpo_beta` preferring the defence pair's refusal over its harmful answer,
against the starting model (the paper's refusal objective); "max-entropy" maximises the next-token entropy on harmful
answers (the paper's knowledge-restriction objective). Data: `world.defence_dataset()` pairs (the adversary trains on
their harmful answers, L_TR reads them too, on other rows of the same split) and `world.retain_dataset()`.

The paper runs 750 outer steps of K = 64 inner steps on 8 GPUs, adversary lrs {2e-6, 2e-5, 4e-5}, outer lr 2e-5
(schedule-free AdamW), weight 4.0. Scaled to the embedded world: 40 outer steps of K = 8, adversary lrs
{1e-4, 3e-4, 1e-3} around the native attacks' 1e-4 to 1e-3, outer lr 1e-4 with plain AdamW, in about a minute.
`RepNoiseThenTAR` runs TAR on RepNoise's defended checkpoint (the RPA paper's RepNoise -> TAR).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from rlft_gym.baselines.rep_removal import RepNoise, defence_inputs
from rlft_gym.training import encode_responses, lm_loss
from rlft_gym.transform import Resume, Transform, draw_rows, optimize, save_defended
from rlft_gym.validate import (
    check_finite,
    require_int,
    require_non_negative,
    require_one_of,
    require_positive,
)

TAMPER_LOSSES = ("refusal-dpo", "max-entropy")
ADVERSARIES = ("harmful-sft", "retain-then-harmful")


def sequence_logprob(model: PreTrainedModel, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor):
    """Sum over each row's labelled tokens of log p(token | prefix)."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    target = labels[:, 1:]
    keep = target != -100
    logp = logits.log_softmax(-1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (logp * keep).sum(-1)


def dpo_loss(chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected, beta: float):
    """-log sigmoid(beta * ((log pi(y_w) - log pi0(y_w)) - (log pi(y_l) - log pi0(y_l)))), mean over pairs."""
    return -F.logsigmoid(beta * ((chosen - ref_chosen) - (rejected - ref_rejected))).mean()


def answer_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token entropy over the labelled (answer) positions."""
    logp = logits[:, :-1].log_softmax(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    keep = labels[:, 1:] != -100
    return entropy[keep].mean()


def inner_weight(i: int, k: int, tamper_weight: float) -> float:
    """The weight of inner step i's (0-based) tamper-resistance gradient among K: later steps count more."""
    return tamper_weight * math.exp(0.0625 * (i - (k - 1)))


@dataclass(frozen=True)
class TAR(Transform):
    """TAR's first-order meta-learning loop (module docstring), with the adversaries and L_TR explicit."""

    name: ClassVar[str] = "tar"

    outer_steps: int = 40
    inner_steps: int = 8
    inner_subsample: int = 2
    adversary_lrs: tuple[float, ...] = (1e-4, 3e-4, 1e-3)
    adversaries: tuple[str, ...] = ADVERSARIES
    adversary_batch_size: int = 8
    tamper_loss: str = "refusal-dpo"
    dpo_beta: float = 0.1
    tamper_weight: float = 4.0
    retain_weight: float = 1.0
    representation_retain_weight: float = 1.0
    repnoise_weight: float = 0.0
    learning_rate: float = 1e-4
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        require_int(1, outer_steps=self.outer_steps, inner_steps=self.inner_steps, batch_size=self.batch_size)
        require_int(1, inner_subsample=self.inner_subsample, adversary_batch_size=self.adversary_batch_size)
        require_int(0, seed=self.seed)
        require_one_of("tamper_loss", self.tamper_loss, TAMPER_LOSSES)
        if not self.adversaries or not self.adversary_lrs:
            raise ValueError(f"adversaries={self.adversaries} and adversary_lrs={self.adversary_lrs} must be non-empty")
        for adversary in self.adversaries:
            require_one_of("adversary", adversary, ADVERSARIES)
        require_positive(learning_rate=self.learning_rate, dpo_beta=self.dpo_beta, **_named("lr", self.adversary_lrs))
        require_non_negative(
            tamper_weight=self.tamper_weight,
            retain_weight=self.retain_weight,
            representation_retain_weight=self.representation_retain_weight,
            repnoise_weight=self.repnoise_weight,
        )

    def tamper_resistance(self, model: PreTrainedModel, frozen: PreTrainedModel, tokenizer, pairs) -> torch.Tensor:
        """L_TR at the (adapted) `model` on defence `pairs`: DPO toward refusals, or minus the harmful answers'
        entropy."""
        device = next(model.parameters()).device
        prompts = [r["prompt"] for r in pairs]
        harmful = encode_responses(tokenizer, prompts, [r["harmful"] for r in pairs], True, device)
        if self.tamper_loss == "max-entropy":
            return -answer_entropy(model(input_ids=harmful[0], attention_mask=harmful[1]).logits, harmful[2])
        refusal = encode_responses(tokenizer, prompts, [r["refusal"] for r in pairs], True, device)
        with torch.no_grad():
            ref_w, ref_l = sequence_logprob(frozen, *refusal), sequence_logprob(frozen, *harmful)
        return dpo_loss(
            sequence_logprob(model, *refusal), sequence_logprob(model, *harmful), ref_w, ref_l, self.dpo_beta
        )

    def tamper_gradients(self, model, frozen, tokenizer, pairs, retain, step: int) -> tuple[list, float]:
        """Steps 1-3 for outer step `step`: the buffered, weighted L_TR gradients (one per parameter of `model`) and
        the mean L_TR seen."""
        draw = np.random.default_rng([self.seed, step, 1])
        adversary = self.adversaries[draw.integers(len(self.adversaries))]
        lr = float(self.adversary_lrs[draw.integers(len(self.adversary_lrs))])
        switch = int(draw.beta(6, 3) * self.inner_steps) if adversary == "retain-then-harmful" else 0
        attacked = copy.deepcopy(model)
        inner = torch.optim.AdamW(attacked.parameters(), lr=lr, weight_decay=0.0)
        buffer = [torch.zeros_like(p) for p in model.parameters()]
        seen = []
        for i in range(self.inner_steps):
            rows = draw_rows(retain if i < switch else pairs, self.adversary_batch_size, self.seed + 2, step * 1000 + i)
            answer = "response" if i < switch else "harmful"
            loss = lm_loss(attacked, tokenizer, [r["prompt"] for r in rows], [r[answer] for r in rows], True)
            inner.zero_grad(set_to_none=True)
            loss.backward()
            inner.step()
            if (i + 1) % self.inner_subsample == 0:
                held = draw_rows(pairs, self.batch_size, self.seed + 3, step * 1000 + i)
                inner.zero_grad(set_to_none=True)
                tr = self.tamper_resistance(attacked, frozen, tokenizer, held)
                tr.backward()
                w = inner_weight(i, self.inner_steps, self.tamper_weight)
                for b, p in zip(buffer, attacked.parameters(), strict=True):
                    if p.grad is not None:
                        b.add_(p.grad, alpha=w)
                seen.append(float(tr.detach()))
        return buffer, float(np.mean(seen)) if seen else float("nan")

    def retain_loss(self, model, frozen, tokenizer, retain) -> torch.Tensor:
        """Step 4's retain term: CE on retain answers plus the hidden-state MSE to the starting model on them."""
        device = next(model.parameters()).device
        ids, mask, labels = encode_responses(
            tokenizer, [r["prompt"] for r in retain], [r["response"] for r in retain], True, device
        )
        out = model(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
        loss = self.retain_weight * out.loss
        if self.representation_retain_weight:
            with torch.no_grad():
                h0 = frozen(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            where = mask == 1
            mse = torch.stack([F.mse_loss(h[where], g[where]) for h, g in zip(out.hidden_states[1:], h0[1:])]).mean()
            loss = loss + self.representation_retain_weight * mse
        return loss

    def train(
        self, env: gym.Env | gym.vector.VectorEnv, policy: str | Path, out: Path, resume: Resume, progress: bool
    ) -> dict[str, Any]:
        """TAR from the checkpoint `policy` (the env's, or another defence's result)."""
        world = env.unwrapped.world
        pairs, retain, frozen = defence_inputs(self.name, world, policy)
        repnoise = RepNoise(seed=self.seed, batch_size=self.batch_size)
        control = repnoise.control_vector(frozen.get_input_embeddings().embedding_dim).to(world.device)
        last: dict[str, float] = {}

        def backward_at(model: PreTrainedModel, step: int) -> float:
            batch = draw_rows(retain, self.batch_size, self.seed + 1, step)
            buffer, tr = self.tamper_gradients(model, frozen, world.tokenizer, pairs, retain, step)
            loss = self.retain_loss(model, frozen, world.tokenizer, batch)
            if self.repnoise_weight:
                rn, _ = repnoise.loss(
                    model,
                    frozen,
                    world.tokenizer,
                    draw_rows(pairs, self.batch_size, self.seed, step),
                    batch,
                    control,
                    step,
                )
                loss = loss + self.repnoise_weight * rn
            loss.backward()
            for p, b in zip(model.parameters(), buffer, strict=True):
                p.grad = b if p.grad is None else p.grad + b
            check_finite(tr, step + 1, f"{self.name} tamper-resistance loss")
            last.update(tamper_resistance=tr)
            return float(loss.detach())

        model, loss, start = optimize(
            self.name, world, policy, resume, self.outer_steps, self.learning_rate, backward_at, progress, self.seed
        )
        save_defended(model, world, out)
        return {"final_loss": loss, **{f"final_{k}": v for k, v in last.items()}, "resumed_from_step": start}


def _named(prefix: str, values: tuple[float, ...]) -> dict[str, float]:
    """Keyword names for a tuple's entries, so a validator's error names the bad one (`lr0=...`)."""
    return {f"adversary_{prefix}{i}": v for i, v in enumerate(values)}


@dataclass(frozen=True)
class TARRepNoise(TAR):
    """TAR + RepNoise: TAR whose outer objective also carries RepNoise's loss (weight 1)."""

    name: ClassVar[str] = "tar-repnoise"

    repnoise_weight: float = 1.0


@dataclass(frozen=True)
class RepNoiseThenTAR(TAR):
    """RepNoise -> TAR: RepNoise's defended checkpoint (its defaults, this seed; cached like any transform), then
    TAR on it."""

    name: ClassVar[str] = "repnoise-tar"

    def config(self) -> dict[str, Any]:
        """TAR's settings and those of the RepNoise run it starts from."""
        return {**super().config(), "repnoise": RepNoise(seed=self.seed).config()}

    def train(
        self, env: gym.Env | gym.vector.VectorEnv, policy: str | Path, out: Path, resume: Resume, progress: bool
    ) -> dict[str, Any]:
        start = RepNoise(seed=self.seed).apply(env, progress=progress)
        return {**super().train(env, start, out, resume, progress), "repnoise_checkpoint": str(start)}
