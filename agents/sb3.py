"""Stable-Baselines3 on the token-level envs: SB3's PPO, A2C (any discrete-action algorithm) run unchanged, with the
episode cost logged and reported to rlft_gym callbacks.

    from stable_baselines3 import PPO
    from rlft_gym.agents.sb3 import SB3Bridge, make_sb3_env
    from rlft_gym.callbacks import ProgressBar

    env = make_sb3_env("RPA-BeaverTails-Tokens-v0", n_envs=4, max_new_tokens=16)
    PPO("MlpPolicy", env).learn(20_000, callback=SB3Bridge(ProgressBar("sb3 ppo")))

SB3's policies here are MLPs over raw token ids, not language models: they learn the CMDP from scratch, one token at
a time, and start from nowhere near the aligned policy. That is expected - the adapter shows that any discrete-action
(safe-)RL algorithm runs on the attack unchanged; it does not replace the LM attacks (`GRPO`), whose policy is the
world's aligned model. `SafeSetMonitor` evaluates an LM policy, so it does not apply to SB3 agents; use the logged
`rollout/ep_cost_mean` and the bridge's reports instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from rlft_gym.callbacks import Callback, StepReport, as_callback


class CostInfoMonitor(VecMonitor):
    """SB3's VecMonitor that also sums `info["cost"]` per episode into `info["episode"]["c"]` (kept in SB3's episode
    buffer)."""

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv)
        self.episode_costs = np.zeros(self.num_envs)

    def reset(self) -> Any:
        self.episode_costs[:] = 0.0
        return super().reset()

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = super().step_wait()
        self.episode_costs += [info.get("cost", 0.0) for info in infos]
        for i in np.flatnonzero(dones):
            infos[i]["episode"]["c"] = float(self.episode_costs[i])
            self.episode_costs[i] = 0.0
        return obs, rewards, dones, infos


def make_sb3_env(env_id: str, n_envs: int = 1, **kwargs: Any) -> VecEnv:
    """`n_envs` copies of a token-level env (`...-Tokens-v0`, made with `kwargs`) in a DummyVecEnv with a
    CostInfoMonitor."""
    if not env_id.endswith("-Tokens-v0"):
        raise ValueError(
            f"{env_id!r} is not a token-level env; SB3 needs a '...-Tokens-v0' id such as 'RPA-BeaverTails-Tokens-v0'"
        )
    if not isinstance(n_envs, int) or isinstance(n_envs, bool) or n_envs < 1:
        raise ValueError(f"n_envs={n_envs!r} must be a positive int")
    return CostInfoMonitor(DummyVecEnv([partial(gym.make, env_id, **kwargs) for _ in range(n_envs)]))


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


class SB3Bridge(BaseCallback):
    """SB3 callback: logs `rollout/ep_cost_mean` and sends rlft_gym callbacks one `StepReport` per rollout.

    A report's reward and cost are means over SB3's recent-episode window (the one behind `rollout/ep_rew_mean`).
    Its loss and KL are `train/loss` and `train/approx_kl` (NaN where the algorithm logs none, e.g. A2C), and `extra`
    holds every `train/*` value: all from the update before the rollout, since SB3 trains after a rollout ends.
    An rlft_gym callback returning False stops training.
    """

    def __init__(self, callback: Callback | Sequence[Callback] | None = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.callback = as_callback(callback)
        self.rollouts = 0
        self._keep_going = True

    def _on_training_start(self) -> None:
        steps_per_rollout = self.model.n_envs * (
            getattr(self.model, "n_steps", None) or self.model.train_freq.frequency
        )
        remaining = self.locals["total_timesteps"] - self.model.num_timesteps
        self.callback.on_training_start(self.model, math.ceil(remaining / steps_per_rollout))

    def _on_step(self) -> bool:
        return self._keep_going

    def _on_rollout_end(self) -> None:
        episodes = list(self.model.ep_info_buffer or [])
        costs = [ep["c"] for ep in episodes if "c" in ep]
        if costs:
            self.logger.record("rollout/ep_cost_mean", _mean(costs))
        logged = self.logger.name_to_value
        self.rollouts += 1
        extra = {k: float(v) for k, v in logged.items() if k.startswith("train/")}
        report = StepReport(
            self.rollouts,
            _mean([ep["r"] for ep in episodes]),
            _mean(costs),
            logged.get("train/loss", math.nan),
            logged.get("train/approx_kl", math.nan),
            extra={**extra, "timesteps": float(self.num_timesteps)},
        )
        self._keep_going = self.callback.on_step(self.model, report) is not False

    def _on_training_end(self) -> None:
        self.callback.on_training_end(self.model)
