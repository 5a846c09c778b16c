"""Native PPO: learns on vector and single envs, adaptive KL controller, NaN guard, bad hparams, value head saved."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import NaNReward, Recorder, assert_nan_reward_stops, assert_resumes
from safetensors.torch import load_file

import rlft_gym
from rlft_gym.agents.ppo import PPO
from rlft_gym.baselines import KLConstraint

torch.set_num_threads(1)


def small_venv(num_envs: int = 8) -> gym.vector.VectorEnv:
    return rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=num_envs, max_new_tokens=8)


def test_vector_ppo_learns_and_reports(world):
    agent = PPO(small_venv(), mini_batch_size=4, ppo_epochs=2, learning_rate=1e-4)
    before = [p.detach().clone() for p in agent.policy.parameters()]
    head_before = agent.value_head.weight.detach().clone()
    rec = Recorder()
    assert agent.learn(2, callback=rec) is agent
    assert [r.step for r in rec.reports] == [1, 2] and rec.started == rec.ended == 1
    for r in rec.reports:
        assert np.isfinite([r.reward, r.cost, r.loss, r.kl, *r.extra.values()]).all() and 0 <= r.cost <= 1
        assert {"kl_coef", "value_loss", "clipfrac", "length", "step_s"} <= r.extra.keys()
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.policy.parameters()))
    assert not torch.equal(head_before, agent.value_head.weight)
    assert agent.kl_coef != 0.2 and rec.reports[-1].extra["kl_coef"] == agent.kl_coef


def test_fixed_kl_coefficient_stays(world):
    agent = PPO(small_venv(4), mini_batch_size=2, ppo_epochs=1, adaptive_kl=False).learn(1)
    assert agent.kl_coef == 0.2


def test_single_env_ppo(world):
    env = gym.make("RPA-BeaverTails-v0", max_new_tokens=8)
    rec = Recorder()
    PPO(env, batch_size=4, mini_batch_size=2, ppo_epochs=1).learn(1, callback=[rec])
    assert len(rec.reports) == 1 and np.isfinite(rec.reports[0].loss)


def test_constraint_with_reference_trains(world):
    rec = Recorder()
    PPO(small_venv(4), mini_batch_size=4, ppo_epochs=1, constraints=[KLConstraint(0.1)]).learn(1, callback=rec)
    assert np.isfinite(rec.reports[0].loss) and rec.reports[0].extra["clipfrac"] == 0.0  # one pass: ratio is 1


def test_nan_stops_training_naming_the_step(world):
    assert_nan_reward_stops(PPO(NaNReward(small_venv(4)), mini_batch_size=2))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"learning_rate": 0}, "learning_rate=0 must be a positive finite number"),
        ({"cliprange": -0.1}, "cliprange=-0.1 must be a positive finite number"),
        ({"mini_batch_size": 3}, "mini_batch_size=3 does not divide the batch of 8"),
        ({"gamma": 1.5}, r"gamma=1.5 must be a number in \[0, 1\]"),
        ({"lam": -0.1}, r"lam=-0.1 must be a number in \[0, 1\]"),
        ({"init_kl_coef": -1}, "init_kl_coef=-1 must be a finite number >= 0"),
        ({"ppo_epochs": 0}, "ppo_epochs=0 must be a positive int"),
        ({"mixed_precision": "fp8"}, "mixed_precision='fp8' is not one of"),
    ],
)
def test_bad_hyperparameters(world, kwargs, message):
    with pytest.raises(ValueError, match=message):
        PPO(small_venv(), **{"mini_batch_size": 4, **kwargs})


def test_save_writes_policy_and_value_head(world, tmp_path):
    agent = PPO(small_venv(4), mini_batch_size=2, ppo_epochs=1).learn(1)
    path = agent.save(tmp_path / "ckpt")
    assert (path / "model.safetensors").is_file() and (path / "agent.json").is_file()
    head = load_file(path / "value_head.safetensors")
    assert torch.equal(head["weight"], agent.value_head.weight.detach().cpu())
    again = PPO(small_venv(4), policy=str(path), mini_batch_size=2)
    for a, b in zip(agent.policy.parameters(), again.policy.parameters()):
        assert torch.equal(a, b)


def test_resume_takes_the_same_next_step(world, tmp_path):
    """The value head, its optimizer moments and the adaptive KL coefficient come back with the policy."""
    venv = small_venv(4)
    agent = PPO(venv, mini_batch_size=2, ppo_epochs=2, seed=1).learn(2)
    assert agent.kl_coef != 0.2
    assert_resumes(agent, venv, tmp_path / "ckpt")
    loaded = PPO.load(tmp_path / "ckpt", venv)
    assert loaded.kl_coef == PPO.load(tmp_path / "ckpt", venv).kl_coef != 0.2
