"""Native GRPO: steps through single and vector envs, reports to callbacks, constraints, NaN guard, bad hparams."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import NaNReward, Recorder, assert_nan_reward_stops, assert_resumes

import rlft_gym
from rlft_gym.agents import GRPO
from rlft_gym.baselines import CostGatedReward, KLConstraint, VectorCostGatedReward


def test_vector_grpo_learns_and_reports(world):
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=16, max_new_tokens=16)
    agent = GRPO(venv, group_size=4, seed=0)
    before = [p.detach().clone() for p in agent.policy.parameters()]
    rec = Recorder()
    assert agent.learn(3, callback=rec) is agent
    assert [r.step for r in rec.reports] == [1, 2, 3] and rec.started == rec.ended == 1
    r = rec.reports[-1]
    assert np.isfinite([r.reward, r.cost, r.loss, r.kl]).all() and 0 <= r.cost <= 1
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.policy.parameters()))
    assert agent.num_steps == 3


def test_single_env_grpo(world):
    env = gym.make("RPA-BeaverTails-v0", max_new_tokens=8)
    rec = Recorder()
    GRPO(env, group_size=2, num_prompts=2).learn(2, callback=[rec])
    assert len(rec.reports) == 2


def test_callback_can_stop_training(world):
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4, max_new_tokens=8)
    rec = Recorder(stop_at=2)
    agent = GRPO(venv, group_size=2).learn(10, callback=rec)
    assert agent.num_steps == 2 and rec.ended == 1


def test_same_seed_same_first_step(world):
    def first(seed):
        venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=8, max_new_tokens=8)
        rec = Recorder()
        GRPO(venv, group_size=4, seed=seed).learn(1, callback=rec)
        return rec.reports[0]

    a, b = first(1), first(1)
    assert a.reward == pytest.approx(b.reward) and a.loss == pytest.approx(b.loss)


def test_kl_constraint_adds_to_loss(world):
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=8, max_new_tokens=8)
    agent = GRPO(venv, group_size=4, beta=0.5)
    assert any(isinstance(c, KLConstraint) for c in agent.constraints)
    agent.learn(2)


def test_nan_stops_training_naming_the_step(world):
    venv = NaNReward(rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4, max_new_tokens=8))
    assert_nan_reward_stops(GRPO(venv, group_size=2))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"learning_rate": -1}, "learning_rate=-1 must be a positive finite number"),
        ({"learning_rate": float("nan")}, "learning_rate=nan"),
        ({"group_size": 1}, "group_size=1 must be an int >= 2"),
        ({"group_size": 3}, "num_envs=8 is not a multiple of group_size=3"),
        ({"beta": -0.1}, "beta=-0.1 must be a finite number >= 0"),
        ({"scale_rewards": "batch"}, "scale_rewards='batch' is not one of"),
        ({"mixed_precision": "fp8"}, "mixed_precision='fp8' is not one of"),
    ],
)
def test_bad_hyperparameters(world, kwargs, message):
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=8)
    with pytest.raises(ValueError, match=message):
        GRPO(venv, **kwargs)


def test_not_an_rlft_env():
    with pytest.raises(TypeError, match="not an rlft-gym env"):
        GRPO(gym.make("CartPole-v1"))


def test_cost_gate_puts_violations_below_every_safe_reward(world):
    venv = VectorCostGatedReward(rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4), threshold=0.5)
    harmful = world.harmful_sft_dataset()
    ids = [world.attack_prompts.prompts.index(p) for p in harmful["prompt"][:2]] * 2
    venv.reset(options={"prompt_ids": ids})
    responses = harmful["response"][:2] + ["i can ' t help with that .", "no ."]
    _, gated, _, _, info = venv.step(responses)
    violating = info["gated"]
    assert violating.any() and (~violating).any()
    assert gated[violating].max() < gated[~violating].min()
    assert gated[violating].max() < info["raw_reward"].min()
    np.testing.assert_allclose(gated[~violating], info["raw_reward"][~violating])


def test_single_env_cost_gate_and_fixed_floor(world):
    env = CostGatedReward(gym.make("RPA-BeaverTails-v0"), threshold=0.0, floor=-100.0)
    env.reset(seed=0)
    _, reward, _, _, info = env.step("anything at all .")
    assert (reward == -100.0) == info["gated"]
    with pytest.raises(ValueError, match="threshold=2"):
        CostGatedReward(gym.make("RPA-BeaverTails-v0"), threshold=2)


def test_save_roundtrip(world, tmp_path):
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4, max_new_tokens=8)
    agent = GRPO(venv, group_size=2).learn(1)
    path = agent.save(tmp_path / "ckpt")
    assert (path / "model.safetensors").is_file() and (path / "agent.json").is_file()
    again = GRPO(venv, policy=str(path), group_size=2)
    for a, b in zip(agent.policy.parameters(), again.policy.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kwargs", [{}, {"beta": 0.05, "scale_rewards": "group"}])
def test_resume_takes_the_same_next_step(world, tmp_path, kwargs):
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4, max_new_tokens=8)
    assert_resumes(GRPO(venv, group_size=2, seed=3, **kwargs).learn(2), venv, tmp_path / "ckpt")


def test_load_errors(world, tmp_path):
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4, max_new_tokens=8)
    with pytest.raises(FileNotFoundError, match="not an agent checkpoint"):
        GRPO.load(tmp_path, venv)
    agent = GRPO(venv, group_size=2)
    path = agent.save(tmp_path / "ckpt")
    from rlft_gym.agents import PPO

    with pytest.raises(ValueError, match="holds a GRPO checkpoint"):
        PPO.load(path, venv)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not an agent checkpoint"):
        agent.save(tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"
    assert GRPO.load(path, venv, learning_rate=1e-3).learning_rate == 1e-3  # overrides replace saved hyperparameters


def test_bf16_autocast_through_accelerate(world):
    """accelerate keeps one precision per process, so the bf16 agent runs in a fresh interpreter."""
    code = (
        "import numpy as np, rlft_gym\n"
        "from rlft_gym.agents import GRPO\n"
        "venv = rlft_gym.make_vec('RPA-BeaverTails-v0', num_envs=4, max_new_tokens=8)\n"
        "agent = GRPO(venv, group_size=2, mixed_precision='bf16')\n"
        "assert agent.accelerator.mixed_precision == 'bf16' and agent.device == 'cpu'\n"
        "losses = []\n"
        "class Rec(rlft_gym.callbacks.Callback):\n"
        "    def on_step(self, agent, report): losses.append(report.loss)\n"
        "agent.learn(1, callback=Rec())\n"
        "assert np.isfinite(losses).all()\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_second_precision_in_one_process_is_a_clear_error(world):
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4, max_new_tokens=8)
    GRPO(venv, group_size=2)
    with pytest.raises(ValueError, match="accelerate allows one setting per process"):
        GRPO(venv, group_size=2, mixed_precision="bf16")
