"""Views on the CMDP env for code that expects the Safety-Gymnasium / OmniSafe step signature."""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorWrapper


class CMDP(gym.Wrapper):
    """`step` returns `(obs, reward, cost, terminated, truncated, info)`, the cost taken from `info["cost"]`."""

    def step(self, action: str) -> tuple[str, float, float, bool, bool, dict[str, Any]]:  # type: ignore[override]
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, float(info["cost"]), terminated, truncated, info


class VectorCMDP(VectorWrapper):
    """The 6-tuple view of a vector env: costs come back as an array beside the rewards."""

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:  # type: ignore[override]
        obs, reward, terminated, truncated, info = self.env.step(actions)
        return obs, reward, np.asarray(info["cost"], dtype=np.float32), terminated, truncated, info
