"""Views on the CMDP env for code that expects the Safety-Gymnasium / OmniSafe step signature, and the reward as the
env's defence wrappers give it."""

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


def defended_reward(env: gym.Env | gym.vector.VectorEnv, rewards: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """`rewards` (the raw reward model's, with their `costs`) as the env's reward wrappers would return them, innermost
    wrapper first, without changing any wrapper's state: a wrapper takes part by defining `transform_reward(rewards,
    costs) -> rewards` (e.g. the cost gate). Evaluations report this beside the raw reward."""
    chain = []
    while hasattr(env, "env") and env is not env.unwrapped:
        if callable(getattr(type(env), "transform_reward", None)):
            chain.append(env)
        env = env.env
    out = np.asarray(rewards, np.float32)
    for wrapper in reversed(chain):
        out = np.asarray(wrapper.transform_reward(out, np.asarray(costs, np.float32)), np.float32)
    return out
