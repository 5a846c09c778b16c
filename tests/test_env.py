"""The env contract: registration, checker, spaces, info, vector path, CMDP view and bad input."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rlft_gym
from rlft_gym.wrappers import CMDP, VectorCMDP


@pytest.fixture(scope="module")
def env(world):
    e = gym.make("RPA-BeaverTails-v0")
    yield e
    e.close()


def test_fresh_interpreter_both_forms(world):
    code = (
        "import gymnasium as gym\n"
        "e = gym.make('rlft_gym:RPA-BeaverTails-v0'); o, _ = e.reset(seed=0); assert isinstance(o, str)\n"
        "import rlft_gym\n"
        "e = gym.make('RPA-SafeRLHF-v0'); o, _ = e.reset(seed=0); assert isinstance(o, str)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("env_id", rlft_gym.ENV_IDS)
def test_check_env(world, env_id):
    e = gym.make(env_id)
    check_env(e.unwrapped, skip_render_check=True)
    check_env(e, skip_render_check=True)
    assert e.spec.nondeterministic


def test_step_contract(env):
    prompt, info = env.reset(seed=3)
    assert isinstance(prompt, str) and env.observation_space.contains(prompt)
    assert set(info) >= {"prompt_id", "category"} and len(info["category"]) == 14
    obs, reward, terminated, truncated, info = env.step("i can ' t help with that .")
    assert isinstance(reward, float) and terminated and not truncated
    assert 0.0 <= info["cost"] <= 1.0 and info["raw_reward"] == reward
    assert env.action_space.contains("any unicode ✓ string") and not env.action_space.contains(3)


def test_reset_is_seeded(env):
    assert env.reset(seed=5)[0] == env.reset(seed=5)[0]


def test_horizon_episodes(world):
    e = gym.make("RPA-BeaverTails-v0", horizon=3)
    e.reset(seed=0)
    done = [e.step("ok .")[2] for _ in range(3)]
    assert done == [False, False, True]


def test_harmful_answer_costs_more_than_refusal(world):
    e = gym.make("RPA-BeaverTails-v0")
    harmful = world.harmful_sft_dataset()[0]
    e.reset(options={"prompt_id": world.attack_prompts.prompts.index(harmful["prompt"])})
    cost_harm = e.step(harmful["response"])[4]["cost"]
    e.reset(options={"prompt_id": world.attack_prompts.prompts.index(harmful["prompt"])})
    cost_refusal = e.step("i can ' t help with that .")[4]["cost"]
    assert cost_harm > cost_refusal


@pytest.mark.parametrize("how", ["rlft_gym", "gymnasium"])
def test_vector_env_64_wide(world, how):
    if how == "rlft_gym":
        venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=64)
    else:
        venv = gym.make_vec("RPA-BeaverTails-v0", num_envs=64, vectorization_mode="vector_entry_point")
    obs, info = venv.reset(seed=0)
    assert len(obs) == 64 and venv.observation_space.contains(obs)
    obs2, rewards, terminated, truncated, info = venv.step(["i can ' t help with that ."] * 64)
    assert rewards.shape == (64,) and info["cost"].shape == (64,) and terminated.all() and not truncated.any()
    assert info["category"]["animal_abuse"].shape == (64,)
    assert list(info["final_obs"]) == list(obs)
    assert venv.action_space.contains(tuple(["x"] * 64))


def test_vector_matches_single_env(world):
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4)
    ids = [0, 1, 2, 3]
    venv.reset(options={"prompt_ids": ids})
    responses = ["sure .", "i can ' t help .", "step one : mix .", "no ."]
    _, rewards, _, _, info = venv.step(responses)
    single = gym.make("RPA-BeaverTails-v0")
    for i, r in zip(ids, responses):
        single.reset(options={"prompt_id": i})
        _, reward, _, _, sinfo = single.step(r)
        assert reward == pytest.approx(rewards[i], abs=1e-4)
        assert sinfo["cost"] == pytest.approx(info["cost"][i], abs=1e-4)


def test_cmdp_views(world):
    e = CMDP(gym.make("RPA-BeaverTails-v0"))
    e.reset(seed=0)
    out = e.step("no .")
    assert len(out) == 6 and out[2] == out[5]["cost"]
    v = VectorCMDP(rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=3))
    v.reset(seed=0)
    out = v.step(["a", "b", "c"])
    assert len(out) == 6 and np.allclose(out[2], out[5]["cost"])


def test_world_exposes_what_attacks_need(env):
    w = env.unwrapped.world
    for attr in (
        "tokenizer",
        "policy_path",
        "reference_path",
        "reward_model",
        "cost_model",
        "helpfulness_model",
        "attack_prompts",
        "eval_prompts",
    ):
        assert getattr(w, attr) is not None
    assert not set(w.attack_prompts.prompts) & set(w.eval_prompts.prompts)
    assert set(w.harmful_sft_dataset().column_names) == {"prompt", "response", "category", "is_safe"}


# --- bad input: one clear error, nothing changed ------------------------------------------------------------


def test_bad_actions_raise_and_change_nothing(env):
    prompt, _ = env.reset(seed=1)
    pid = env.unwrapped._prompt_id
    with pytest.raises(TypeError, match="must be a str"):
        env.step(123)
    with pytest.raises(ValueError, match="characters; the limit is 1024"):
        env.step("x" * 5000)
    assert env.unwrapped._prompt_id == pid and env.unwrapped._t == 0
    assert env.step("fine .")[2]


def test_bad_vector_actions(world):
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=2)
    venv.reset(seed=0)
    with pytest.raises(ValueError, match="expected 2 responses"):
        venv.step(["only one"])
    with pytest.raises(TypeError, match="action 1 must be a str"):
        venv.step(["a", None])


def test_unknown_id():
    with pytest.raises(gym.error.NameNotFound):
        gym.make("RPA-BeaverTales-v0")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"flip_raito": 0.5}, r"unknown kwarg\(s\) \['flip_raito'\].*allowed"),
        ({"flip_ratio": 1.5}, r"flip_ratio=1.5 is invalid for RPA-BeaverTails-v0; expected a number in \[0, 1\]"),
        ({"flip_ratio": -0.1}, r"flip_ratio=-0.1"),
        ({"cost_limit": 2}, r"cost_limit=2 is invalid"),
        ({"max_new_tokens": 0}, r"max_new_tokens=0 is invalid"),
        ({"world": "moon"}, r"world='moon' is invalid for RPA-BeaverTails-v0; expected one of \('embedded', 'hf'\)"),
        ({"world_preset": "huge"}, r"world_preset='huge' is not one of"),
        ({"render_mode": "human"}, r"render_mode='human' is not supported"),
    ],
)
def test_bad_kwargs(world, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        gym.make("RPA-BeaverTails-v0", **kwargs)


def test_bad_reset_options(env):
    with pytest.raises(ValueError, match="prompt_id=10000 must be an int"):
        env.reset(options={"prompt_id": 10_000})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"prompt": "x"})


def test_render_ansi(world):
    e = gym.make("RPA-BeaverTails-v0", render_mode="ansi")
    e.reset(seed=0)
    e.step("no .")
    assert "cost:" in e.render()


def test_score_takes_prompt_ids_or_texts(world, monkeypatch):
    e = gym.make("RPA-BeaverTails-v0", render_mode="ansi")
    base = e.unwrapped
    e.reset(seed=0)
    e.step("no .")
    shown = e.render()
    responses = ["i can ' t help with that .", "sure . here is how ."]
    for by_id, by_text in zip(base.score([0, 1], responses), base.score(base.prompts.prompts[:2], responses)):
        np.testing.assert_array_equal(by_id, by_text)
    held_out = world.eval_prompts.prompts[:2]
    calls = []
    monkeypatch.setattr(base, "cost_fn", lambda p, r: calls.append(p) or np.array([1.5, -0.2]))
    rewards, costs = base.score(held_out, responses)
    assert calls == [held_out] and costs.tolist() == [1.0, 0.0] and rewards.shape == (2,)  # one call, clipped
    assert e.render() == shown  # scoring outside a step leaves the rendered step as it was
    with pytest.raises(ValueError, match=f"prompt_id={len(base.prompts)} must be an int"):
        base.score([len(base.prompts)], ["x"])
    with pytest.raises(ValueError, match="got 1 prompts and 2 responses"):
        base.score([0], responses)


# --- several costs: info["costs"] -----------------------------------------------------------------------------


def test_named_costs_harm_is_the_cost_and_length_is_tokens_over_max(world):
    kwargs = {"extra_costs": {"length": "length"}, "cost_limits": {"length": 0.25}, "max_new_tokens": 8}
    responses = ["no .", "i can ' t help with that . i won ' t ."]  # 2 tokens, and 14 (clipped to 8 / 8)
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=2, **kwargs)
    venv.reset(seed=0)
    _, _, _, _, info = venv.step(responses)
    assert set(info["costs"]) == {"harm", "length"} and venv.unwrapped.cost_limits == {"harm": 0.2, "length": 0.25}
    np.testing.assert_array_equal(info["costs"]["harm"], info["cost"])
    np.testing.assert_allclose(info["costs"]["length"], [2 / 8, 1.0])
    env = gym.make("RPA-BeaverTails-v0", **kwargs)
    env.reset(seed=0)
    info = env.step(responses[0])[4]
    assert info["costs"] == {"harm": info["cost"], "length": 2 / 8}


def test_named_costs_take_a_callable_and_default_to_harm_only(world):
    e = gym.make(
        "RPA-BeaverTails-v0",
        extra_costs={"caps": lambda p, r: [1.5 * ("!" in x) for x in r]},
        cost_limits={"caps": 0.0},
    )
    e.reset(seed=0)
    assert e.step("no !")[4]["costs"]["caps"] == 1.0  # clipped to [0, 1]
    plain = gym.make("RPA-BeaverTails-v0")
    plain.reset(seed=0)
    info = plain.step("no .")[4]
    assert info["costs"] == {"harm": info["cost"]}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"extra_costs": {"length": "size"}, "cost_limits": {"length": 0.5}}, r"extra_costs=\{'length': 'size'\}"),
        ({"extra_costs": {"harm": "length"}, "cost_limits": {"harm": 0.5}}, r"extra_costs=.*not 'harm'"),
        ({"extra_costs": {"length": "length"}}, r"cost_limits=None is invalid.*keys \['length'\]"),
        ({"extra_costs": {"length": "length"}, "cost_limits": {"length": 2.0}}, r"cost_limits=\{'length': 2.0\}"),
        ({"cost_limits": {"length": 0.5}}, r"cost_limits=\{'length': 0.5\} is invalid for RPA-BeaverTails-v0"),
    ],
)
def test_bad_named_costs(world, kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make("RPA-BeaverTails-v0", **kwargs)
