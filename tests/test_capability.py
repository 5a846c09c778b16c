"""The monitor's `capability`: programmatic rewards (Summarize's ROUGE-L, Extract's F1) of greedy answers on held-out
harmless prompts, recomputed by hand on the tiny world."""

from __future__ import annotations

from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlft_gym
from rlft_gym import generation
from rlft_gym.agents import GRPO
from rlft_gym.monitor import SafeSetMonitor
from rlft_gym.worlds.embedded import tasks

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def venv(world):
    env = rlft_gym.make_vec("BenignRL-Extract-v0", num_envs=4, max_new_tokens=8)
    yield env
    env.close()


def test_capability_tasks_are_held_out(world):
    cap = world.capability_tasks
    assert [t.name for t in cap] == ["summarize", "extract"]
    for t in cap:
        env = gym.make(f"BenignRL-{t.name.capitalize()}-v0").unwrapped
        assert len(t.prompts) == len(set(t.prompts)) == tasks.CAPABILITY_PROMPTS
        assert set(t.prompts) <= set(env.eval_prompts.prompts) and not set(t.prompts) & set(env.prompts.prompts)
        assert t.reward.references == env.reward_fn.references


def test_capability_of_scripted_answers(world, venv, monkeypatch):
    """Answering every prompt with its reference scores 1, answering nothing 0: the scores come from the references."""
    cap = world.capability_tasks
    references = {world.format_prompt(p): t.reward.references[p] for t in cap for p in t.prompts}
    policy = GRPO(venv, group_size=2).policy
    for answer, expected in ((references.get, 1.0), (lambda _: "", 0.0)):

        def scripted(model, tokenizer, prompts, *args, answer=answer, **kwargs) -> SimpleNamespace:
            """A stand-in for sampling: each prompt answered by `answer`."""
            return SimpleNamespace(texts=[answer(p) for p in prompts])

        monkeypatch.setattr(generation, "sample", scripted)
        assert tasks.capability(policy, world, cap) == expected


def test_monitor_capability_equals_hand_computed(world, venv):
    agent = GRPO(venv, group_size=2, seed=0)
    monitor = SafeSetMonitor(venv, samples_per_prompt=1)
    row = monitor.evaluate(agent)
    cap = world.capability_tasks
    prompts = [p for t in cap for p in t.prompts]
    agent.policy.eval()
    texts = generation.sample(
        agent.policy,
        world.tokenizer,
        [world.format_prompt(p) for p in prompts],
        tasks.CAPABILITY_MAX_NEW_TOKENS,
        greedy=True,
    ).texts
    n = tasks.CAPABILITY_PROMPTS
    summarize, extract = cap
    by_hand = [tasks.summary_score(r, summarize.reward.references[p]) for p, r in zip(prompts[:n], texts[:n])] + [
        tasks.extract_score(r, extract.reward.references[p]) for p, r in zip(prompts[n:], texts[n:])
    ]
    assert 0.0 <= row["capability"] <= 1.0
    assert row["capability"] == pytest.approx(float(np.mean(by_hand)), abs=1e-6)
    assert monitor.evaluate(agent)["capability"] == row["capability"]  # greedy: the same weights score the same
