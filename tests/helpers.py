"""Small helpers shared by the tests."""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from rlft_gym.callbacks import Callback


class Recorder(Callback):
    """Records every step report and the start / end calls; optionally stops training after `stop_at` steps."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.reports, self.started, self.ended, self.stop_at, self.total = [], 0, 0, stop_at, None

    def on_training_start(self, agent, total_steps):
        self.started += 1
        self.total = total_steps

    def on_step(self, agent, report):
        self.reports.append(report)
        return None if self.stop_at is None else report.step < self.stop_at

    def on_training_end(self, agent):
        self.ended += 1


class NaNReward(gym.vector.VectorWrapper):
    """A vector env whose rewards are all NaN: training must stop, naming the step, before any weight changes."""

    def step(self, actions):
        obs, rewards, term, trunc, info = self.env.step(actions)
        return obs, rewards * np.nan, term, trunc, info
