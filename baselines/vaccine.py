"""Vaccine (Huang, Hu, Liu 2024): keep the policy's alignment robust to perturbations of its hidden states.

Vaccine is perturbation-aware alignment: min_theta max_{||e||_2 <= rho} L_align(theta; h_l + e_l), with h_l the
output of transformer block l and e = (e_1..e_L) one perturbation over all blocks together. Its inner max is taken
to first order, as in the authors' loop:

    pass 1: g_l = dL_align / dh_l               (each block's output, one batch of alignment data)
            e_l = rho * g_l / ||(g_1, ..., g_L)||_2     (so sum_l ||e_l||^2 = rho^2; e carries no gradient)
    pass 2: L_vaccine = L_align(theta; h_l + e_l)  (e_l added to each block's output by forward hooks)

and the optimizer follows the gradient of pass 2. The authors record g_l with backward hooks; here it is
torch.autograd.grad at the block outputs (caught by forward hooks), which leaves the weights' .grad untouched. Run
online against an attack (as the RPA paper ran it, carrying the perturbation into the attack's training step), the
constraint adds `lam * L_vaccine` to the attack's loss, with L_align the completion-only next-token loss on
`batch_size` rows of the world's refusals (`world.refusal_dataset()`, formatted as the policy is prompted). The term
reads no attack batch, so it serves native agents (GRPO, PPO) and TRL-backed ones (SFT, DPO, TRL-GRPO) alike; each
optimizer step draws its rows from (agent seed, optimizer step), so a resumed run draws the same rows with no saved
state.

Defaults: rho 2 (the authors' setting). It is a norm over the whole batch of hidden states: in the standard embedded
world a batch of 8 refusals has hidden states of norm about 130-165 per block, so rho 2 is ~1% of them, the small
perturbation Vaccine means; the RPA paper's rho 100 (for 7B models with 4096-wide states) would be more than half of
the embedded states themselves. lam 1 (the perturbed alignment loss counts as much as the attack's loss), batch 8.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from rlft_gym.agent import Agent, Batch, Constraint
from rlft_gym.training import lm_loss
from rlft_gym.validate import require_int, require_non_negative


def transformer_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer blocks of a causal LM (GPT-2's `transformer.h`, Llama-style `model.layers`), inside a peft
    wrapper if any: where Vaccine perturbs hidden states and Security Vectors places its adapter."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    for path in (("transformer", "h"), ("model", "layers")):
        blocks = inner
        for name in path:
            blocks = getattr(blocks, name, None)
        if isinstance(blocks, torch.nn.ModuleList):
            return blocks
    raise ValueError(
        f"cannot find the transformer blocks of {type(inner).__name__}: expected GPT-2's transformer.h or a "
        "Llama-style model.layers"
    )


def block_output(output: torch.Tensor | tuple) -> torch.Tensor:
    """The hidden states a block returns (a tensor, or the first element of a tuple)."""
    return output[0] if isinstance(output, tuple) else output


def with_block_output(output: torch.Tensor | tuple, hidden: torch.Tensor) -> torch.Tensor | tuple:
    """The block's return value with its hidden states replaced by `hidden`."""
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def vaccine_perturbation(grads: list[torch.Tensor], rho: float) -> list[torch.Tensor]:
    """e_l = rho * g_l / ||(g_1..g_L)||_2, detached: the first-order worst case of norm rho over all blocks."""
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
    return [(rho * g / (norm + 1e-7)).detach() for g in grads]


def perturbed_loss(
    model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor], rho: float
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Vaccine's two passes of `loss_fn()` on `model`: the loss with each block's output shifted by its perturbation
    (with grad to the weights), and the perturbations; every hook is removed on the way out."""
    blocks = transformer_blocks(model)
    outputs: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda _m, _i, out: outputs.append(block_output(out))) for b in blocks]
    try:
        grads = torch.autograd.grad(loss_fn(), outputs)  # pass 1: dL/dh_l, no gradient into the weights' .grad
    finally:
        for h in hooks:
            h.remove()
    perturbation = vaccine_perturbation(list(grads), rho)
    hooks = [
        b.register_forward_hook(lambda _m, _i, out, e=e: with_block_output(out, block_output(out) + e))
        for b, e in zip(blocks, perturbation)
    ]
    try:
        return loss_fn(), perturbation  # pass 2: L(theta; h + e)
    finally:
        for h in hooks:
            h.remove()


class Vaccine(Constraint):
    """`lam` times the refusal loss with every block's output perturbed by Vaccine's worst-case e (norm `rho`)."""

    def __init__(self, rho: float = 2.0, lam: float = 1.0, batch_size: int = 8) -> None:
        require_non_negative(rho=rho, lam=lam)
        require_int(1, batch_size=batch_size)
        self.rho, self.lam, self.batch_size = float(rho), float(lam), batch_size
        self.prompts: list[str] = []
        self.responses: list[str] = []

    def setup(self, agent: Agent) -> None:
        """Check the policy has blocks to perturb and load the world's refusals, formatted as attack prompts."""
        transformer_blocks(agent.policy)
        rows = agent.world.refusal_dataset()
        self.prompts = [agent.world.format_prompt(p) for p in rows["prompt"]]
        self.responses = list(rows["response"])

    def alignment_rows(self, agent: Agent) -> np.ndarray:
        """This optimizer step's refusal rows: drawn from (agent seed, optimizer step), so a resumed run redraws
        them."""
        rng = np.random.default_rng([agent.seed, agent.optimizer_steps])
        return rng.choice(len(self.prompts), size=min(self.batch_size, len(self.prompts)), replace=False)

    def loss(self, agent: Agent, batch: Batch | None) -> torch.Tensor:
        rows = self.alignment_rows(agent)
        prompts, responses = [self.prompts[i] for i in rows], [self.responses[i] for i in rows]
        loss, _ = perturbed_loss(
            agent.policy,
            lambda: lm_loss(agent.policy, agent.tokenizer, prompts, responses, response_only=True),
            self.rho,
        )
        return self.lam * loss
