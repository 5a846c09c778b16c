"""KL constraint: penalise divergence from the frozen reference policy, beta * KL(pi || pi_ref) per token.

Uses the non-negative, unbiased k3 estimator on sampled tokens, exp(q - p) - (q - p) - 1 with p = log pi and
q = log pi_ref (Schulman's approximations; as in TRL's GRPO). The RPA paper reports the KL constraint alone
does not stop the attack; on the embedded world beta 0.1 and 1.0 do not delay the break either.
"""

from __future__ import annotations

import torch

from rlft_gym.agent import Agent, Batch, Constraint
from rlft_gym.validate import require_non_negative


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the mask of the per-token k3 estimate exp(q - p) - (q - p) - 1 of KL(pi || pi_ref) (p = log pi, q = log
    pi_ref on tokens sampled from pi): the constraint's estimator as a pure function, tested against an exact KL."""
    delta = ref_logp - logp
    kl = (torch.exp(delta) - delta - 1.0) * mask
    return kl.sum() / mask.sum().clamp_min(1.0)


class KLConstraint(Constraint):
    """`beta` times the mean per-token KL estimate to the reference, added to the agent's loss."""

    needs_reference = True

    def __init__(self, beta: float = 0.1) -> None:
        require_non_negative(beta=beta)
        self.beta = float(beta)

    def loss(self, agent: Agent, batch: Batch) -> torch.Tensor:
        return self.beta * k3_kl(batch.logp, batch.ref_logp, batch.rollout.response_mask.float())
