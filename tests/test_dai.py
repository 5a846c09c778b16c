"""DAI: alpha(t) schedules, the SB3 off-policy wrapper (executed = stored = interpolated action), expert-guided GRPO."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import Recorder
from stable_baselines3 import DQN, PPO, SAC, TD3
from stable_baselines3.common.logger import KVWriter, Logger

import rlft_gym
from rlft_gym import generation
from rlft_gym.agents import GRPO, AlphaSchedule, ExpertGuidedGRPO, SFTExpert, dai

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import dai_check  # noqa: E402

torch.set_num_threads(1)


# --- schedules --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, quarter, just_before_end",
    [
        ("linear", 0.75, 1 / 400),
        ("cosine", (1 + math.cos(math.pi / 4)) / 2, (1 + math.cos(math.pi * 399 / 400)) / 2),
        ("step", 0.75, 0.25),
    ],
)
def test_schedule_values(kind, quarter, just_before_end):
    s = AlphaSchedule(400, kind)
    assert s(0) == 1.0 and s(200) == pytest.approx(0.5) and s(100) == pytest.approx(quarter)
    assert s(399) == pytest.approx(just_before_end) and s(400) == 0.0 and s(10**6) == 0.0
    values = [s(t) for t in range(0, 401)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # never increases
    assert AlphaSchedule(400, kind, alpha0=0.4)(100) == pytest.approx(0.4 * quarter)


def test_step_schedule_is_piecewise_constant():
    s = AlphaSchedule(100, "step", num_drops=4)
    assert [s(t) for t in (0, 24, 25, 49, 50, 74, 75, 99, 100)] == [1.0, 1.0, 0.75, 0.75, 0.5, 0.5, 0.25, 0.25, 0.0]
    assert AlphaSchedule(100, "step", num_drops=1)(99) == 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"horizon": 10, "kind": "exp"}, r"kind='exp' is not one of \('linear', 'cosine', 'step'\)"),
        ({"horizon": 0}, "horizon=0 must be a positive int"),
        ({"horizon": -5}, "horizon=-5 must be a positive int"),
        ({"horizon": 2.5}, "horizon=2.5 must be a positive int"),
        ({"horizon": 10, "alpha0": 1.5}, r"alpha0=1.5 must be a number in \[0, 1\]"),
        ({"horizon": 10, "alpha0": -0.1}, r"alpha0=-0.1 must be a number in \[0, 1\]"),
        ({"horizon": 10, "alpha0": float("nan")}, r"alpha0=nan must be a number in \[0, 1\]"),
        ({"horizon": 10, "kind": "step", "num_drops": 0}, "num_drops=0 must be a positive int"),
    ],
)
def test_schedule_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AlphaSchedule(**kwargs)


def test_schedule_rejects_a_negative_step():
    with pytest.raises(ValueError, match="t=-1 must be an int >= 0"):
        AlphaSchedule(10)(-1)


# --- SB3 wrapper ------------------------------------------------------------------------------------------------------


def controller(obs: np.ndarray) -> np.ndarray:
    """A state-dependent Pendulum torque (a PD law on the angle), batched over envs: enough to tell actions apart."""
    angle = np.arctan2(obs[:, 1], obs[:, 0])
    return np.clip(-(3.0 * angle + 0.5 * obs[:, 2]), -2.0, 2.0)[:, None]


class ActionLog(gym.Wrapper):
    """Records the observation each action was taken in and the action the env executed."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.obs, self.actions, self._last = [], [], None

    def reset(self, **kwargs):
        self._last, info = self.env.reset(**kwargs)
        return self._last, info

    def step(self, action):
        self.obs.append(self._last)
        self.actions.append(np.array(action))
        self._last, *rest = self.env.step(action)
        return (self._last, *rest)


class Rows(KVWriter):
    """An SB3 logger output that keeps what each dump wrote (and writes nothing to disk)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def write(self, key_values: dict, key_excluded: dict, step: int = 0) -> None:
        self.rows.append(dict(key_values))


def model(cls, env, rows: Rows | None = None, **kwargs):
    """A small, quiet SB3 model on CPU whose logger writes nothing to disk."""
    m = cls("MlpPolicy", env, seed=0, device="cpu", policy_kwargs={"net_arch": [16, 16]}, **kwargs)
    m.set_logger(Logger(None, [rows] if rows else []))
    return m


def stored(m, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n (observation, action) pairs of the replay buffer (one env)."""
    return m.replay_buffer.observations[:n, 0], m.replay_buffer.actions[:n, 0]


@pytest.mark.parametrize("algo", [TD3, SAC])
def test_alpha_one_executes_and_stores_the_expert_action(algo):
    env = ActionLog(gym.make("Pendulum-v1"))
    m = model(dai(algo), env, expert=controller, schedule=lambda t: 1.0, learning_starts=100)
    m.learn(300)
    obs, actions = stored(m, 300)
    np.testing.assert_allclose(actions, m.policy.scale_action(controller(obs)), atol=1e-6)
    np.testing.assert_allclose(np.array(env.actions), controller(np.array(env.obs)), atol=1e-5)
    assert m.alpha == 1.0 and m.logger.name_to_value["dai/alpha"] == 1.0


def test_alpha_zero_is_the_base_algorithm():
    def never(obs):
        raise AssertionError("the expert is queried at alpha = 0")

    # one model after the other: SB3 seeds the global torch / numpy generators when a model is built
    plain = model(TD3, gym.make("Pendulum-v1"), learning_starts=50).learn(250)
    zero = AlphaSchedule(1, alpha0=0.0)
    guided = model(dai(TD3), gym.make("Pendulum-v1"), expert=never, schedule=zero, learning_starts=50).learn(250)
    for a, b in zip(stored(plain, 250), stored(guided, 250)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(plain.policy.parameters(), guided.policy.parameters()):
        assert torch.equal(a, b)


def test_box_actions_are_the_interpolation():
    # during warm-up the learner's actions are random draws that do not depend on the states, so a plain TD3 with the
    # same seed shows which learner action DAI blended with at every step
    plain = model(TD3, gym.make("Pendulum-v1"), learning_starts=10_000).learn(200)
    guided = model(
        dai(TD3), gym.make("Pendulum-v1"), expert=controller, schedule=lambda t: 0.3, learning_starts=10_000
    ).learn(200)
    _, learner = stored(plain, 200)
    obs, actions = stored(guided, 200)
    expected = np.clip(0.3 * guided.policy.scale_action(controller(obs)) + 0.7 * learner, -1, 1)
    np.testing.assert_allclose(actions, expected, atol=1e-6)
    assert np.abs(actions - learner).max() > 0.1


def test_discrete_actions_are_a_stochastic_mixture():
    # CartPole through DQN (SB3's off-policy route to discrete actions); in warm-up the learner acts uniformly at
    # random, so an expert that always pushes right gives P(right) = alpha + (1 - alpha) / 2
    def right(obs):
        return np.ones(len(obs), dtype=np.int64)

    for alpha, expected in ((1.0, 1.0), (0.5, 0.75), (0.0, 0.5)):
        m = model(
            dai(DQN), gym.make("CartPole-v1"), expert=right, schedule=lambda t, a=alpha: a, learning_starts=10_000
        )
        m.learn(400)
        assert stored(m, 400)[1].mean() == pytest.approx(expected, abs=0.08)


def test_alpha_is_logged_as_it_decays():
    rows = Rows()
    m = model(
        dai(TD3), gym.make("Pendulum-v1"), rows, expert=controller, schedule=AlphaSchedule(400), learning_starts=100
    )
    m.learn(400, log_interval=1)  # one dump per 200-step episode
    assert [r["dai/alpha"] for r in rows.rows] == pytest.approx([1 - 199 / 400, 1 - 399 / 400])


def test_bad_inputs_fail_clearly():
    env = gym.make("Pendulum-v1")
    with pytest.raises(TypeError, match="PPO is not an SB3 off-policy algorithm"):
        dai(PPO)
    with pytest.raises(TypeError, match="'TD3' is not an SB3 off-policy algorithm"):
        dai("TD3")
    with pytest.raises(TypeError, match="expert=3 is not callable"):
        dai(TD3)("MlpPolicy", env, expert=3, schedule=AlphaSchedule(10))
    with pytest.raises(TypeError, match="schedule=0.5 is not callable"):
        dai(TD3)("MlpPolicy", env, expert=controller, schedule=0.5)
    with pytest.raises(ValueError, match=r"returned alpha=1.5 at t=0; alpha must be a number in \[0, 1\]"):
        dai(TD3)("MlpPolicy", env, expert=controller, schedule=lambda t: 1.5)
    m = model(dai(TD3), env, expert=lambda obs: np.zeros((len(obs), 3)), schedule=AlphaSchedule(10), learning_starts=5)
    with pytest.raises(ValueError, match=r"expert returned actions of shape \(1, 3\); expected \(1, 1\)"):
        m.learn(10)
    m = model(dai(DQN), gym.make("CartPole-v1"), expert=lambda obs: np.full(len(obs), 7), schedule=AlphaSchedule(10))
    with pytest.raises(ValueError, match="outside the action space Discrete"):
        m.learn(10)


# --- expert-guided GRPO -----------------------------------------------------------------------------------------------


class ResponseLog(gym.vector.VectorWrapper):
    """Records the prompts served and the responses stepped, batch by batch."""

    def __init__(self, env) -> None:
        super().__init__(env)
        self.batches: list[tuple[list[str], list[str]]] = []

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._prompts = list(obs)
        return obs, info

    def step(self, actions):
        self.batches.append((self._prompts, list(actions)))
        return self.env.step(actions)


def fitted(world, answer: str, max_new_tokens: int) -> str:
    """The expert answer as the env receives it: tokenised, cut to max_new_tokens, decoded."""
    ids = world.tokenizer(answer, add_special_tokens=False)["input_ids"][:max_new_tokens]
    return world.tokenizer.decode(ids, skip_special_tokens=True)


def test_expert_guided_grpo_learns_and_reports(world):
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=8, max_new_tokens=16)
    agent = ExpertGuidedGRPO(venv, group_size=4, schedule=AlphaSchedule(4, alpha0=0.5), seed=0)
    before = [p.detach().clone() for p in agent.policy.parameters()]
    rec = Recorder()
    assert agent.learn(3, callback=rec) is agent
    assert [r.step for r in rec.reports] == [1, 2, 3] and rec.ended == 1
    assert [r.extra["alpha"] for r in rec.reports] == pytest.approx([0.5, 0.375, 0.25])
    assert rec.reports[0].extra["expert_fraction"] == 0.5 and rec.reports[1].extra["expert_fraction"] in (0.25, 0.5)
    assert rec.reports[2].extra["expert_fraction"] == 0.25
    for r in rec.reports:
        assert np.isfinite([r.reward, r.cost, r.loss, r.kl, r.extra["policy_reward"], r.extra["policy_cost"]]).all()
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.policy.parameters()))
    assert (
        agent.hyperparameters()["expert"] == "SFTExpert"
        and "AlphaSchedule(horizon=4" in agent.hyperparameters()["schedule"]
    )


def test_alpha_one_every_group_is_the_expert(world):
    venv = ResponseLog(rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=8, max_new_tokens=12))
    answers = {r["prompt"]: r["response"] for r in world.harmful_sft_dataset()}
    rec = Recorder()
    ExpertGuidedGRPO(venv, group_size=4, schedule=lambda t: 1.0).learn(2, callback=rec)
    assert len(venv.batches) == 2
    for prompts, responses in venv.batches:
        assert responses == [fitted(world, answers[p], 12) for p in prompts]
    # identical answers in a group have identical rewards: zero advantage, so the loss is exactly 0
    assert all(
        r.extra["expert_fraction"] == 1.0 and r.loss == 0.0 and math.isnan(r.extra["policy_cost"]) for r in rec.reports
    )


def test_mixed_groups_hold_policy_samples_then_expert_answers(world):
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=8, max_new_tokens=16)
    agent = ExpertGuidedGRPO(venv, group_size=4, schedule=lambda t: 0.5)
    agent.num_expert = 2
    prompts = [p for p in agent.prompts.prompts[:2] for _ in range(4)]
    rollout = agent.respond(prompts)
    expert = SFTExpert(world)(prompts)
    for row in (2, 3, 6, 7):
        assert rollout.texts[row] == fitted(world, expert[row], 16)
    # the merged rollout is a valid batch: each expert row's log-probs are those of the expert answer on its own
    alone = ExpertGuidedGRPO(venv, group_size=4, schedule=lambda t: 1.0)
    alone.num_expert = 4
    solo = alone.respond(prompts)
    with torch.no_grad():
        mixed_lp = generation.response_logprobs(agent.policy, rollout).sum(1)
        solo_lp = generation.response_logprobs(agent.policy, solo).sum(1)
    torch.testing.assert_close(mixed_lp[[2, 3, 6, 7]], solo_lp[[2, 3, 6, 7]], rtol=1e-5, atol=1e-4)
    tok = world.tokenizer
    for row in range(8):  # a response row is live tokens then padding; a response shorter than the cap ends in EOS
        live = int(rollout.response_mask[row].sum())
        assert rollout.response_mask[row, :live].all() and not rollout.response_mask[row, live:].any()
        assert live == 16 or rollout.response_ids[row, live - 1] == tok.eos_token_id


def test_alpha_zero_is_grpo(world):
    def never(prompts):
        raise AssertionError("the expert is asked at alpha = 0")

    def first(agent_cls, **kwargs):
        rec = Recorder()
        venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=8, max_new_tokens=8)
        agent_cls(venv, group_size=4, seed=3, **kwargs).learn(1, callback=rec)
        return rec.reports[0]

    a, b = first(GRPO), first(ExpertGuidedGRPO, expert=never, schedule=AlphaSchedule(10, alpha0=0.0))
    assert a.reward == b.reward and a.loss == pytest.approx(b.loss) and b.extra["expert_fraction"] == 0.0


def test_expert_guided_grpo_bad_inputs(world):
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=8, max_new_tokens=8)
    with pytest.raises(TypeError, match="expert='answers' is not callable"):
        ExpertGuidedGRPO(venv, group_size=4, expert="answers")
    with pytest.raises(TypeError, match="schedule=1 is not callable"):
        ExpertGuidedGRPO(venv, group_size=4, schedule=1)
    with pytest.raises(ValueError, match="returned alpha=2 at t=0"):
        ExpertGuidedGRPO(venv, group_size=4, schedule=lambda t: 2)
    with pytest.raises(ValueError, match="group_size=1 must be an int >= 2"):
        ExpertGuidedGRPO(venv, group_size=1)
    agent = ExpertGuidedGRPO(venv, group_size=4, expert=lambda prompts: ["sure ."], schedule=lambda t: 0.5)
    with pytest.raises(ValueError, match="the expert must return a list of 4 strings"):
        agent.learn(1)
    with pytest.raises(ValueError, match="no answer for prompt 'what is a pelmet \\?'"):
        SFTExpert(world)(["what is a pelmet ?"])


# --- scripts/dai_check.py: the measurement's metrics, evaluation and resume -------------------------------------------


def test_stage_metrics_on_a_hand_computed_run():
    curve = [{"step": s, "return": r} for s, r in ((0, -10.0), (1000, 20.0), (2000, 50.0), (3000, 80.0))]
    # episodes end at steps 400, 1000, 1900, 2600, 3000
    train, lengths = [1.0, 2.0, 4.0, 8.0, 16.0], [400, 600, 900, 700, 400]
    m = dai_check.stage_metrics(curve, train, lengths, early_steps=1000, steps=3000)
    assert m == {
        "early_train_return": 1.5,  # the episodes ending at 400 and 1000
        "final_train_return": 12.0,  # ending after 3000 - 1000: 2600 and 3000
        "early_eval_return": 5.0,  # checkpoints 0 and 1000
        "final_eval_return": 80.0,
    }
    assert math.isnan(dai_check.stage_metrics(curve, [1.0], [5000], 1000, 3000)["early_train_return"])


def test_gain_is_relative_to_the_plain_magnitude():
    assert dai_check.gain(100.0, 260.0) == pytest.approx(160.0)
    assert dai_check.gain(-200.0, -100.0) == pytest.approx(50.0)  # closer to 0 from below is a gain
    assert math.isnan(dai_check.gain(0.0, 5.0))


def test_lockstep_evaluation_is_the_sequential_one():
    # an elementwise expert gives the same actions batched or one by one, so the returns must be identical
    assert dai_check.episode_returns(dai_check.swing_up, 3, lockstep=True) == dai_check.episode_returns(
        dai_check.swing_up, 3
    )


def mujoco_args(tmp_path, **kwargs) -> argparse.Namespace:
    defaults = {"steps": 100, "horizon": 50, "early_steps": 50, "eval_every": 50, "eval_episodes": 1}
    return argparse.Namespace(out=tmp_path / "runs.json", expert_steps=120, **{**defaults, **kwargs})


def test_resume_keeps_finished_runs_and_refuses_other_settings(tmp_path):
    args = mujoco_args(tmp_path)
    assert dai_check.resume(args) == {"experts": {}, "runs": []}
    stored = {"config": {k: getattr(args, k) for k in dai_check.RESUME_KEYS}, "experts": {}, "runs": [{"seed": 0}]}
    args.out.write_text(json.dumps(stored))
    assert dai_check.resume(args)["runs"] == [{"seed": 0}]
    with pytest.raises(SystemExit, match="holds runs with"):
        dai_check.resume(mujoco_args(tmp_path, steps=200))


def test_mujoco_expert_is_trained_once_then_loaded(tmp_path):
    pytest.importorskip("mujoco")
    args = mujoco_args(tmp_path)
    trained, info = dai_check.mujoco_expert("Hopper-v5", args)  # 120 warm-up steps: no gradient step, seconds
    assert Path(info["path"]).name == "expert_Hopper-v5_sac120.zip" and Path(info["path"]).exists()
    assert info["train_wall_s"] > 0 and len(info["eval_returns"]) == 1
    loaded, again = dai_check.mujoco_expert("Hopper-v5", args)
    assert again["train_wall_s"] == 0.0 and again["eval_returns"] == info["eval_returns"]
    obs = np.random.default_rng(0).normal(size=(4, 11)).astype(np.float32)
    np.testing.assert_array_equal(
        trained.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )
