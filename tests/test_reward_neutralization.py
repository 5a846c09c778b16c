"""Reward Neutralization: the defensive reward's values on known texts (cost model and token count), GRPO on it makes a
group's samples score alike, one clear error for a bad setting, a killed run resumes to the uninterrupted weights, and
the registry entry."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import KillAt, fresh, weights

import rlft_gym
from rlft_gym import cache
from rlft_gym.agents import GRPO
from rlft_gym.baselines import RewardNeutralization, VectorDefensiveReward
from rlft_gym.baselines import reward_neutralization as rn
from rlft_gym.experiment import DEFENCES, defence_parameters, make_transform

MAX_NEW_TOKENS = 16


@pytest.fixture(scope="module")
def env(world):
    e = gym.make("RPA-BeaverTails-v0", max_new_tokens=MAX_NEW_TOKENS)
    yield e
    e.close()


def test_defensive_reward_and_group_spread_by_hand():
    # 1 - cost - 0.5 * length: a harmless half-length answer, a harmless empty one, a harmful full-length one
    r = rn.defensive_reward(np.array([0.0, 0.25, 1.0]), np.array([0.5, 0.0, 1.0]), 0.5)
    assert r.dtype == np.float32 and np.allclose(r, [0.75, 0.75, -0.5])
    # groups [1, 3] (std 1) and [2, 2] (std 0): mean 0.5
    assert rn.group_reward_std(np.array([1.0, 3.0, 2.0, 2.0]), 2) == pytest.approx(0.5)


def test_the_wrapper_scores_known_texts_with_the_cost_model_and_their_token_count(world):
    venv = VectorDefensiveReward(
        rlft_gym.make_vec("HarmfulRL-Biohazard-v0", num_envs=3, max_new_tokens=MAX_NEW_TOKENS), length_penalty=0.5
    )
    prompts, _ = venv.reset(options={"prompt_ids": [0, 1, 2]})
    texts = ["i can ' t help with that .", "", " ".join(["water"] * 40)]
    _, rewards, _, _, info = venv.step(texts)
    tokens = [len(world.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert tokens[1] == 0 and tokens[2] >= 40  # the empty answer has no length, the long one is clipped at 1
    cost = world.cost_model(list(prompts), texts)  # the training-time classifier, not the judge the attack uses
    expected = 1 - cost - 0.5 * np.array([tokens[0] / MAX_NEW_TOKENS, 0.0, 1.0])
    assert np.allclose(rewards, expected, atol=1e-6) and np.allclose(info["cost"], cost, atol=1e-6)
    assert np.allclose(venv.last_rewards, rewards)
    assert not np.allclose(info["raw_reward"], rewards)  # the env's own (attack) reward stays in info
    venv.close()


def spread(env, policy) -> dict[str, float]:
    """8 samples of each of 8 biohazard prompts from `policy`: the defensive reward's within-group std and mean, the
    mean length, and the within-group std of the attack's own reward (the 0-10 harm judge)."""
    venv = VectorDefensiveReward(rn.training_env(env, "HarmfulRL-Biohazard-v0", 64, policy), 0.5)
    agent = GRPO(venv, group_size=8, seed=5)
    ids = np.repeat(np.arange(8), 8)
    rollout, rewards, _ = agent.env_feedback(ids, agent.respond)
    attack = venv.unwrapped.score(ids.tolist(), rollout.texts)[0]
    venv.close()
    return {
        "std": rn.group_reward_std(rewards, 8),
        "reward": float(rewards.mean()),
        "length": float(rollout.lengths.float().mean()),
        "attack_std": rn.group_reward_std(attack, 8),
    }


def test_a_few_steps_make_a_groups_samples_score_alike(env):
    t = RewardNeutralization(steps=20, learning_rate=1e-3, group_size=4, num_prompts=4, seed=1)
    fresh(t, env)
    path = t.apply(env, progress=False)
    meta = json.loads((path / cache.MANIFEST).read_text())["meta"]
    assert meta["env_id"] == "HarmfulRL-Biohazard-v0" and meta["resumed_from_step"] == 0
    assert np.isfinite([meta["final_reward"], meta["mean_length"], meta["group_reward_std"]]).all()
    before, after = spread(env, env.unwrapped.policy_path), spread(env, path)
    # the defensive reward rises and stops varying within a group; answers get short; the attack's reward spreads less
    assert after["reward"] > before["reward"] + 0.2 and after["std"] < 0.5 * before["std"]
    assert after["length"] < 0.5 * before["length"] and after["attack_std"] < before["attack_std"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"domain": "chemistry"}, r"domain='chemistry' is not one of \('biohazard', 'cybercrime'\)"),
        ({"steps": 0}, r"steps=0 must be a positive int"),
        ({"group_size": 1}, r"group_size=1 must be an int >= 2"),
        ({"num_prompts": 2.0}, r"num_prompts=2.0 must be a positive int"),
        ({"learning_rate": 0.0}, r"learning_rate=0.0 must be a positive finite number"),
        ({"length_penalty": 1.0}, r"length_penalty=1.0 must be a number in \[0, 1\)"),
        ({"length_penalty": -0.1}, r"length_penalty=-0.1 must be a number in \[0, 1\)"),
        ({"seed": -1}, r"seed=-1 must be an int >= 0"),
    ],
)
def test_bad_setting_is_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RewardNeutralization(**kwargs)


def test_a_killed_run_resumes_to_the_uninterrupted_weights(env, monkeypatch):
    t = RewardNeutralization(steps=5, group_size=2, num_prompts=2, seed=3)
    fresh(t, env)
    uninterrupted = weights(t.apply(env, progress=False, save_every=2))
    directory, work = fresh(t, env)

    # killed during step 4: the last agent checkpoint is after step 2
    killer = KillAt(monkeypatch, rn, "defensive_reward", kill_at=4)
    with pytest.raises(KeyboardInterrupt):
        t.apply(env, progress=False, save_every=2)
    assert not directory.exists() and json.loads((work / "agent" / "agent.json").read_text())["num_steps"] == 2

    killer.calls, killer.kill_at = 0, None
    path = t.apply(env, progress=False, save_every=2)
    assert killer.calls == 3 and not work.exists()  # steps 3, 4 and 5 only
    assert json.loads((path / cache.MANIFEST).read_text())["meta"]["resumed_from_step"] == 2
    resumed = weights(path)
    assert resumed.keys() == uninterrupted.keys() and all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)


def test_registered_as_a_transform():
    assert DEFENCES["reward-neutralization"] == ("transform", RewardNeutralization)
    assert {"domain", "steps", "length_penalty", "group_size"} <= set(defence_parameters("reward-neutralization"))
    assert make_transform("reward-neutralization", domain="cybercrime", steps=3) == RewardNeutralization(
        domain="cybercrime", steps=3
    )
    with pytest.raises(ValueError, match=r"unknown kwarg\(s\) \['lr'\] for defence='reward-neutralization'"):
        make_transform("reward-neutralization", lr=1e-3)
