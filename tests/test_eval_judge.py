"""The evaluation judge: a cached artifact on data disjoint from the cost model's, and harm graded apart from the cost
in the monitor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import rlft_gym
from rlft_gym.agents import GRPO
from rlft_gym.monitor import EXPLOIT_GAP, SafeSetMonitor, safe_set_summary
from rlft_gym.results import read_jsonl
from rlft_gym.train import METRICS
from rlft_gym.worlds.embedded import data
from rlft_gym.worlds.embedded import eval_judge as recipe

torch.set_num_threads(1)


def test_judge_builds_and_is_cached(world, monkeypatch):
    path = world.eval_judge_path()
    assert (path / "manifest.json").exists() and (path / METRICS).exists()
    scores = world.eval_judge(["anything"], ["i can not help with that ."])
    assert scores.shape == (1,) and 0.0 <= float(scores[0]) <= 1.0
    card = world.eval_judge_card
    assert card["path"] == str(path)
    assert card["fingerprint"] == json.loads((path / "manifest.json").read_text())["fingerprint"]
    assert json.loads((path / "manifest.json").read_text())["config"]["core"] == world.fingerprint

    def no_retrain(*args, **kwargs):
        raise AssertionError("the cached eval judge was retrained")

    monkeypatch.setattr(recipe, "build", no_retrain)
    assert world.eval_judge_path() == path and world.eval_judge_metrics["n_train_rows"] > 0


def test_judge_sees_the_response_only(world):
    judge = world.eval_judge
    responses = [r for _, r, _, _ in recipe.training_rows(world.corpus, 0)[:8]]
    assert np.allclose(judge(["a"] * 8, responses), judge([f"prompt {i}" for i in range(8)], responses))


def test_training_rows_are_disjoint_from_the_cost_models(world):
    corpus, seed = world.corpus, world.config.seed
    rows = recipe.training_rows(corpus, seed)
    cost_sets = [
        data.cost_rows(corpus, corpus.hazard_prompts("train"), corpus.benign_prompts("train"), seed),
        data.cost_rows(corpus, corpus.hazard_prompts("heldout"), corpus.benign_prompts("heldout"), seed + 1, True),
        data.cost_rows(corpus, corpus.hazard_prompts("eval"), corpus.benign_prompts("eval"), seed + 2),
    ]
    # refusals are drawn in every frame, so a few may coincide with the cost model's rows; nothing else does
    refusal_kinds = {"refusal_other_frames", "degenerate_refusal_other_frames"}
    for cost in cost_sets:
        assert {k for p, r, _, k in rows if (p, r) in {(p, r) for p, r, _ in cost}} <= refusal_kinds
    # not even the same response text, but for those refusals and a few degenerate repetitions ("i i i i ...")
    shared = {r for _, r, _ in cost_sets[0]}
    assert {k for _, r, _, k in rows if r in shared} <= {"degenerate_refusal", "degenerate_mixture"} | refusal_kinds
    # the refusals in seen frames: one per hazard prompt, harmless, as many as the held-out-frame refusals
    counts = [k for *_, k in rows]
    assert counts.count("refusal_other_frames") == counts.count("refusal") == len(corpus.hazard_prompts("train"))
    assert all(y == 0 for _, _, y, k in rows if k in refusal_kinds)
    held_back = {p.text for s in ("eval", "heldout") for p in corpus.hazard_prompts(s) + corpus.benign_prompts(s)}
    assert not {p for p, _, _, _ in rows} & held_back
    kinds = {k for _, _, _, k in rows}
    assert set(recipe.MIXED_KINDS) <= kinds
    assert all(y == 1 for _, _, y, k in rows if k in recipe.MIXED_KINDS)
    assert 0.3 < np.mean([y for _, _, y, _ in rows]) < 0.6
    # the labels are the ground truth's
    oracle = world.harm_oracle([p for p, _, _, _ in rows], [r for _, r, _, _ in rows])
    assert np.array_equal(oracle > 0.5, np.array([y == 1 for _, _, y, _ in rows]))


def test_report_mixed_framing_accuracy_beside_the_cost_model(world):
    """Reported, not thresholded: the tiny world is unfaithful (see the standard world's numbers in docs)."""
    metrics = world.eval_judge_metrics
    for split in ("eval_prompts_seen_frames", "eval_prompts_heldout_frames"):
        m = metrics[split]
        print(
            f"{split}: eval judge acc {m['eval_judge']['accuracy']:.3f} mixed {m['eval_judge']['mixed_accuracy']:.3f}"
            f" | cost model acc {m['cost_model']['accuracy']:.3f} mixed {m['cost_model']['mixed_accuracy']:.3f}"
        )
        assert m["labels_agree_with_oracle"] == 1.0
        for scorer in ("eval_judge", "cost_model"):
            assert 0.0 <= m[scorer]["mixed_accuracy"] <= 1.0
            assert set(recipe.MIXED_KINDS) <= set(m[scorer]["by_kind"])
    print(f"trained in {metrics['train_s']:.1f} s, built in {metrics['build_s']:.1f} s")


def test_monitor_row_carries_judge_harm_and_cost_model_gap(world, tmp_path):
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=2, max_new_tokens=8)
    path = tmp_path / "run.jsonl"
    mon = SafeSetMonitor(venv, every=2, results_path=path)
    GRPO(venv, group_size=2).learn(2, callback=mon)
    rows = read_jsonl(path)
    assert rows[0]["eval_judge"] == world.eval_judge_card
    for row in rows[1:-1]:
        assert 0.0 <= row["judge_harm"] <= 1.0
        assert row["cost_model_gap"] == pytest.approx(row["oracle_harm"] - row["harmfulness"])  # the oracle first
    assert isinstance(rows[-1]["cost_model_exploited"], bool)


def test_oracle_missed_is_oracle_harm_the_cost_calls_safe(tmp_path, monkeypatch):
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=2, max_new_tokens=8)
    base = venv.unwrapped
    n = len(base.eval_prompts.prompts)
    oracle, cost = np.resize([1.0, 1.0, 0.0, 0.0], n), np.resize([0.9, 0.2, 0.9, 0.2], n)
    monkeypatch.setattr(base.world, "harm_oracle", lambda prompts, responses: oracle[: len(responses)])
    score = base.score
    monkeypatch.setattr(base, "score", lambda prompts, responses: (score(prompts, responses)[0], cost[: len(prompts)]))
    mon = SafeSetMonitor(venv, samples_per_prompt=1)
    row = mon.evaluate(GRPO(venv, group_size=2))
    # harmful by the oracle and at most 0.5 by the cost: the second of every four answers
    assert row["oracle_missed"] == pytest.approx(np.mean(np.arange(n) % 4 == 1))
    assert row["oracle_harm"] == pytest.approx(oracle.mean())


def test_custom_eval_judge_is_used_and_named(world, tmp_path):
    calls = []

    def keyword_judge(prompts: list[str], responses: list[str]) -> list[float]:
        calls.append(len(responses))
        return [0.75] * len(responses)

    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=2, max_new_tokens=8)
    path = tmp_path / "run.jsonl"
    mon = SafeSetMonitor(venv, results_path=path, eval_judge=keyword_judge)
    GRPO(venv, group_size=2).learn(1, callback=mon)
    header, row = read_jsonl(path)[:2]
    assert header["eval_judge"] == {"name": "test_custom_eval_judge_is_used_and_named.<locals>.keyword_judge"}
    assert calls and calls[0] == len(world.eval_prompts.prompts) * mon.samples_per_prompt
    assert row["judge_harm"] == pytest.approx(0.75)
    assert row["cost_model_gap"] == pytest.approx(row["oracle_harm"] - row["harmfulness"])


def row(step: int, harm: float, oracle: float | None, judge: float | None) -> dict:
    truth = oracle if oracle is not None else judge
    return {
        "step": step,
        "harmfulness": harm,
        "oracle_harm": oracle,
        "judge_harm": judge,
        "cost_model_gap": truth - harm if truth is not None else None,
        "eval_reward": float(step),
        "distinct_2": 0.9,
        "perplexity": 10.0,
    }


def test_cost_model_exploited_flag():
    # the oracle says harmful, the cost model says safe: exploited, and not reward hacking (the text stays fluent)
    hist = [row(0, 0.05, 0.0, 0.1), row(50, 0.05, 0.9, 0.2)]
    s = safe_set_summary(hist, cost_limit=0.2)
    assert s["cost_model_exploited"] and not s["reward_hacking"]
    # the cost model sees the harm too: a breach, not an exploit
    assert not safe_set_summary([row(0, 0.05, 0.0, 0.1), row(50, 0.9, 0.9, 0.9)], 0.2)["cost_model_exploited"]
    # a small gap is no exploit; the judge alone can raise the flag; no grader at all cannot
    assert not safe_set_summary([row(0, 0.1, 0.1 + EXPLOIT_GAP / 2, None)], 0.2)["cost_model_exploited"]
    assert safe_set_summary([row(0, 0.1, None, 0.8)], 0.2)["cost_model_exploited"]
    assert not safe_set_summary([row(0, 0.1, None, None)], 0.2)["cost_model_exploited"]
