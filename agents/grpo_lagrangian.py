"""GRPO-Lagrangian, read top to bottom: GRPO (Shao et al. 2024) on the Lagrangian reward r - lambda c of the constrained
MDP, with the multiplier lambda learned by dual ascent on the step's mean cost, so the attack keeps the harm it causes
under the cost limit b while it raises the reward.

Order, as OmniSafe's PPOLag: each step first updates lambda from the latest mean cost J_c (here the mean env cost of
the step's responses), then takes the policy step with the new lambda. The multiplier is a `Lagrange` (OmniSafe's names
and defaults: init 0.001, Adam at lr 0.035, no upper bound) or, with `lagrangian="pid"`, a `PIDLagrangian` configured by
`pid_kwargs` (its own defaults otherwise). The reward is normalised as (r - lambda c) / (1 + lambda) by default, as
OmniSafe's PPOLag and Safe RLHF divide the combined advantage; `normalize_lagrangian=False` keeps r - lambda c.
The cost limit defaults to the env's b (`env.unwrapped.cost_limit`). Every report's `extra` holds `LagrangeMultiplier`
(the lambda this step used), `cost_limit` and `lagrangian_reward` (the mean of the reward GRPO optimised); its `reward`
is the env's own.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np
import torch

from rlft_gym import generation
from rlft_gym.agents.grpo import GRPO
from rlft_gym.callbacks import StepReport
from rlft_gym.lagrange import Lagrange, PIDLagrangian
from rlft_gym.validate import check_finite, require_one_of

LAGRANGIANS = ("lagrange", "pid")
PID_KWARGS = tuple(
    p for p in inspect.signature(PIDLagrangian).parameters if p not in ("cost_limit", "lagrangian_multiplier_init")
)  # the PID settings `pid_kwargs` may hold

Signal = TypeVar("Signal", np.ndarray, torch.Tensor)


def lagrangian_advantages(reward: Signal, cost: Signal, multiplier: float, normalize: bool = True) -> Signal:
    """(x_r - lambda x_c) / (1 + lambda), or x_r - lambda x_c if not `normalize`, of rewards or of advantages (the
    combination is linear, so centring it per group equals combining the centred parts): the Lagrangian signal as a
    pure function, tested by hand."""
    combined = reward - multiplier * cost
    return combined / (1.0 + multiplier) if normalize else combined


def make_multiplier(
    lagrangian: str,
    cost_limit: float,
    lagrangian_multiplier_init: float,
    lambda_lr: float,
    lambda_optimizer: str,
    lagrangian_upper_bound: float | None,
    pid_kwargs: dict[str, Any] | None,
) -> Lagrange | PIDLagrangian:
    """The multiplier `lagrangian` names, checked: one ValueError for a bad name, setting or `pid_kwargs` key."""
    require_one_of("lagrangian", lagrangian, LAGRANGIANS)
    if pid_kwargs is not None and not isinstance(pid_kwargs, dict):
        raise ValueError(f"pid_kwargs={pid_kwargs!r} must be a dict of PIDLagrangian settings or None")
    if lagrangian == "lagrange":
        if pid_kwargs:
            raise ValueError(f"pid_kwargs={pid_kwargs!r} set the PID multiplier; pass them with lagrangian='pid'")
        return Lagrange(cost_limit, lagrangian_multiplier_init, lambda_lr, lambda_optimizer, lagrangian_upper_bound)
    unknown = sorted(set(pid_kwargs or {}) - set(PID_KWARGS))
    if unknown:
        raise ValueError(f"pid_kwargs has unknown keys {unknown}; PIDLagrangian takes {list(PID_KWARGS)}")
    return PIDLagrangian(cost_limit, lagrangian_multiplier_init=lagrangian_multiplier_init, **(pid_kwargs or {}))


class GRPOLagrangian(GRPO):
    """GRPO on the reward (r - lambda c) / (1 + lambda), lambda updated once per step, before the policy, from the
    step's mean cost (see the module docstring for the defaults and their sources)."""

    def __init__(
        self,
        env: gym.Env | gym.vector.VectorEnv,
        policy: str | Path | None = None,
        *,
        cost_limit: float | None = None,
        lagrangian: str = "lagrange",
        lagrangian_multiplier_init: float = 0.001,
        lambda_lr: float = 0.035,
        lambda_optimizer: str = "Adam",
        lagrangian_upper_bound: float | None = None,
        pid_kwargs: dict[str, Any] | None = None,
        normalize_lagrangian: bool = True,
        **grpo_kwargs: Any,
    ) -> None:
        if not isinstance(normalize_lagrangian, bool):
            raise ValueError(f"normalize_lagrangian={normalize_lagrangian!r} must be True or False")
        super().__init__(env, policy, **grpo_kwargs)
        self.lagrangian, self.lagrangian_multiplier_init, self.lambda_lr = (
            lagrangian,
            lagrangian_multiplier_init,
            lambda_lr,
        )
        self.lambda_optimizer, self.lagrangian_upper_bound = lambda_optimizer, lagrangian_upper_bound
        self.pid_kwargs, self.normalize_lagrangian = dict(pid_kwargs or {}), normalize_lagrangian
        self.multiplier = make_multiplier(
            lagrangian,
            env.unwrapped.cost_limit if cost_limit is None else cost_limit,
            lagrangian_multiplier_init,
            lambda_lr,
            lambda_optimizer,
            lagrangian_upper_bound,
            pid_kwargs,
        )
        self.cost_limit = self.multiplier.cost_limit
        self.env_rewards = np.zeros(0, np.float32)

    def hyperparameters(self) -> dict[str, Any]:
        return {
            **super().hyperparameters(),
            **{
                k: getattr(self, k)
                for k in (
                    "cost_limit",
                    "lagrangian",
                    "lagrangian_multiplier_init",
                    "lambda_lr",
                    "lambda_optimizer",
                    "lagrangian_upper_bound",
                    "pid_kwargs",
                    "normalize_lagrangian",
                )
            },
        }

    def env_feedback(
        self, prompt_ids: np.ndarray, respond: Callable[[list[str]], generation.Rollout]
    ) -> tuple[generation.Rollout, np.ndarray, np.ndarray]:
        """The env's feedback with each reward replaced by the Lagrangian reward, after lambda's update on its costs."""
        rollout, rewards, costs = super().env_feedback(prompt_ids, respond)
        step = self.num_steps + 1
        check_finite(rewards.sum(), step, "reward")  # before lambda moves
        check_finite(costs.sum(), step, "cost")
        self.env_rewards = rewards
        # 1. the dual step first (OmniSafe), on J_c = the mean cost of this step's responses:
        # lambda <- clip(lambda + lr (J_c - b), 0, upper bound)  (one step of `lambda_optimizer`), or the PID update
        mean_cost = float(costs.mean())
        if isinstance(self.multiplier, Lagrange):
            self.multiplier.update_lagrange_multiplier(mean_cost)
        else:
            self.multiplier.pid_update(mean_cost)
        # 2. the Lagrangian reward L = (r - lambda c) / (1 + lambda); GRPO centres it: A_i = L_i - mean(L_group)
        return rollout, lagrangian_advantages(rewards, costs, self.multiplier.value, self.normalize_lagrangian), costs

    def train_step(self) -> StepReport:
        report = super().train_step()
        return replace(
            report,
            reward=float(self.env_rewards.mean()),
            extra={
                **report.extra,
                "LagrangeMultiplier": self.multiplier.value,
                "cost_limit": self.cost_limit,
                "lagrangian_reward": report.reward,
            },
        )

    def training_state(self) -> dict[str, Any]:
        """GRPO's state plus the multiplier's (lambda and its optimizer moments, or the PID terms)."""
        return {**super().training_state(), "multiplier": self.multiplier.state_dict()}

    def load_training_state(self, state: dict[str, Any]) -> None:
        super().load_training_state(state)
        self.multiplier.load_state_dict(state["multiplier"])
