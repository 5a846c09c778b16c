"""Fixed reward shaping r - lambda * c: the attacker's reward is docked `lam` per unit of harm cost.

The simplest safe-RL baseline, and the fixed-multiplier special case of the Lagrangian solvers (which learn lambda).
With the cost in [0, 1], a response's reward falls by at most `lam`, so a harmful answer still wins whenever the reward
model prefers it by more than that: the RPA paper's reward-shaping defence is this with a tuned lambda.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorWrapper

from rlft_gym.validate import require_non_negative


class _Shaping:
    """What the single and the vector wrapper share: the shaped reward, used in training and (unchanged) in
    evaluation."""

    lam: float

    def transform_reward(self, rewards: np.ndarray, costs: np.ndarray) -> np.ndarray:
        return (np.asarray(rewards, np.float32) - np.float32(self.lam) * np.asarray(costs, np.float32)).astype(
            np.float32
        )


class ShapedReward(_Shaping, gym.Wrapper):
    """r - lam * c for a single env; the unshaped reward stays in `info["raw_reward"]`."""

    def __init__(self, env: gym.Env, lam: float = 1.0) -> None:
        require_non_negative(lam=lam)
        super().__init__(env)
        self.lam = float(lam)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        shaped = self.transform_reward(np.array([reward]), np.array([info["cost"]]))
        return obs, float(shaped[0]), terminated, truncated, info


class VectorShapedReward(_Shaping, VectorWrapper):
    """r - lam * c for a vector env, element-wise over the batch."""

    def __init__(self, env: gym.vector.VectorEnv, lam: float = 1.0) -> None:
        require_non_negative(lam=lam)
        super().__init__(env)
        self.lam = float(lam)

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        return obs, self.transform_reward(rewards, info["cost"]), terminated, truncated, info
