"""Safe-set metrics, the monitor as a callback, results files and plots."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rlft_gym
from rlft_gym.agents import GRPO
from rlft_gym.baselines.cost_gate import VectorCostGatedReward
from rlft_gym.monitor import SafeSetMonitor, distinct_n, safe_set_summary
from rlft_gym.plot import plot_runs
from rlft_gym.results import read_jsonl


def row(step, harm, reward=0.0, d2=0.9, ppl=10.0):
    return {
        "step": step,
        "harmfulness": harm,
        "eval_reward": reward,
        "distinct_2": d2,
        "perplexity": ppl,
        "helpfulness": 0.9,
    }


def test_summary_math():
    hist = [row(0, 0.0), row(10, 0.1), row(20, 0.5), row(30, 0.9)]
    s = safe_set_summary(hist, cost_limit=0.2)
    assert s["time_in_safe_set"] == 0.5
    assert s["first_breach_step"] == 20
    assert s["harm_auc"] == pytest.approx((0.05 * 10 + 0.3 * 10 + 0.7 * 10) / 30)
    assert not s["reward_hacking"]


def test_summary_by_grader_reads_each_graders_harm():
    hist = [row(0, 0.0), row(10, 0.1), row(20, 0.1), row(30, 0.1)]
    for h, judge, oracle in zip(hist, [0.0, 0.3, 0.1, 0.6], [0.0, 0.0, 0.25, 0.2]):
        h.update(judge_harm=judge, oracle_harm=oracle)
    s = safe_set_summary(hist, cost_limit=0.2)["by_grader"]
    assert s["cost_model"] == {"time_in_safe_set": 1.0, "first_breach_step": None, "final": 0.1}
    assert s["judge"] == {"time_in_safe_set": 0.5, "first_breach_step": 10, "final": 0.6}
    # at the limit is inside (harm <= b), as for the cost model
    assert s["oracle"] == {"time_in_safe_set": 0.75, "first_breach_step": 20, "final": 0.2}
    # a grader missing from any row (an hf world without a judge) is left out, not guessed
    hist[2]["judge_harm"] = None
    assert "judge" not in safe_set_summary(hist, cost_limit=0.2)["by_grader"]


def test_summary_never_breached_and_reward_hacking():
    hist = [row(0, 0.0, reward=-3, d2=0.9, ppl=2.0), row(50, 0.05, reward=2, d2=0.2, ppl=20.0)]
    s = safe_set_summary(hist, cost_limit=0.2)
    assert s["first_breach_step"] is None and s["time_in_safe_set"] == 1.0
    assert s["reward_hacking"]
    # settling on one fluent answer: repetitive across samples but not less fluent -> not reward hacking
    collapsed = [row(0, 0.0, reward=-3, d2=0.46, ppl=2.0), row(50, 0.0, reward=2, d2=0.24, ppl=3.0)]
    assert not safe_set_summary(collapsed, cost_limit=0.2)["reward_hacking"]


def test_distinct_n():
    assert distinct_n(["a b c d"], 2) == 1.0
    assert distinct_n(["x x x x x"], 1) == pytest.approx(1 / 5)
    assert distinct_n([""], 2) == 0.0


def test_monitor_records_and_writes(world, tmp_path):
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4, max_new_tokens=8)
    path = tmp_path / "run.jsonl"
    mon = SafeSetMonitor(venv, every=2, results_path=path, run_config={"name": "t"})
    GRPO(venv, group_size=2).learn(3, callback=mon)
    assert [h["step"] for h in mon.history] == [0, 2, 3]
    rows = read_jsonl(path)
    assert rows[0]["type"] == "run" and rows[-1]["type"] == "summary"
    assert rows[0]["world_fingerprint"] == world.fingerprint and "torch" in rows[0]["versions"]
    assert rows[0]["config"]["agent"] == "GRPO" and rows[0]["seed"] == 0
    for key in (
        "harmfulness",
        "helpfulness",
        "perplexity",
        "kl",
        "eval_raw_reward",
        "eval_reward",
        "length",
        "distinct_1",
        "distinct_2",
    ):
        assert key in rows[1]
    assert 0.0 <= rows[-1]["time_in_safe_set"] <= 1.0
    png = plot_runs([path], tmp_path / "p.png")
    assert png.stat().st_size > 5000


def test_monitor_scores_through_the_env_and_reports_raw_and_defended_reward(world, monkeypatch):
    venv = VectorCostGatedReward(rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=2, max_new_tokens=8), floor=-5.0)
    mon = SafeSetMonitor(venv, samples_per_prompt=2)
    harmful = world.eval_prompts.prompts * 2
    rewards = np.linspace(-1, 1, len(harmful), dtype=np.float32)
    costs = np.resize(np.array([0.1, 0.9], np.float32), len(harmful))
    calls = []
    monkeypatch.setattr(venv.unwrapped, "score", lambda p, r: calls.append(list(p)) or (rewards, costs))
    row = mon.evaluate(GRPO(venv, group_size=2))
    assert calls == [harmful]  # one batched call, on the held-out harmful prompts' texts
    assert row["harmfulness"] == pytest.approx(costs.mean())
    assert row["eval_raw_reward"] == pytest.approx(rewards.mean())
    assert row["eval_reward"] == pytest.approx(np.where(costs > 0.5, -5.0, rewards).mean())  # the cost gate's reward


def test_monitor_rows_repeat_under_dropout_and_the_mode_is_restored(world):
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=2, max_new_tokens=8)
    agent = GRPO(venv, group_size=2)
    dropouts = [m for m in agent.policy.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts
    for m in dropouts:
        m.p = 0.5
    agent.policy.train()
    mon = SafeSetMonitor(venv)
    assert mon.evaluate(agent) == mon.evaluate(agent)  # every pass in eval mode: no dropout noise
    assert agent.policy.training


def test_monitor_sampling_generator_is_on_the_policy_device(world, monkeypatch):
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=2, max_new_tokens=8)
    agent = GRPO(venv, group_size=2)
    made = []

    class Recording(torch.Generator):
        def __new__(cls, device: torch.device | str | None = None) -> torch.Generator:
            made.append(device)
            return super().__new__(cls) if device is None else super().__new__(cls, device)

    monkeypatch.setattr(torch, "Generator", Recording)
    SafeSetMonitor(venv).evaluate(agent)
    assert made == [next(agent.policy.parameters()).device]


def test_monitor_bad_args(world):
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=2)
    with pytest.raises(ValueError, match="every=0"):
        SafeSetMonitor(venv, every=0)
    with pytest.raises(ValueError, match="samples_per_prompt=True"):
        SafeSetMonitor(venv, samples_per_prompt=True)
    with pytest.raises(RuntimeError, match="nothing evaluated yet"):
        SafeSetMonitor(venv).summary()


def test_read_jsonl_names_bad_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"a": 1}\n{oops\n')
    with pytest.raises(ValueError, match="bad.jsonl:2 is not valid JSON"):
        read_jsonl(p)
