"""Lagrange multipliers for constrained RL, named and meant as OmniSafe names and means them.

`Lagrange` is gradient ascent on the dual: with mean episode cost J_c and limit d, the multiplier follows
lambda <- clip(lambda + lr * (J_c - d), 0, upper_bound) (the step of `lambda_optimizer` on the loss -lambda (J_c - d)),
so it grows while the constraint is violated and shrinks once it holds; at `cost_limit=0` any positive cost raises it.
`PIDLagrangian` is the PID controller of Stooke, Achiam and Abbeel (2020), as OmniSafe's CPPO-PID: a proportional term
on a smoothed violation, an integral that never goes below zero, and a derivative on the rise of the smoothed cost.
Both keep their whole state in `state_dict()` so agents save it in their checkpoints.
"""

from __future__ import annotations

import copy
from collections import deque
from typing import Any

import torch

from rlft_gym.validate import require_fraction, require_int, require_non_negative, require_one_of, require_positive

LAMBDA_OPTIMIZERS = ("SGD", "Adam", "AdamW", "RMSprop")


class Lagrange:
    """The multiplier lambda >= 0 of one cost constraint J_c <= `cost_limit`, learned by `lambda_optimizer`."""

    def __init__(
        self,
        cost_limit: float,
        lagrangian_multiplier_init: float = 0.001,
        lambda_lr: float = 0.035,
        lambda_optimizer: str = "Adam",
        lagrangian_upper_bound: float | None = None,
    ) -> None:
        require_non_negative(cost_limit=cost_limit, lagrangian_multiplier_init=lagrangian_multiplier_init)
        require_positive(lambda_lr=lambda_lr)
        require_one_of("lambda_optimizer", lambda_optimizer, LAMBDA_OPTIMIZERS)
        if lagrangian_upper_bound is not None:
            require_positive(lagrangian_upper_bound=lagrangian_upper_bound)
        self.cost_limit, self.lambda_lr, self.lagrangian_upper_bound = (
            float(cost_limit),
            float(lambda_lr),
            lagrangian_upper_bound,
        )
        self.lagrangian_multiplier = torch.nn.Parameter(torch.tensor(float(lagrangian_multiplier_init)))
        self.lambda_optimizer = getattr(torch.optim, lambda_optimizer)([self.lagrangian_multiplier], lr=lambda_lr)

    @property
    def value(self) -> float:
        """lambda, the current multiplier."""
        return float(self.lagrangian_multiplier.detach())

    def compute_lambda_loss(self, mean_ep_cost: float) -> torch.Tensor:
        """-lambda (J_c - d): its gradient step raises lambda when the mean cost is over the limit."""
        return -self.lagrangian_multiplier * (float(mean_ep_cost) - self.cost_limit)

    def update_lagrange_multiplier(self, mean_ep_cost: float) -> float:
        """One optimizer step on the dual, then projection onto [0, upper bound]; returns the new lambda."""
        self.lambda_optimizer.zero_grad()
        self.compute_lambda_loss(mean_ep_cost).backward()
        self.lambda_optimizer.step()
        with torch.no_grad():
            self.lagrangian_multiplier.clamp_(0.0, self.lagrangian_upper_bound)
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {
            "lagrangian_multiplier": self.lagrangian_multiplier.detach().clone(),
            "lambda_optimizer": copy.deepcopy(self.lambda_optimizer.state_dict()),
        }  # a snapshot, not live tensors

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.lagrangian_multiplier.copy_(state["lagrangian_multiplier"])
        self.lambda_optimizer.load_state_dict(state["lambda_optimizer"])


class PIDLagrangian:
    """A PID-controlled multiplier (`cost_penalty`) for one constraint J_c <= `cost_limit` (OmniSafe's defaults)."""

    def __init__(
        self,
        cost_limit: float,
        pid_kp: float = 0.1,
        pid_ki: float = 0.01,
        pid_kd: float = 0.01,
        pid_d_delay: int = 10,
        pid_delta_p_ema_alpha: float = 0.95,
        pid_delta_d_ema_alpha: float = 0.95,
        sum_norm: bool = True,
        diff_norm: bool = False,
        penalty_max: float = 100.0,
        lagrangian_multiplier_init: float = 0.001,
    ) -> None:
        require_non_negative(
            cost_limit=cost_limit,
            pid_kp=pid_kp,
            pid_ki=pid_ki,
            pid_kd=pid_kd,
            lagrangian_multiplier_init=lagrangian_multiplier_init,
        )
        require_int(1, pid_d_delay=pid_d_delay)
        require_fraction(pid_delta_p_ema_alpha=pid_delta_p_ema_alpha, pid_delta_d_ema_alpha=pid_delta_d_ema_alpha)
        require_positive(penalty_max=penalty_max)
        self.cost_limit, self.pid_kp, self.pid_ki, self.pid_kd = float(cost_limit), pid_kp, pid_ki, pid_kd
        self.pid_d_delay, self.sum_norm, self.diff_norm, self.penalty_max = (
            pid_d_delay,
            sum_norm,
            diff_norm,
            penalty_max,
        )
        self.pid_delta_p_ema_alpha, self.pid_delta_d_ema_alpha = pid_delta_p_ema_alpha, pid_delta_d_ema_alpha
        self.pid_i = float(lagrangian_multiplier_init)  # the integral term starts at the initial multiplier
        self.cost_ds: deque[float] = deque(
            [0.0], maxlen=pid_d_delay
        )  # smoothed costs of the last `pid_d_delay` updates
        self.delta_p = 0.0  # EMA of the violation J_c - d
        self.cost_d = 0.0  # EMA of the cost J_c
        self.cost_penalty = 0.0  # the multiplier the policy loss uses

    @property
    def value(self) -> float:
        """lambda, the current multiplier (`cost_penalty`)."""
        return self.cost_penalty

    def pid_update(self, mean_ep_cost: float) -> float:
        """One controller step on the latest mean episode cost; returns the new multiplier."""
        cost = float(mean_ep_cost)
        delta = cost - self.cost_limit
        self.pid_i = max(0.0, self.pid_i + delta * self.pid_ki)  # I: accumulated violation, never negative
        if self.diff_norm:
            self.pid_i = min(1.0, self.pid_i)
        a_p, a_d = self.pid_delta_p_ema_alpha, self.pid_delta_d_ema_alpha
        self.delta_p = a_p * self.delta_p + (1 - a_p) * delta  # P: smoothed violation
        self.cost_d = a_d * self.cost_d + (1 - a_d) * cost
        pid_d = max(
            0.0, self.cost_d - self.cost_ds[0]
        )  # D: rise of the smoothed cost over the last `pid_d_delay` updates
        self.cost_penalty = max(0.0, self.pid_kp * self.delta_p + self.pid_i + self.pid_kd * pid_d)
        if self.diff_norm:
            self.cost_penalty = min(1.0, self.cost_penalty)
        if not (self.diff_norm or self.sum_norm):
            self.cost_penalty = min(self.cost_penalty, self.penalty_max)
        self.cost_ds.append(self.cost_d)
        return self.cost_penalty

    def state_dict(self) -> dict[str, Any]:
        return {
            "pid_i": self.pid_i,
            "cost_ds": list(self.cost_ds),
            "delta_p": self.delta_p,
            "cost_d": self.cost_d,
            "cost_penalty": self.cost_penalty,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pid_i, self.delta_p, self.cost_d = float(state["pid_i"]), float(state["delta_p"]), float(state["cost_d"])
        self.cost_ds = deque((float(c) for c in state["cost_ds"]), maxlen=self.pid_d_delay)
        self.cost_penalty = float(state["cost_penalty"])
