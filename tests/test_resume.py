"""Resume with training state beyond the weights: stateful constraints, stateful env wrappers, object
hyperparameters."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import Recorder, assert_resumes

import rlft_gym
from rlft_gym.agent import Constraint
from rlft_gym.agents import GRPO, PPO, AlphaSchedule, ExpertGuidedGRPO
from rlft_gym.baselines import VectorCostGatedReward
from rlft_gym.callbacks import Callback
from rlft_gym.experiment import AttackSpec, run_attack
from rlft_gym.results import read_jsonl


class MovingAnchor(Constraint):
    """A proximal term to an anchor that moves to the current weights every `every` optimizer steps: the next step
    depends on the anchor and the step counter, so both must be restored on resume."""

    def __init__(self, rho: float = 50.0, every: int = 2) -> None:
        self.rho, self.every, self.count, self.anchor = rho, every, 0, []
        self.calls: list[tuple[int, int]] = []

    def setup(self, agent):
        self.anchor = [p.detach().clone() for p in agent.policy.parameters()]

    def loss(self, agent, batch):
        return self.rho / 2 * sum(((p - a) ** 2).sum() for p, a in zip(agent.policy.parameters(), self.anchor))

    def after_step(self, agent, optimizer_step, agent_step):
        self.calls.append((optimizer_step, agent_step))
        self.count += 1
        if self.count % self.every == 0:
            self.anchor = [p.detach().clone() for p in agent.policy.parameters()]

    def state_dict(self):
        return {"count": self.count, "anchor": self.anchor}

    def load_state_dict(self, state):
        self.count, self.anchor = int(state["count"]), [a.clone() for a in state["anchor"]]


def gated_env():
    return VectorCostGatedReward(rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4, max_new_tokens=8), threshold=0.5)


def test_grpo_resumes_with_a_stateful_constraint_and_a_stateful_wrapper(world, tmp_path):
    env = gated_env()
    agent = GRPO(env, group_size=2, seed=1, constraints=[MovingAnchor(every=2)]).learn(
        3
    )  # odd: the anchor is mid-period
    assert agent.constraints[0].count == 3 and env.gate.lowest < float("inf")
    fresh = gated_env()
    assert_resumes(agent, env, tmp_path / "ckpt", load_env=fresh, constraints=[MovingAnchor(every=2)])


def test_a_resumed_wrapper_gets_its_floor_and_a_constraint_its_state(world, tmp_path):
    env = gated_env()
    agent = GRPO(env, group_size=2, constraints=[MovingAnchor()]).learn(3)
    path = agent.save(tmp_path / "ckpt")
    fresh = gated_env()
    loaded = GRPO.load(path, fresh, constraints=[MovingAnchor()])
    assert fresh.gate.lowest == env.gate.lowest
    assert loaded.constraints[0].count == 3 and loaded.optimizer_steps == 3
    for a, b in zip(agent.constraints[0].anchor, loaded.constraints[0].anchor):
        assert torch.equal(a, b)


def test_load_refuses_a_missing_constraint_or_wrapper(world, tmp_path):
    env = gated_env()
    path = GRPO(env, group_size=2, constraints=[MovingAnchor()]).learn(1).save(tmp_path / "ckpt")
    with pytest.raises(ValueError, match=r"saved with constraints \['MovingAnchor'\].*pass constraints="):
        GRPO.load(path, gated_env())
    with pytest.raises(ValueError, match=r"saved with stateful env wrappers \['VectorCostGatedReward'\]"):
        GRPO.load(
            path, rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4, max_new_tokens=8), constraints=[MovingAnchor()]
        )


def test_after_step_counts_optimizer_steps_and_agent_steps(world):
    env = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4, max_new_tokens=8)
    grpo = GRPO(env, group_size=2, constraints=[MovingAnchor()]).learn(2)
    assert grpo.constraints[0].calls == [(1, 1), (2, 2)]
    # PPO: ppo_epochs x (batch / mini_batch) optimizer steps per agent step, all told the same agent step
    ppo = PPO(env, ppo_epochs=2, mini_batch_size=2, constraints=[MovingAnchor()]).learn(2)
    assert ppo.constraints[0].calls == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2), (6, 2), (7, 2), (8, 2)]
    assert ppo.optimizer_steps == 8


def test_ppo_resumes_with_a_stateful_constraint(world, tmp_path):
    env = gated_env()
    agent = PPO(env, ppo_epochs=1, mini_batch_size=2, constraints=[MovingAnchor(every=3)]).learn(1)
    assert_resumes(agent, env, tmp_path / "ckpt", load_env=gated_env(), constraints=[MovingAnchor(every=3)])


def test_expert_guided_grpo_saves_and_loads(world, tmp_path):
    env = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4, max_new_tokens=8)
    schedule = AlphaSchedule(horizon=4, kind="cosine", alpha0=0.5)
    agent = ExpertGuidedGRPO(env, group_size=2, seed=2, schedule=schedule).learn(1)
    assert_resumes(agent, env, tmp_path / "ckpt")
    loaded = ExpertGuidedGRPO.load(tmp_path / "ckpt", env)
    assert loaded.schedule == schedule and type(loaded.expert).__name__ == "SFTExpert"


def test_expert_guided_grpo_asks_for_a_custom_expert_on_load(world, tmp_path):
    env = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4, max_new_tokens=8)

    class Echo:
        def __call__(self, prompts):
            return ["i can not help with that ." for _ in prompts]

    path = ExpertGuidedGRPO(env, group_size=2, expert=Echo()).learn(1).save(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="saved with expert Echo; pass it again"):
        ExpertGuidedGRPO.load(path, env)
    loaded = ExpertGuidedGRPO.load(path, env, expert=Echo())
    loaded.learn(1, callback=(rec := Recorder()))
    assert rec.reports[0].step == 2


class Kill(Callback):
    """A kill after step `at` (after the monitor and the checkpoint of that step ran in an earlier callback)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_step(self, agent, report):
        if report.step == self.at:
            raise KeyboardInterrupt


def test_a_killed_run_attack_resumes_from_its_checkpoint_with_the_same_rows(world, tmp_path):
    spec = AttackSpec(steps=4, num_envs=4, eval_every=2, env_kwargs={"world_preset": "tiny"})
    spec.agent_kwargs = {"group_size": 2}
    whole = run_attack(spec, tmp_path / "whole", progress=False, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        run_attack(spec, tmp_path / "cut", progress=False, callbacks=[Kill(3)], checkpoint_every=2)
    ckpt = tmp_path / "cut" / f"{spec.name}.ckpt"
    assert json.loads((ckpt / "agent.json").read_text())["num_steps"] == 2
    resumed = run_attack(spec, tmp_path / "cut", progress=False, checkpoint_every=2)
    keys = ("step", "harmfulness", "judge_harm", "kl", "train_reward", "eval_reward")
    assert [[r[k] for k in keys] for r in resumed["history"]] == [[r[k] for k in keys] for r in whole["history"]]
    assert [r["step"] for r in resumed["history"]] == [0, 2, 4] and not ckpt.exists()
    header = read_jsonl(tmp_path / "cut" / f"{spec.name}.jsonl")[0]
    assert header["total_steps"] == 4
    with pytest.raises(ValueError, match="checkpoint_every=3 must be a positive multiple of eval_every=2"):
        run_attack(spec, tmp_path / "bad", progress=False, checkpoint_every=3)
    sft = AttackSpec(agent="sft", steps=2, num_envs=4, eval_every=2, env_kwargs={"world_preset": "tiny"})
    with pytest.raises(ValueError, match="agent='sft' trains inside a TRL trainer"):
        run_attack(sft, tmp_path / "sft", progress=False, checkpoint_every=2)
