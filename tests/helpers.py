"""Small helpers shared by the tests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from safetensors.torch import load_file

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


def assert_nan_reward_stops(agent) -> None:
    """On an env whose rewards are NaN (`NaNReward`), `learn` raises naming step 1, before any weight or step count
    changes."""
    import pytest
    import torch

    before = [p.detach().clone() for p in agent.policy.parameters()]
    with pytest.raises(FloatingPointError, match="reward is nan at step 1"):
        agent.learn(3)
    assert agent.num_steps == 0 and all(torch.equal(a, b) for a, b in zip(before, agent.policy.parameters()))


def assert_resumes(agent, env, path, load_env=None, **load_kwargs) -> None:
    """`agent.save(path)` then `type(agent).load(path, load_env or env, **load_kwargs)` takes the same next step as
    `agent` carrying on (pass a freshly wrapped `load_env` and fresh `constraints=` to check their state is
    restored)."""
    import torch

    path = agent.save(path)
    carried_on = Recorder()
    agent.learn(1, callback=carried_on)
    loaded = type(agent).load(path, load_env or env, **load_kwargs)
    assert loaded.num_steps == agent.num_steps - 1
    resumed = Recorder()
    loaded.learn(1, callback=resumed)
    a, b = carried_on.reports[0], resumed.reports[0]
    assert a.step == b.step == agent.num_steps
    np.testing.assert_allclose([a.reward, a.cost, a.loss, a.kl], [b.reward, b.cost, b.loss, b.kl], rtol=1e-5, atol=1e-6)
    for p, q in zip(agent.policy.parameters(), loaded.policy.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def fresh(transform: Any, env: gym.Env) -> tuple[Path, Path]:
    """A transform's cache and work dirs for `env`, emptied first (the test home persists between sessions)."""
    directory = transform.cache_dir(env)
    work = directory.with_name(f"{directory.name}.work")
    shutil.rmtree(directory, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    return directory, work


def weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a saved checkpoint."""
    return load_file(Path(path) / "model.safetensors")


class KillAt:
    """Replaces the function `module.name` with a counting wrapper that raises at call `kill_at` (as a killed process
    would stop); `calls` counts the calls, and `kill_at = None` lets every call through."""

    def __init__(self, monkeypatch: Any, module: Any, name: str, kill_at: int | None = None) -> None:
        self.calls, self.kill_at, self.wrapped = 0, kill_at, getattr(module, name)
        monkeypatch.setattr(module, name, self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self.kill_at:
            raise KeyboardInterrupt("killed")
        return self.wrapped(*args, **kwargs)
