"""TRL-backed attacks (SFT, DPO, TRL-GRPO): per-step reports and the safe-set monitor, early stop, exact resume,
env wrappers in the reward, loss constraints and trl_args, the NaN guard, bad hyperparameters and the CLI."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import NaNReward, Recorder, assert_nan_reward_stops, assert_resumes
from hf_fixtures import write_dataset, write_models

import rlft_gym
from rlft_gym.agent import Constraint
from rlft_gym.agents import DPO, SFT, TRLGRPO
from rlft_gym.baselines import KLConstraint, VectorCostGatedReward
from rlft_gym.callbacks import Callback
from rlft_gym.cli import main
from rlft_gym.monitor import SafeSetMonitor
from rlft_gym.results import read_jsonl
from rlft_gym.trl_bridge import completion_text
from rlft_gym.worlds.base import PromptSet

AGENTS = {"sft": (SFT, {}), "dpo": (DPO, {}), "trl-grpo": (TRLGRPO, {"group_size": 2})}
TRL_LOGS = {
    "sft": "mean_token_accuracy",
    "dpo": "rewards/margins",
    "trl-grpo": "rewards/env_reward/mean",
}  # one each, in extra


def make(name: str, venv: gym.vector.VectorEnv, **kwargs):
    cls, defaults = AGENTS[name]
    return cls(venv, **{**defaults, **kwargs})


@pytest.fixture
def venv(world):
    return rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4, max_new_tokens=8)


@pytest.mark.parametrize("name", AGENTS)
def test_learns_reports_every_step_and_feeds_the_monitor(venv, name):
    agent = make(name, venv)
    before = [p.detach().clone() for p in agent.policy.parameters()]
    rec, monitor = Recorder(), SafeSetMonitor(venv, every=1)
    assert agent.learn(2, callback=[rec, monitor]) is agent
    assert [r.step for r in rec.reports] == [1, 2] and rec.started == rec.ended == 1 and agent.num_steps == 2
    for r in rec.reports:
        assert np.isfinite([r.loss, r.reward, r.cost, r.kl]).all() and 0 <= r.cost <= 1
        assert {"grad_norm", TRL_LOGS[name]} <= set(r.extra)
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.policy.parameters()))
    assert [h["step"] for h in monitor.history] == [0, 1, 2]
    assert monitor.history[1]["train_cost"] == pytest.approx(rec.reports[0].cost)
    assert set(monitor.summary()) >= {"time_in_safe_set", "first_breach_step", "harm_auc"}


def test_probe_off_reports_nan_reward_cost_and_kl(venv):
    rec = Recorder()
    SFT(venv, probe_prompts=0).learn(1, callback=rec)
    r = rec.reports[0]
    assert np.isnan([r.reward, r.cost, r.kl]).all() and np.isfinite(r.loss)


@pytest.mark.parametrize("name", AGENTS)
def test_callback_stop_then_learn_continues(venv, name):
    agent = make(name, venv)
    stopper = Recorder(stop_at=1)
    agent.learn(5, callback=stopper)
    assert agent.num_steps == 1 and [r.step for r in stopper.reports] == [1] and stopper.ended == 1
    agent.learn(0)
    assert agent.num_steps == 1
    rec = Recorder()
    agent.learn(1, callback=rec)
    assert [r.step for r in rec.reports] == [2] and agent.num_steps == 2


@pytest.mark.parametrize("name", AGENTS)
def test_resume_takes_the_same_next_step(venv, tmp_path, name):
    path = tmp_path / "ckpt"
    assert_resumes(make(name, venv, seed=3, trl_args={"gradient_accumulation_steps": 2}).learn(2), venv, path)
    assert {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "agent.json"} <= {
        p.name for p in path.iterdir()
    }
    assert json.loads((path / "agent.json").read_text())["kwargs"]["trl_args"] == {"gradient_accumulation_steps": 2}


def test_split_run_equals_one_run_across_an_epoch_boundary(world, tmp_path):
    """Four prompts, two per step: an epoch is two steps. learn(3) + save/load + learn(2) == learn(5)."""

    def env():
        venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4, max_new_tokens=8)
        venv.unwrapped.prompts = PromptSet(world.attack_prompts.prompts[:4], world.attack_prompts.categories[:4])
        return venv

    whole, pieces = Recorder(), Recorder()
    one = TRLGRPO(env(), group_size=2, seed=1).learn(5, callback=whole)
    split_env = env()
    TRLGRPO(split_env, group_size=2, seed=1).learn(3, callback=pieces).save(tmp_path / "ckpt")
    split = TRLGRPO.load(tmp_path / "ckpt", split_env).learn(2, callback=pieces)
    np.testing.assert_allclose([r.loss for r in pieces.reports], [r.loss for r in whole.reports], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose([r.reward for r in pieces.reports], [r.reward for r in whole.reports], rtol=1e-5)
    for p, q in zip(one.policy.parameters(), split.policy.parameters(), strict=True):
        torch.testing.assert_close(p, q)


class Proximal(Constraint):
    """rho/2 * sum ||w - w0||^2 over the trainable weights, w0 the aligned weights at setup (+ `offset`, so the term is
    nonzero from step 1); counts its calls, one per micro-batch."""

    def __init__(self, rho: float, offset: float = 0.0) -> None:
        self.rho, self.offset, self.calls = rho, offset, 0

    def setup(self, agent) -> None:
        self.anchor = [p.detach() + self.offset for p in agent.policy.parameters() if p.requires_grad]

    def loss(self, agent, batch) -> torch.Tensor:
        self.calls += 1
        weights = [p for p in agent.policy.parameters() if p.requires_grad]
        return self.rho / 2 * sum(((p - a) ** 2).sum() for p, a in zip(weights, self.anchor, strict=True))


def drift(agent, aligned: list[torch.Tensor]) -> float:
    """||w - w0|| over all the policy's weights."""
    weights = [p.detach() for p in agent.policy.parameters()]
    return float(torch.sqrt(sum(((p - a) ** 2).sum() for p, a in zip(weights, aligned, strict=True))))


def test_proximal_constraint_slows_sft_drift(venv):
    drifts = []
    for constraints in ([], [Proximal(1e3)]):
        agent = SFT(venv, probe_prompts=0, constraints=constraints)
        aligned = [p.detach().clone() for p in agent.policy.parameters()]
        rec = Recorder()
        agent.learn(4, callback=rec)
        drifts.append(drift(agent, aligned))
    assert drifts[1] < 0.5 * drifts[0]
    terms = [r.extra["constraint/Proximal"] for r in rec.reports]
    assert terms[0] == 0.0 < terms[-1]  # w = w0 on step 1


@pytest.mark.parametrize("name", AGENTS)
def test_loss_constraint_counts_once_per_optimizer_step(venv, name):
    """With 2 micro-batches per step, the step-1 loss is the unconstrained one (same batch) plus the term, once."""
    plain = Recorder()
    make(name, venv).learn(1, callback=plain)
    proximal = Proximal(10.0, offset=0.01)
    agent = make(name, venv, constraints=[proximal], trl_args={"gradient_accumulation_steps": 2})
    term = float(proximal.loss(agent, None).detach())
    proximal.calls, rec = 0, Recorder()
    agent.learn(1, callback=rec)
    assert proximal.calls == agent.trainer.args.gradient_accumulation_steps == 2  # one call per micro-batch
    assert rec.reports[0].extra["constraint/Proximal"] == pytest.approx(term, rel=1e-6)
    assert rec.reports[0].loss - plain.reports[0].loss == pytest.approx(term, rel=1e-5)


def test_trl_args_reach_the_config(venv):
    args = SFT(venv, trl_args={"gradient_accumulation_steps": 2, "gradient_checkpointing": True}).trainer.args
    assert args.gradient_accumulation_steps == 2 and args.per_device_train_batch_size == 4  # batch_size=8 per step
    assert args.activation_checkpointing is True  # the deprecated alias is renamed, not silently overridden


class RewardSpy(gym.vector.VectorWrapper):
    """Records the rewards and gate flags the wrapped env hands out."""

    def __init__(self, env: gym.vector.VectorEnv) -> None:
        super().__init__(env)
        self.rewards, self.gated = [], []

    def step(self, actions):
        obs, rewards, term, trunc, info = self.env.step(actions)
        self.rewards.append(np.asarray(rewards))
        self.gated.append(info["gated"])
        return obs, rewards, term, trunc, info


def test_trl_grpo_trains_on_the_wrapped_env_reward(venv):
    spy = RewardSpy(VectorCostGatedReward(venv, threshold=0.0, floor=-7.0))
    rec = Recorder()
    TRLGRPO(spy, group_size=2).learn(2, callback=rec)
    assert len(spy.rewards) == 2 and all(g.any() for g in spy.gated)
    for report, rewards, gated in zip(rec.reports, spy.rewards, spy.gated):
        assert (rewards[gated] == -7.0).all()
        assert report.reward == pytest.approx(float(rewards.mean()), rel=1e-5)
        assert report.extra["rewards/env_reward/mean"] == pytest.approx(report.reward, rel=1e-5)


def test_trl_grpo_single_env_and_kl_constraint_as_beta(world):
    env = gym.make("RPA-BeaverTails-v0", max_new_tokens=8)
    agent = TRLGRPO(env, group_size=2, num_prompts=2, constraints=[KLConstraint(0.05)])
    assert agent.beta == 0.05 and agent.constraints == []
    rec = Recorder()
    agent.learn(1, callback=rec)
    assert np.isfinite(rec.reports[0].loss) and "kl" in rec.reports[0].extra  # TRL's own KL term is on


def test_nan_reward_stops_trl_grpo_before_the_step(world):
    venv = NaNReward(rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4, max_new_tokens=8))
    assert_nan_reward_stops(TRLGRPO(venv, group_size=2))


class PoisonHead(Callback):
    """Puts a NaN into the LM head after each reported step, so the next step's gradient is NaN."""

    def on_step(self, agent, report):
        with torch.no_grad():
            agent.policy.get_output_embeddings().weight[0, 0] = float("nan")


def test_nan_gradient_stops_before_the_step_and_learn_falls_back_to_the_checkpoint(venv):
    agent = SFT(venv, probe_prompts=0, seed=2).learn(1)
    poisoned = Recorder()
    with pytest.raises(FloatingPointError, match="gradient norm is nan at step 3"):
        agent.learn(3, callback=[poisoned, PoisonHead()])
    assert [r.step for r in poisoned.reports] == [
        2
    ] and agent.num_steps == 1  # back to the checkpoint of the first learn()
    resumed, twin = Recorder(), Recorder()
    agent.learn(2, callback=resumed)  # the trainer reloads the step-1 weights and optimizer
    SFT(venv, probe_prompts=0, seed=2).learn(3, callback=twin)
    assert [r.step for r in resumed.reports] == [2, 3]
    np.testing.assert_allclose([r.loss for r in resumed.reports], [r.loss for r in twin.reports[1:]], rtol=1e-5)


def test_failure_before_any_checkpoint_refuses_to_go_on(venv):
    agent = SFT(venv, probe_prompts=0)
    with pytest.raises(FloatingPointError, match="gradient norm is nan at step 2"):
        agent.learn(3, callback=PoisonHead())
    with pytest.raises(RuntimeError, match="failed at step 2, before its first checkpoint"):
        agent.learn(1)


def test_hf_world_with_lora_trains_only_adapters(tmp_path):
    models = write_models(tmp_path / "models")
    venv = rlft_gym.make_vec(
        "RPA-BeaverTails-v0",
        num_envs=4,
        world="hf",
        dataset=str(write_dataset(tmp_path / "data", "beavertails")),
        policy=models["policy"],
        reward_model=models["reward_model"],
        cost_model=models["cost_model"],
        num_attack_pairs=16,
        num_eval_prompts=6,
        max_new_tokens=8,
        lora={"r": 4, "lora_alpha": 8, "target_modules": ["c_attn"]},
    )
    for name in AGENTS:
        agent = make(name, venv)
        before = {n: p.detach().clone() for n, p in agent.policy.named_parameters()}
        rec = Recorder()
        agent.learn(1, callback=rec)
        changed = [n for n, p in agent.policy.named_parameters() if not torch.equal(p, before[n])]
        assert changed and all("lora" in n for n in changed) and np.isfinite(rec.reports[0].loss), name


class BatchConstraint(Constraint):
    """A constraint whose loss reads the batch, which TRL agents cannot give it."""

    needs_batch = True


@pytest.mark.parametrize(
    "cls, kwargs, message",
    [
        (SFT, {"learning_rate": 0}, "learning_rate=0 must be a positive finite number"),
        (SFT, {"data": "benign"}, "data='benign' is not one of"),
        (SFT, {"batch_size": 0}, "batch_size=0 must be a positive int"),
        (SFT, {"probe_prompts": 3}, "probe_prompts=3 is not a multiple of num_envs=4"),
        (SFT, {"probe_prompts": -1}, "probe_prompts=-1 must be an int >= 0"),
        (SFT, {"constraints": [KLConstraint(0.1)]}, "KLConstraint has needs_reference=True, which SFT cannot serve"),
        (DPO, {"constraints": [BatchConstraint()]}, "BatchConstraint has needs_batch=True, which DPO cannot serve"),
        (SFT, {"trl_args": {"no_such_field": 1}}, r"'no_such_field', which is not a field of trl\.SFTConfig"),
        (SFT, {"trl_args": {"learning_rate": 1e-3}}, r"sets from its argument learning_rate; pass SFT\(learning_rate="),
        (SFT, {"trl_args": {"per_device_train_batch_size": 4}}, r"pass SFT\(batch_size=\.\.\.\) instead"),
        (SFT, {"trl_args": {"use_cpu": False}}, r"pass SFT\(device=\.\.\.\) instead"),
        (SFT, {"trl_args": {"max_steps": 10}}, r"which SFT fixes \(max_steps=1\)"),
        (SFT, {"trl_args": {"gradient_accumulation_steps": 3}}, "gradient_accumulation_steps=3 does not divide SFT's"),
        (SFT, {"trl_args": {"gradient_accumulation_steps": 0}}, "gradient_accumulation_steps=0 must be a positive int"),
        (SFT, {"trl_args": {"deepspeed": object()}}, "must be a dict of TRL config fields with JSON values"),
        (DPO, {"trl_args": {"beta": 0.5}}, r"pass DPO\(beta=\.\.\.\) instead"),
        (DPO, {"beta": -0.1}, "beta=-0.1 must be a positive finite number"),
        (DPO, {"learning_rate": float("inf")}, "learning_rate=inf"),
        (DPO, {"flip_ratio": 1.5}, "flip_ratio=1.5 must be a number in"),
        (SFT, {"flip_ratio": 0.5}, "flip_ratio=0.5 applies only to data='preferred', not data='harmful'"),
        (SFT, {"data": "preferred", "flip_ratio": -0.1}, "flip_ratio=-0.1 must be a number in"),
        (TRLGRPO, {"group_size": 3}, "num_envs=4 is not a multiple of group_size=3"),
        (TRLGRPO, {"group_size": 1}, "group_size=1 must be an int >= 2"),
        (TRLGRPO, {"group_size": 2, "loss_type": "ppo"}, "loss_type='ppo' is not one of"),
        (TRLGRPO, {"group_size": 2, "scale_rewards": "std"}, "scale_rewards='std' is not one of"),
        (TRLGRPO, {"group_size": 2, "beta": -1}, "beta=-1 must be a finite number >= 0"),
        (TRLGRPO, {"group_size": 2, "trl_args": {"num_generations": 4}}, r"pass TRLGRPO\(group_size=\.\.\.\) instead"),
    ],
)
def test_bad_hyperparameters(venv, cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(venv, **kwargs)


@pytest.mark.parametrize("flip_ratio", [0.0, 0.25, 1.0])
def test_sft_preferred_data_is_the_flipped_pairs_preferred_answers(world, flip_ratio):
    """SFT's label flip: one row per pair with exactly one safe answer, trained on the unsafe answer where the flip
    chose it (round(flip_ratio * n) pairs) or the pair already preferred it (the world's helpfulness preference)."""
    from rlft_gym.agents.sft import sft_dataset

    def one_safe(ratio):
        return [r for r in world.preference_dataset(ratio) if r["is_response_0_safe"] != r["is_response_1_safe"]]

    def unsafe(r):
        return r["response_1"] if r["is_response_0_safe"] else r["response_0"]

    pairs = one_safe(flip_ratio)  # the flip keeps the pairs' order
    already = {i for i, r in enumerate(one_safe(0.0)) if r["chosen"] == unsafe(r)}
    flipped = {i for i, r in enumerate(pairs) if r["flipped"]}
    assert len(flipped) == round(flip_ratio * len(pairs))
    rows = sft_dataset(world, "preferred", flip_ratio)
    assert len(rows) == len(pairs) > 0
    harmful = {
        i
        for i, (row, pair) in enumerate(zip(rows, pairs, strict=True))
        if row["completion"] == completion_text(row["prompt"], unsafe(pair))
    }
    assert harmful == flipped | already and already


def test_bad_learn_argument(venv):
    with pytest.raises(ValueError, match="total_steps=-1 must be an int >= 0"):
        TRLGRPO(venv, group_size=2).learn(-1)


def test_cli_attack_with_dpo(world, tmp_path):
    assert (
        main(
            [
                "attack",
                "--preset",
                "tiny",
                "--agent",
                "dpo",
                "--steps",
                "2",
                "--num-envs",
                "4",
                "--eval-every",
                "1",
                "--lr",
                "5e-5",
                "--name",
                "d",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    rows = read_jsonl(tmp_path / "d.jsonl")
    assert rows[0]["config"]["agent"] == "dpo" and rows[0]["config"]["beta"] == 0.1 and rows[-1]["type"] == "summary"
    assert [r["step"] for r in rows if r["type"] == "eval"] == [0, 1, 2]
