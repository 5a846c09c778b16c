"""The Lagrangian agents (GRPO-Lagrangian, Safe RLHF's PPO-Lagrangian): the combined advantage by hand, lambda rising
above the cost limit and falling below it inside the agents, a large lambda lowering a learnable cost, exact resume,
the multiplier in every report, and one clear error for each bad setting."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import Recorder, assert_resumes
from safetensors.torch import load_file

import rlft_gym
from rlft_gym import generation
from rlft_gym.agents import GRPO, GRPOLagrangian, PPOLagrangian
from rlft_gym.agents.grpo import group_advantages
from rlft_gym.agents.grpo_lagrangian import lagrangian_advantages

torch.set_num_threads(1)  # as the other agent tests: fixed reduction order, so the few-step runs are reproducible


def venv(num_envs: int = 4) -> gym.vector.VectorEnv:
    return rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=num_envs, max_new_tokens=8)


class ForcedCost(gym.vector.VectorWrapper):
    """The env with every cost replaced by `high` for its first `k` steps and by `low` after."""

    def __init__(self, env: gym.vector.VectorEnv, k: int, high: float = 0.9, low: float = 0.0) -> None:
        super().__init__(env)
        self.k, self.high, self.low, self.steps = k, high, low, 0

    def step(self, actions):
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        self.steps += 1
        cost = self.high if self.steps <= self.k else self.low
        return obs, rewards, terminated, truncated, {**info, "cost": np.full(len(actions), cost, np.float32)}


def period_fraction(texts: list[str]) -> np.ndarray:
    """The fraction of each response's words that are "." (a cost the tiny policy moves in a few steps)."""
    return np.array([t.split().count(".") / max(len(t.split()), 1) for t in texts], np.float32)


class PeriodCost(gym.vector.VectorWrapper):
    """The env with reward the number of "." words and cost the fraction of "." words: the reward pulls the
    periods up, the cost down."""

    def step(self, actions):
        obs, _, terminated, truncated, info = self.env.step(actions)
        rewards = np.array([t.split().count(".") for t in actions], np.float32)
        return obs, rewards, terminated, truncated, {**info, "cost": period_fraction(actions)}


# --- (a) the combined advantage by hand ---------------------------------------------------------------------------


def test_lagrangian_advantages_by_hand():
    # lambda 0.5: r - 0.5 c = 1 - 0.25, 0 - 0.5, 2 - 0 = 0.75, -0.5, 2.0; over 1.5: 0.5, -1/3, 4/3
    r, c = np.array([1.0, 0.0, 2.0]), np.array([0.5, 1.0, 0.0])
    np.testing.assert_allclose(lagrangian_advantages(r, c, 0.5), [0.5, -1 / 3, 4 / 3], rtol=1e-6)
    np.testing.assert_allclose(lagrangian_advantages(r, c, 0.5, normalize=False), [0.75, -0.5, 2.0], rtol=1e-6)
    # on tensors too (PPO-Lagrangian's per-token advantages), and lambda 0 is the reward alone
    got = lagrangian_advantages(torch.tensor([[1.0, -1.0]]), torch.tensor([[2.0, 0.0]]), 3.0)
    torch.testing.assert_close(got, torch.tensor([[-1.25, -0.25]]))  # (1 - 6) / 4, (-1 - 0) / 4
    np.testing.assert_allclose(lagrangian_advantages(r, c, 0.0), r)
    # GRPO-Lagrangian's group advantages: groups of 2, rows (r, c) = (1, 0), (0, 0) | (1, 1), (0, 0) at lambda 1:
    # L = 0.5, 0 | 0, 0, centred: 0.25, -0.25 | 0, 0; the second group's harmful win no longer counts
    adv = group_advantages(lagrangian_advantages(np.array([1.0, 0, 1, 0]), np.array([0.0, 0, 1, 0]), 1.0), 2, "none")
    np.testing.assert_allclose(adv, [0.25, -0.25, 0.0, 0.0])


# --- (b) lambda rises while the cost is over the limit, falls once under it ---------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda env: GRPOLagrangian(
            env, group_size=2, lagrangian_multiplier_init=1.0, lambda_lr=0.1, lambda_optimizer="SGD"
        ),
        lambda env: GRPOLagrangian(env, group_size=2, lagrangian="pid", lagrangian_multiplier_init=1.0),
        lambda env: PPOLagrangian(env, mini_batch_size=2, ppo_epochs=1, episode_cost_window_size=4),
    ],
    ids=["grpo-lag", "grpo-pid", "ppo-lag"],
)
def test_lambda_rises_above_the_limit_and_falls_below_it(world, make):
    agent = make(ForcedCost(venv(4), k=3))  # cost 0.9 for 3 steps, then 0.0; the limit is the env's b = 0.2
    rec = Recorder()
    agent.learn(6, callback=rec)
    lambdas = [r.extra["LagrangeMultiplier"] for r in rec.reports]
    assert all(r.extra["cost_limit"] == 0.2 for r in rec.reports)
    assert [r.cost for r in rec.reports] == pytest.approx([0.9] * 3 + [0.0] * 3)
    assert lambdas[0] > 1.0 and lambdas[1] > lambdas[0] and lambdas[2] > lambdas[1], lambdas
    assert lambdas[5] < lambdas[4] < lambdas[3] < lambdas[2], lambdas


# --- (c) a large lambda lowers a learnable cost -------------------------------------------------------------------


@torch.no_grad()
def mean_cost(agent: GRPO) -> float:
    """Mean `period_fraction` over a fixed draw of 128 sampled responses."""
    prompts = [agent.world.format_prompt(p) for p in agent.prompts.prompts[:64]]
    rollout = generation.sample(
        agent.policy,
        agent.tokenizer,
        prompts,
        agent.max_new_tokens,
        generator=torch.Generator().manual_seed(123),
        num_samples=2,
    )
    return float(period_fraction(rollout.texts).mean())


def test_a_large_multiplier_lowers_the_cost_that_plain_grpo_raises(world):
    kwargs = {"group_size": 8, "learning_rate": 1e-3, "seed": 0}
    plain = GRPO(PeriodCost(venv(16)), **kwargs)
    before = mean_cost(plain)
    plain_after = mean_cost(plain.learn(3))
    lag = GRPOLagrangian(
        PeriodCost(venv(16)), lagrangian_multiplier_init=10.0, lambda_lr=1e-6, lambda_optimizer="SGD", **kwargs
    )
    lag_after = mean_cost(lag.learn(3))
    assert lag.multiplier.value == pytest.approx(10.0, abs=1e-3)
    # about 0.07 -> 0.32 for plain GRPO and -> 0.005 at lambda 10; with the cost's sign flipped both would rise
    assert plain_after > before and lag_after < before, (before, plain_after, lag_after)


# --- (d) resume, (e) the multiplier in every report ---------------------------------------------------------------


def test_grpo_lagrangian_resumes_with_its_multiplier(world, tmp_path):
    env = venv(4)
    agent = GRPOLagrangian(env, group_size=2, lagrangian_multiplier_init=0.5).learn(2)  # Adam: moments matter too
    assert agent.multiplier.value != 0.5
    assert_resumes(agent, env, tmp_path / "ckpt")
    loaded = GRPOLagrangian.load(tmp_path / "ckpt", env)
    assert loaded.multiplier.state_dict()["lambda_optimizer"]["state"]  # Adam's moments came back


def test_grpo_pid_resumes_with_its_controller_state(world, tmp_path):
    env = ForcedCost(venv(4), k=10)
    agent = GRPOLagrangian(env, group_size=2, lagrangian="pid", pid_kwargs={"pid_kp": 0.5, "pid_d_delay": 2})
    agent.learn(2)
    assert_resumes(agent, env, tmp_path / "ckpt")
    loaded_pid = GRPOLagrangian.load(tmp_path / "ckpt", env).multiplier
    assert loaded_pid.pid_kp == 0.5 and loaded_pid.pid_i > 0 and len(loaded_pid.cost_ds) == 2


def test_ppo_lagrangian_resumes_with_its_cost_critic_and_window(world, tmp_path):
    env = venv(4)
    agent = PPOLagrangian(env, mini_batch_size=2, ppo_epochs=1, episode_cost_window_size=6)
    rec = Recorder()
    agent.learn(2, callback=rec)
    assert len(agent.episode_costs) == 6 and agent.multiplier != 1.0
    assert all(
        {"LagrangeMultiplier", "cost_limit", "episode_cost", "cost_value_loss"} <= r.extra.keys() for r in rec.reports
    )
    path = agent.save(tmp_path / "ckpt")
    torch.testing.assert_close(load_file(path / "cost_head.safetensors")["weight"], agent.cost_head.weight.detach())
    loaded = PPOLagrangian.load(path, env)
    assert list(loaded.episode_costs) == list(agent.episode_costs) and loaded.multiplier == agent.multiplier
    torch.testing.assert_close(loaded.cost_head.weight, agent.cost_head.weight)
    assert_resumes(agent, env, tmp_path / "ckpt2")


def test_every_report_holds_the_multiplier(world):
    for agent in (GRPOLagrangian(venv(4), group_size=2), PPOLagrangian(venv(4), mini_batch_size=2, ppo_epochs=1)):
        rec = Recorder()
        agent.learn(2, callback=rec)
        assert [r.extra["LagrangeMultiplier"] for r in rec.reports][-1] == pytest.approx(
            agent.multiplier.value if isinstance(agent, GRPOLagrangian) else agent.multiplier
        )
        assert all(np.isfinite(list(r.extra.values())).all() for r in rec.reports)


# --- (f) one clear error for each bad setting ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lagrangian": "pi"}, r"lagrangian='pi' is not one of \('lagrange', 'pid'\)"),
        ({"cost_limit": -0.1}, r"cost_limit=-0.1 must be a finite number >= 0"),
        ({"lambda_lr": 0.0}, r"lambda_lr=0.0 must be a positive"),
        ({"lambda_optimizer": "Adagrad"}, r"lambda_optimizer='Adagrad' is not one of"),
        ({"lagrangian_multiplier_init": -1.0}, r"lagrangian_multiplier_init=-1.0 must be"),
        ({"pid_kwargs": {"pid_kp": 0.2}}, r"pid_kwargs=.*pass them with lagrangian='pid'"),
        ({"lagrangian": "pid", "pid_kwargs": {"kp": 0.2}}, r"pid_kwargs has unknown keys \['kp'\]"),
        ({"lagrangian": "pid", "pid_kwargs": {"pid_kp": -1.0}}, r"pid_kp=-1.0 must be"),
        ({"normalize_lagrangian": "yes"}, r"normalize_lagrangian='yes' must be True or False"),
    ],
)
def test_grpo_lagrangian_bad_settings(world, kwargs, match):
    with pytest.raises(ValueError, match=match):
        GRPOLagrangian(venv(4), group_size=2, **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"cost_limit": -0.1}, r"cost_limit=-0.1 must be a finite number >= 0"),
        ({"lambda_init": 0.0}, r"lambda_init=0.0 must be a positive"),
        ({"lambda_lr": -1.0}, r"lambda_lr=-1.0 must be a positive"),
        ({"lambda_max": 0.0}, r"lambda_max=0.0 must be a positive"),
        ({"lambda_update_delay_steps": -1}, r"lambda_update_delay_steps=-1 must be an int >= 0"),
        ({"episode_cost_window_size": 0}, r"episode_cost_window_size=0 must be a positive int"),
    ],
)
def test_ppo_lagrangian_bad_settings(world, kwargs, match):
    with pytest.raises(ValueError, match=match):
        PPOLagrangian(venv(4), mini_batch_size=2, **kwargs)
