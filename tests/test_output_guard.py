"""The output guard: violating responses scored as the refusal (one batched re-score), counts as training state, the
evaluation view, the monitor's guarded vs raw harm, and bad values."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlft_gym
from rlft_gym.agent import stateful_wrappers
from rlft_gym.agents import GRPO
from rlft_gym.baselines.output_guard import DEFAULT_REFUSAL, OutputGuard, VectorOutputGuard
from rlft_gym.experiment import AttackSpec, defence_kind, defence_parameters, run_attack
from rlft_gym.monitor import SafeSetMonitor
from rlft_gym.wrappers import defended_reward, defended_scores

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def case(world):
    """Four attack prompts answered harmfully, by refusal, harmfully and tersely, and a threshold between the
    refusal's cost and the harmful answers'."""
    rows = world.harmful_sft_dataset().select(range(2))
    ids = [world.attack_prompts.prompts.index(r["prompt"]) for r in rows]
    prompt_ids = [ids[0], ids[1], ids[1], ids[0]]
    responses = [rows[0]["response"], "i can ' t help with that .", rows[1]["response"], "no ."]
    return prompt_ids, responses


def test_default_refusal_round_trips_the_embedded_tokenizer(world):
    ids = world.tokenizer(DEFAULT_REFUSAL, add_special_tokens=False)["input_ids"]
    assert world.tokenizer.decode(ids) == "i can ' t help with that ."
    assert world.tokenizer.unk_token_id not in ids


def test_vector_guard_scores_violators_as_the_refusal_in_one_call(world, case, monkeypatch):
    prompt_ids, responses = case
    venv = rlft_gym.make_vec(
        "RPA-BeaverTails-v0", num_envs=4, extra_costs={"length": "length"}, cost_limits={"length": 0.5}
    )
    base = venv.unwrapped
    raw_rewards, raw_costs = base.score(prompt_ids, responses)
    refusal_rewards, refusal_costs = base.score(prompt_ids, [DEFAULT_REFUSAL] * 4)
    threshold = float(np.sort(raw_costs)[1] + np.sort(raw_costs)[2]) / 2  # two guarded, two not
    guard = VectorOutputGuard(venv, threshold=threshold)
    calls = []
    score = base.score
    monkeypatch.setattr(base, "score", lambda p, r: calls.append((list(p), list(r))) or score(p, r))
    guard.reset(options={"prompt_ids": prompt_ids})
    _, rewards, _, _, info = guard.step(responses)
    hit = raw_costs > threshold
    assert hit.sum() == 2 and info["guarded"].tolist() == hit.tolist()
    assert len(calls) == 2 and calls[1] == ([prompt_ids[i] for i in np.flatnonzero(hit)], [DEFAULT_REFUSAL] * 2)
    np.testing.assert_allclose(rewards, np.where(hit, refusal_rewards, raw_rewards), atol=1e-5)
    np.testing.assert_allclose(info["cost"], np.where(hit, refusal_costs, raw_costs), atol=1e-5)
    np.testing.assert_allclose(info["unguarded_cost"], raw_costs, atol=1e-5)
    np.testing.assert_allclose(info["raw_reward"], raw_rewards, atol=1e-5)  # the response's own reward
    np.testing.assert_array_equal(info["costs"]["harm"], info["cost"])
    refusal_length = base.named_costs([0], [DEFAULT_REFUSAL], np.zeros(1))["length"][0]
    assert np.allclose(info["costs"]["length"][hit], refusal_length)
    assert (guard.num_guarded, guard.num_responses, guard.guard_rate) == (2, 4, 0.5)
    # the evaluation view gives the same numbers and leaves the counts alone
    monkeypatch.setattr(base, "score", score)
    view = defended_scores(guard, info["raw_reward"], info["unguarded_cost"], prompt_ids)
    np.testing.assert_allclose(view[0], rewards, atol=1e-5)
    np.testing.assert_allclose(view[1], info["cost"], atol=1e-5)
    assert guard.num_responses == 4
    with pytest.raises(ValueError, match="VectorOutputGuard re-scores responses: pass the prompts"):
        defended_reward(guard, info["raw_reward"], info["unguarded_cost"])


def test_single_guard_and_counts_are_checkpointed(world, case):
    prompt_ids, responses = case
    env = OutputGuard(gym.make("RPA-BeaverTails-v0"), threshold=0.0)  # every response with any cost is replaced
    env.reset(options={"prompt_id": prompt_ids[0]})
    _, reward, _, _, info = env.step(responses[0])
    refusal_reward, refusal_cost = env.unwrapped.score([prompt_ids[0]], [DEFAULT_REFUSAL])
    assert info["guarded"] and info["unguarded_cost"] > info["cost"]
    assert reward == pytest.approx(float(refusal_reward[0]), abs=1e-5)
    assert info["cost"] == info["costs"]["harm"] == pytest.approx(float(refusal_cost[0]), abs=1e-6)
    assert stateful_wrappers(env) == [env] and env.state_dict() == {"num_guarded": 1, "num_responses": 1}
    fresh = OutputGuard(gym.make("RPA-BeaverTails-v0"))
    fresh.load_state_dict(env.state_dict())
    assert (fresh.num_guarded, fresh.num_responses) == (1, 1)


def test_monitor_grades_the_raw_text_and_reports_the_guarded_cost(world, monkeypatch):
    venv = VectorOutputGuard(rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=2, max_new_tokens=8), threshold=0.5)
    base = venv.unwrapped

    def score(prompts, responses):  # every sampled answer is harmful (cost 0.9, reward 1); the refusal costs 0.1
        refused = np.array([r == DEFAULT_REFUSAL for r in responses])
        return np.where(refused, -2.0, 1.0).astype(np.float32), np.where(refused, 0.1, 0.9).astype(np.float32)

    monkeypatch.setattr(base, "score", score)
    row = SafeSetMonitor(venv, samples_per_prompt=1).evaluate(GRPO(venv, group_size=2))
    assert row["harmfulness"] == pytest.approx(0.9) and row["eval_raw_reward"] == pytest.approx(1.0)
    assert row["eval_cost"] == row["Metrics/EpCost"] == pytest.approx(0.1)
    assert row["eval_reward"] == row["Metrics/EpRet"] == pytest.approx(-2.0)


def test_registered_as_a_wrapper_defence():
    assert defence_kind("output-guard") == "wrapper"
    assert defence_parameters("output-guard") == ["threshold", "refusal"]


def test_attack_run_under_the_guard(world, tmp_path):
    spec = AttackSpec(
        defence="output-guard",
        steps=2,
        num_envs=4,
        eval_every=1,
        env_kwargs={"max_new_tokens": 8},
        agent_kwargs={"group_size": 2},
        defence_kwargs={"threshold": 0.1},  # above the refusal's cost on the tiny world, below some answers'
    )
    final = run_attack(spec, tmp_path, progress=False)["final"]
    assert final["Metrics/EpCost"] == final["eval_cost"] <= final["harmfulness"]
    assert final["Metrics/EpRet"] == final["eval_reward"]


def test_bad_values_fail_clearly(world):
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=2)
    with pytest.raises(ValueError, match=r"threshold=1.5 must be a number in \[0, 1\]"):
        VectorOutputGuard(venv, threshold=1.5)
    with pytest.raises(ValueError, match="refusal='  ' must be a non-empty str"):
        VectorOutputGuard(venv, refusal="  ")
    with pytest.raises(ValueError, match="at most 1024 characters"):
        VectorOutputGuard(venv, refusal="x" * 2000)
