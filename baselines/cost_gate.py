"""Cost-gated reward R_c (Proposition 1 of the RPA paper): a response whose cost exceeds the threshold gets a
reward below every safe response's, so no harmful answer can out-score a harmless one.

The proposition sets violating rewards to zero; when harmless answers score negative (refusals do under a
flipped reward model), zero sits *above* them and the gate would make harm optimal (measured on the embedded
world: the gated attack then learned harm). So the floor is the lowest reward seen so far, this batch included,
minus `margin` - or a fixed `floor` if given. Expect harmless reward hacking: the policy maximises reward among
safe texts, often by degenerating; the SafeSetMonitor reports fluency so it shows.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorWrapper


class _Gate:
    def __init__(self, threshold: float, floor: float | None, margin: float) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold={threshold!r} must be in [0, 1] (a cost, i.e. P(harmful))")
        if floor is not None and not math.isfinite(floor):
            raise ValueError(f"floor={floor!r} must be None or a finite number")
        if not margin > 0 or not math.isfinite(margin):
            raise ValueError(f"margin={margin!r} must be a positive finite number")
        self.threshold, self.floor, self.margin = threshold, floor, margin
        self.lowest = math.inf

    def __call__(self, rewards: np.ndarray, costs: np.ndarray, update: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Gated rewards and the violating mask; `update=False` (evaluation) leaves the running floor as it was."""
        lowest = min(self.lowest, float(np.min(rewards))) if len(rewards) else self.lowest
        if update:
            self.lowest = lowest
        floor = self.floor if self.floor is not None else lowest - self.margin
        violating = np.asarray(costs) > self.threshold
        return np.where(violating, np.float32(floor), rewards).astype(np.float32), violating


class _GateState:
    """What the single and the vector gate share: the running floor is training state (saved in agent checkpoints),
    and `transform_reward` gives the gated rewards of an evaluation batch without moving it."""

    gate: _Gate

    def state_dict(self) -> dict[str, Any]:
        return {"lowest": self.gate.lowest}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gate.lowest = float(state["lowest"])

    def transform_reward(self, rewards: np.ndarray, costs: np.ndarray) -> np.ndarray:
        return self.gate(np.asarray(rewards, np.float32), np.asarray(costs), update=False)[0]


class CostGatedReward(_GateState, gym.Wrapper):
    """R_c for a single env: reward if cost <= threshold, else the floor; `info["gated"]` marks gated steps."""

    def __init__(self, env: gym.Env, threshold: float = 0.5, floor: float | None = None, margin: float = 1.0) -> None:
        super().__init__(env)
        self.gate = _Gate(threshold, floor, margin)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        gated, violating = self.gate(np.array([reward], np.float32), np.array([info["cost"]]))
        return obs, float(gated[0]), terminated, truncated, {**info, "gated": bool(violating[0])}


class VectorCostGatedReward(_GateState, VectorWrapper):
    """R_c for a vector env: the floor is below every safe response's reward in the batch."""

    def __init__(
        self, env: gym.vector.VectorEnv, threshold: float = 0.5, floor: float | None = None, margin: float = 1.0
    ) -> None:
        super().__init__(env)
        self.gate = _Gate(threshold, floor, margin)

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        gated, violating = self.gate(np.asarray(rewards, np.float32), info["cost"])
        return obs, gated, terminated, truncated, {**info, "gated": violating}
