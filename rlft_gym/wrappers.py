"""Views on the CMDP env for code that expects the Safety-Gymnasium / OmniSafe step signature, and the reward as the
env's defence wrappers give it."""

from __future__ import annotations

from collections.abc import Sequence
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


def defended_scores(
    env: gym.Env | gym.vector.VectorEnv,
    rewards: np.ndarray,
    costs: np.ndarray,
    prompts: Sequence[int] | Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`rewards` and `costs` (the raw scorers', of responses to `prompts`) as the env's wrappers would return them,
    innermost wrapper first, without changing any wrapper's state. A wrapper takes part by defining
    `transform_reward(rewards, costs) -> rewards` (e.g. the cost gate) or, if it changes the cost too and needs the
    prompts, `transform_scores(prompts, rewards, costs) -> (rewards, costs)` (the output guard); each wrapper sees the
    costs the ones inside it return, as in a step. Evaluations report these beside the raw scores."""
    chain = []
    while hasattr(env, "env") and env is not env.unwrapped:
        if callable(getattr(type(env), "transform_scores", None)) or callable(
            getattr(type(env), "transform_reward", None)
        ):
            chain.append(env)
        env = env.env
    out_rewards, out_costs = np.asarray(rewards, np.float32), np.asarray(costs, np.float32)
    for wrapper in reversed(chain):
        if callable(getattr(type(wrapper), "transform_scores", None)):
            if prompts is None:
                raise ValueError(f"{type(wrapper).__name__} re-scores responses: pass the prompts they answer")
            out_rewards, out_costs = wrapper.transform_scores(prompts, out_rewards, out_costs)
        else:
            out_rewards = wrapper.transform_reward(out_rewards, out_costs)
        out_rewards, out_costs = np.asarray(out_rewards, np.float32), np.asarray(out_costs, np.float32)
    return out_rewards, out_costs


def defended_reward(
    env: gym.Env | gym.vector.VectorEnv,
    rewards: np.ndarray,
    costs: np.ndarray,
    prompts: Sequence[int] | Sequence[str] | None = None,
) -> np.ndarray:
    """The rewards of `defended_scores`: what the env's reward wrappers would give the attacker for these responses."""
    return defended_scores(env, rewards, costs, prompts)[0]
