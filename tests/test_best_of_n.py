"""Best-of-N: result layout, the N = 1 baseline, reward monotone in N, determinism, bad input, the agent's reports."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import Recorder, assert_resumes

import rlft_gym
from rlft_gym.agents.best_of_n import BestOfN, best_of_n

torch.set_num_threads(1)

NS = (2, 4, 8)


@pytest.fixture(scope="module")
def env(world):
    return gym.make("RPA-BeaverTails-v0", max_new_tokens=8)


@pytest.fixture(scope="module")
def result(env):
    return best_of_n(env, ns=NS, seed=0, batch_size=64)


def test_result_layout(result, world):
    assert set(result) == {"config", "baseline", "rows"}
    cfg = result["config"]
    assert cfg["ns"] == list(NS) and cfg["n_prompts"] == len(world.eval_prompts) and cfg["seed"] == 0
    assert cfg["world_fingerprint"] == world.fingerprint and "torch" in cfg["versions"]
    assert [r["n"] for r in result["rows"]] == list(NS) and result["baseline"]["n"] == 1
    for r in [result["baseline"], *result["rows"]]:
        assert set(r) == {"n", "harmfulness", "harmful_rate", "reward", "sample_harmfulness"}
        assert 0 <= r["harmfulness"] <= 1 and 0 <= r["harmful_rate"] <= 1 and np.isfinite(r["reward"])


def test_picks_by_reward_and_baseline_is_the_first_sample(env, monkeypatch):
    seen = {"reward": [], "cost": []}
    for name in ("reward", "cost"):
        fn = getattr(env.unwrapped, f"{name}_fn")
        monkeypatch.setattr(
            env.unwrapped, f"{name}_fn", lambda p, r, fn=fn, name=name: seen[name].append(fn(p, r)) or seen[name][-1]
        )
    out = best_of_n(env, ns=NS, seed=3, batch_size=64)
    rewards, costs = (np.concatenate(seen[k]).reshape(-1, max(NS)) for k in ("reward", "cost"))
    assert out["baseline"]["harmfulness"] == pytest.approx(costs[:, 0].mean())  # N = 1: the first sample
    for r in out["rows"]:
        pick = rewards[:, : r["n"]].argmax(1)
        assert r["harmfulness"] == pytest.approx(costs[np.arange(len(costs)), pick].mean())
        assert r["sample_harmfulness"] == pytest.approx(costs[:, : r["n"]].mean())


def test_scores_only_through_the_env(env, monkeypatch, world):
    calls = []

    def score(prompts, responses):
        # within each prompt's max(NS) samples, reward and cost both rise with the sample's index
        calls.append(list(prompts))
        index = np.arange(len(responses), dtype=np.float32) % max(NS)
        return index, index / max(NS)

    monkeypatch.setattr(env.unwrapped, "score", score)
    out = best_of_n(env, ns=NS, seed=0, batch_size=64)
    assert [p for call in calls for p in call] == [p for p in world.eval_prompts.prompts for _ in range(max(NS))]
    assert len(calls) == -(-len(world.eval_prompts) // (64 // max(NS)))  # one batched call per chunk of prompts
    assert out["baseline"]["harmfulness"] == 0.0
    for r in out["rows"]:
        assert r["reward"] == r["n"] - 1 and r["harmfulness"] == pytest.approx((r["n"] - 1) / max(NS))


def test_picked_reward_grows_with_n(result):
    rewards = [result["baseline"]["reward"]] + [r["reward"] for r in result["rows"]]
    assert all(b >= a for a, b in zip(rewards, rewards[1:])), rewards  # nested prefixes: max over more samples


def test_deterministic_for_a_seed(env, result):
    assert best_of_n(env, ns=NS, seed=0, batch_size=64)["rows"] == result["rows"]
    assert best_of_n(env, ns=NS, seed=1, batch_size=64)["rows"] != result["rows"]


def test_attack_prompts_and_a_loaded_policy(env, world):
    policy = world.load_policy()
    out = best_of_n(env, ns=[2], policy=policy, prompts="attack", batch_size=4096)
    assert out["config"]["n_prompts"] == len(world.attack_prompts) and out["config"]["policy"] == "<model>"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ns": []}, "non-empty sequence"),
        ({"ns": 8}, "non-empty sequence"),
        ({"ns": [4, 0]}, "ns contains 0"),
        ({"ns": [4, 2.5]}, "ns contains 2.5"),
        ({"ns": [True]}, "ns contains True"),
        ({"temperature": 0.0}, "temperature=0.0"),
        ({"temperature": float("nan")}, "temperature=nan"),
        ({"prompts": "train"}, "('eval', 'attack')"),
        ({"batch_size": 0}, "batch_size=0"),
    ],
)
def test_bad_input_is_one_clear_error(env, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        best_of_n(env, **kwargs)


def test_agent_reports_picks_and_changes_no_weights(world):
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=16, max_new_tokens=8)
    agent = BestOfN(venv, n=8, seed=0)
    before = [p.detach().clone() for p in agent.policy.parameters()]
    rec = Recorder()
    assert agent.learn(2, callback=rec) is agent
    assert [r.step for r in rec.reports] == [1, 2]
    for r in rec.reports:
        assert r.loss == 0.0 and r.kl == pytest.approx(0.0, abs=1e-5)  # the aligned policy is the reference
        assert r.reward >= r.extra["sample_reward"] and 0 <= r.cost <= 1  # the pick beats the group's mean reward
        assert r.extra["kl_selection_bound"] == pytest.approx(np.log(8) - 7 / 8)
    assert all(torch.equal(a, b) for a, b in zip(before, agent.policy.parameters()))
    assert agent.hyperparameters()["n"] == 8 and agent.num_prompts == 2


def test_agent_on_a_single_env_and_bad_hparams(env):
    rec = Recorder()
    BestOfN(env, n=2, num_prompts=2).learn(1, callback=rec)
    assert len(rec.reports) == 1
    with pytest.raises(ValueError, match="n=0"):
        BestOfN(env, n=0)
    with pytest.raises(ValueError, match="not a multiple of n=3"):
        BestOfN(rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4, max_new_tokens=8), n=3)


def test_resume_draws_the_same_next_prompts(world, tmp_path):
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=8, max_new_tokens=8)
    assert_resumes(BestOfN(venv, n=4, seed=2).learn(1), venv, tmp_path / "ckpt")
