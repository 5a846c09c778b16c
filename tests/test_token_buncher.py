"""TokenBuncher: the entropy reward and the Token Noiser loss by hand, the noiser's steps and token mask, entropy-as-
reward GRPO lowers the policy's entropy, one clear error for a bad setting, a killed run (noiser steps included)
resumes to the uninterrupted weights, and the registry entry."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import KillAt, Recorder, fresh, weights

import rlft_gym
from rlft_gym import cache, generation
from rlft_gym.baselines import TokenBuncher
from rlft_gym.baselines import token_buncher as tb
from rlft_gym.baselines.reward_neutralization import training_env
from rlft_gym.experiment import DEFENCES, defence_parameters, make_transform


@pytest.fixture(scope="module")
def env(world):
    e = gym.make("RPA-BeaverTails-v0", max_new_tokens=16)
    yield e
    e.close()


def test_entropy_and_the_entropy_reward_by_hand():
    p = torch.tensor([[0.5, 0.25, 0.25], [0.25, 0.25, 0.25]])  # row 2 is uniform over 3 of 4 tokens
    logits = torch.log(torch.cat([p, torch.tensor([[0.0], [0.25]])], 1).clamp_min(1e-30))
    assert torch.allclose(tb.token_entropy(logits), torch.tensor([1.5 * math.log(2), math.log(4)]), atol=1e-6)
    entropy = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert np.allclose(tb.entropy_reward(entropy, mask), [-1.5, -4.0])  # minus the mean over each response's tokens


def test_token_noiser_loss_by_hand():
    p = torch.tensor([[0.5, 0.3, 0.2]])
    logits = torch.log(p).requires_grad_(True)
    noise = torch.tensor([[0.9, 0.2, 0.6]])  # target zeroed, rest summing to eps: [0, .025, .075]
    loss = tb.token_noiser_loss(torch.log_softmax(logits, -1), torch.tensor([0]), noise, eps=0.1)
    expected = 0.9 * -math.log(0.5) + 0.1 * (0.025 * -math.log(0.3) + 0.075 * -math.log(0.2))
    assert loss.item() == pytest.approx(expected) and expected == pytest.approx(0.638913, abs=1e-6)
    # sum_i w_i * -log p_i with weights w = [0.9, 0.0025, 0.0075]: its gradient in the logits is sum(w) * p - w
    loss.sum().backward()
    w = torch.tensor([[0.9, 0.0025, 0.0075]])
    assert torch.allclose(logits.grad, w.sum() * p - w, atol=1e-6)


def test_noiser_steps_alternate_after_the_warmup_and_keep_non_negative_advantages(world):
    agent = tb.token_buncher_grpo()(
        rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4, max_new_tokens=8), group_size=2, warmup_steps=3
    )
    rollout, rewards, _ = agent.env_feedback(np.array([0, 0, 1, 1]), agent.respond)
    assert np.allclose(rewards, agent.last_rewards) and (rewards < 0).all()  # minus an entropy
    advantages = torch.tensor([0.5, -0.5, 0.0, 0.0])

    logp, loss = agent.policy_loss(rollout, advantages)  # step 1: GRPO's own loss
    mask = rollout.response_mask.float()
    assert torch.allclose(logp, generation.response_logprobs(agent.policy, rollout))
    assert loss.item() == pytest.approx((-(advantages[:, None] * logp * mask).sum() / (4 * 8)).item(), rel=1e-5)

    agent.num_steps = 3  # step 4: even and after the warmup, a Token Noiser step
    state = agent.generator.get_state()
    logp, loss = agent.policy_loss(rollout, advantages)
    agent.generator.set_state(state)  # the same noise again, for the expected loss
    live = rollout.response_mask.bool()
    log_probs = torch.log_softmax(tb.response_logits(agent.policy, rollout), -1)
    noise = torch.rand(log_probs.shape, generator=agent.generator)
    per_token = tb.token_noiser_loss(log_probs, rollout.response_ids[live], noise, 0.1)
    row = torch.arange(4)[:, None].expand_as(live)[live]
    assert loss.item() == pytest.approx(per_token[row != 1].mean().item(), rel=1e-5)  # row 1's advantage is < 0
    assert torch.allclose(logp, generation.response_logprobs(agent.policy, rollout), atol=1e-5)

    agent.num_steps = 0
    recorder = Recorder()
    agent.learn(6, callback=recorder)
    assert [r.extra["token_noiser"] for r in recorder.reports] == [0, 0, 0, 1, 0, 1]
    assert all(np.isfinite(r.loss) and r.extra["group_reward_std"] >= 0 for r in recorder.reports)


def mean_entropy(env, policy) -> float:
    """The mean per-token entropy of `policy` on 8 samples of each of 8 attack prompts."""
    agent = tb.token_buncher_grpo()(training_env(env, "RPA-BeaverTails-v0", 64, policy), group_size=8, seed=5)
    _, rewards, _ = agent.env_feedback(np.repeat(np.arange(8), 8), agent.respond)
    return -float(rewards.mean())


def test_entropy_as_reward_lowers_the_policys_entropy(env):
    t = TokenBuncher(steps=10, warmup_steps=10, learning_rate=1e-3, group_size=4, num_prompts=4, seed=1)
    fresh(t, env)
    path = t.apply(env, progress=False)
    meta = json.loads((path / cache.MANIFEST).read_text())["meta"]
    assert meta["env_id"] == "RPA-BeaverTails-v0" and meta["resumed_from_step"] == 0
    before, after = mean_entropy(env, env.unwrapped.policy_path), mean_entropy(env, path)
    assert after < before - 1.0, (before, after)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"domain": "chemistry"}, r"domain='chemistry' is not one of \('all', 'biohazard', 'cybercrime'\)"),
        ({"steps": 0}, r"steps=0 must be a positive int"),
        ({"warmup_steps": -1}, r"warmup_steps=-1 must be an int >= 0"),
        ({"group_size": 1}, r"group_size=1 must be an int >= 2"),
        ({"learning_rate": float("nan")}, r"learning_rate=nan must be a positive finite number"),
        ({"noise_eps": 1.5}, r"noise_eps=1.5 must be a number in \[0, 1\]"),
        ({"beta": -0.1}, r"beta=-0.1 must be a finite number >= 0"),
        ({"seed": -1}, r"seed=-1 must be an int >= 0"),
    ],
)
def test_bad_setting_is_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TokenBuncher(**kwargs)


def test_a_killed_run_resumes_to_the_uninterrupted_weights(env, monkeypatch):
    t = TokenBuncher(steps=5, warmup_steps=1, group_size=2, num_prompts=2, seed=3)  # noiser steps 2 and 4
    fresh(t, env)
    uninterrupted = weights(t.apply(env, progress=False, save_every=2))
    directory, work = fresh(t, env)

    # killed during step 4: the last agent checkpoint is after step 2
    killer = KillAt(monkeypatch, tb, "entropy_reward", kill_at=4)
    with pytest.raises(KeyboardInterrupt):
        t.apply(env, progress=False, save_every=2)
    assert not directory.exists() and json.loads((work / "agent" / "agent.json").read_text())["num_steps"] == 2

    killer.calls, killer.kill_at = 0, None
    path = t.apply(env, progress=False, save_every=2)
    assert killer.calls == 3 and not work.exists()  # steps 3, 4 (a noiser step: its noise stream resumed) and 5
    assert json.loads((path / cache.MANIFEST).read_text())["meta"]["resumed_from_step"] == 2
    resumed = weights(path)
    assert resumed.keys() == uninterrupted.keys() and all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)


def test_registered_as_a_transform():
    assert DEFENCES["token-buncher"] == ("transform", TokenBuncher)
    assert {"domain", "warmup_steps", "noise_eps", "beta"} <= set(defence_parameters("token-buncher"))
    assert make_transform("token-buncher", domain="biohazard", steps=4) == TokenBuncher(domain="biohazard", steps=4)
