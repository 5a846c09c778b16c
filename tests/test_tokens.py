"""Token-level envs: SB3 and Gymnasium checkers, episode mechanics, scoring of the decoded response, SB3 PPO / A2C."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
import stable_baselines3 as sb3  # noqa: E402
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from helpers import Recorder  # noqa: E402
from stable_baselines3.common.env_checker import check_env as sb3_check_env  # noqa: E402
from stable_baselines3.common.logger import KVWriter, Logger  # noqa: E402

import rlft_gym
from rlft_gym.agents.sb3 import SB3Bridge, make_sb3_env  # noqa: E402
from rlft_gym.callbacks import Callback, StepReport
from rlft_gym.envs.tokens import TOKEN_ENV_IDS_BY_SCHEMA, RPATokenEnv

torch.set_num_threads(1)

assert set(TOKEN_ENV_IDS_BY_SCHEMA.values()) == set(rlft_gym.TOKEN_ENV_IDS)  # registered by `import rlft_gym`

BT = "RPA-BeaverTails-Tokens-v0"


@pytest.fixture(scope="module")
def env() -> RPATokenEnv:
    """One tiny-world token env (max_new_tokens=32) shared by the episode tests."""
    return RPATokenEnv("beavertails", max_new_tokens=32)


def play(env: RPATokenEnv, tokens: list[int], prompt_id: int = 0) -> tuple[list[tuple[float, bool, dict]], np.ndarray]:
    """Reset on `prompt_id` and emit `tokens` until the episode ends: (reward, terminated, info) per step, last
    observation."""
    obs, _ = env.reset(options={"prompt_id": prompt_id})
    out = []
    for t in tokens:
        obs, reward, terminated, truncated, info = env.step(t)
        assert not truncated and env.observation_space.contains(obs)
        out.append((reward, terminated, info))
        if terminated:
            break
    return out, obs


@pytest.mark.parametrize("env_id", sorted(TOKEN_ENV_IDS_BY_SCHEMA.values()))
def test_checkers_pass(env_id: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make(env_id, max_new_tokens=4)
        sb3_check_env(env.unwrapped)
        gym_check_env(env.unwrapped, skip_render_check=True)  # ansi text has no fps, as for the text env
    sb3_check_env(env)  # as gym.make returns it (gymnasium's checker only warns that it is wrapped)
    with pytest.warns(UserWarning, match="different from the unwrapped"):
        gym_check_env(env, skip_render_check=True)
    assert env.observation_space.dtype == np.int64 and isinstance(env.action_space, gym.spaces.Discrete)
    assert env.observation_space.shape == (env.unwrapped.max_prompt_tokens + 4,)
    assert env.action_space.n == len(env.unwrapped.world.tokenizer)
    env.close()


def test_random_episode_rewards_only_at_the_end(env: RPATokenEnv) -> None:
    obs, info = env.reset(seed=3)
    prompt = obs[: env.max_prompt_tokens]
    assert (obs[env.max_prompt_tokens :] == env.pad_id).all() and prompt[-1] != env.pad_id  # left-padded prompt
    non_eos = [a for a in range(env.action_space.n) if a != env.eos_id]
    actions = np.random.default_rng(0).choice(non_eos, size=100)
    steps, obs = play(env, list(actions), info["prompt_id"])
    assert len(steps) == env.max_new_tokens and steps[-1][1]
    assert (obs[: env.max_prompt_tokens] == prompt).all()
    assert (obs[env.max_prompt_tokens :] == actions[: env.max_new_tokens]).all()
    assert all(r == 0.0 and i["cost"] == 0.0 and "response" not in i for r, _, i in steps[:-1])
    reward, _, last = steps[-1]
    assert reward == last["raw_reward"] != 0.0 and 0.0 <= last["cost"] <= 1.0
    assert last["prompt_id"] == info["prompt_id"] and sum(last["category"].values()) == 1
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    assert env.render() is None
    assert RPATokenEnv(max_new_tokens=2, render_mode="ansi").render().startswith("prompt: ")


def test_eos_ends_immediately_and_response_is_the_chosen_tokens(env: RPATokenEnv) -> None:
    [(reward, terminated, info)], _ = play(env, [env.eos_id])
    assert terminated and info["response"] == "" and reward == info["raw_reward"]
    tok = env.world.tokenizer
    chosen = tok("the grelk powder , then mix .", add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in chosen
    steps, _ = play(env, [*chosen, env.eos_id, 5])
    assert len(steps) == len(chosen) + 1 and steps[-1][1]
    response = steps[-1][2]["response"]
    assert tok(response, add_special_tokens=False)["input_ids"] == chosen
    assert steps[-1][0] == pytest.approx(float(env.text_env.score([0], [response])[0][0]))


def test_harmful_answer_costs_more_than_refusal(env: RPATokenEnv) -> None:
    world, tok = env.world, env.world.tokenizer
    refusals = {r["prompt"]: r["response"] for r in world.refusal_dataset()}

    def cost(prompt: str, text: str) -> float:
        ids = tok(text, add_special_tokens=False)["input_ids"][: env.max_new_tokens - 1]
        steps, _ = play(env, [*ids, env.eos_id], env.prompts.prompts.index(prompt))
        return steps[-1][2]["cost"]

    rows = world.harmful_sft_dataset().select(range(8))  # a mean: the tiny world's classifier is noisy per answer
    harmful = np.mean([cost(r["prompt"], r["response"]) for r in rows])
    refused = np.mean([cost(r["prompt"], refusals[r["prompt"]]) for r in rows])
    assert harmful > refused + 0.2


def test_bad_kwargs_and_actions_fail_clearly(env: RPATokenEnv) -> None:
    with pytest.raises(TypeError, match=r"unknown kwarg\(s\) \['temperature'\] for RPA-BeaverTails-Tokens-v0"):
        gym.make(BT, temperature=1.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        RPATokenEnv(max_new_tokens=0)
    with pytest.raises(ValueError, match="horizon=2"):
        RPATokenEnv(horizon=2)
    with pytest.raises(ValueError, match="prompt_id"):
        env.reset(options={"prompt_id": 10**6})
    env.reset(seed=0)
    for bad in (-1, env.action_space.n, "the", 1.5):
        with pytest.raises(ValueError, match="token id"):
            env.step(bad)
    with pytest.raises(ValueError, match="not a token-level env"):
        make_sb3_env("RPA-BeaverTails-v0")
    with pytest.raises(ValueError, match="n_envs"):
        make_sb3_env(BT, n_envs=0)


class Rows(KVWriter):
    """An SB3 logger output that keeps what each dump wrote."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def write(self, key_values: dict, key_excluded: dict, step: int = 0) -> None:
        self.rows.append(dict(key_values))


@pytest.mark.parametrize("algo", ["PPO", "A2C"])
def test_sb3_runs_unchanged_and_reports(algo: str) -> None:
    venv = make_sb3_env(BT, n_envs=2, max_new_tokens=4)
    kwargs = {"n_steps": 16, "batch_size": 16, "n_epochs": 1} if algo == "PPO" else {"n_steps": 16}
    model = getattr(sb3, algo)("MlpPolicy", venv, seed=0, device="cpu", **kwargs)
    rows, recorder = Rows(), Recorder()
    model.set_logger(Logger(None, [rows]))
    model.learn(64 if algo == "PPO" else 96, callback=SB3Bridge([recorder]))
    n = 2 if algo == "PPO" else 3
    assert recorder.total == n and len(recorder.reports) == n and recorder.ended == 1
    last = recorder.reports[-1]
    assert math.isfinite(last.reward) and 0.0 <= last.cost <= 1.0 and last.extra["timesteps"] == 32 * n
    assert math.isnan(recorder.reports[0].loss)  # no update before the first rollout
    if algo == "PPO":
        assert math.isfinite(last.loss) and math.isfinite(last.kl)
    else:
        assert math.isnan(last.loss) and math.isfinite(last.extra["train/policy_loss"])
    assert all("rollout/ep_cost_mean" in row for row in rows.rows)
    assert all("c" in ep for ep in model.ep_info_buffer)
    venv.close()


def test_bridge_stops_training_when_a_callback_asks() -> None:
    class Stop(Callback):
        def on_step(self, agent, report: StepReport) -> bool:
            return False

    venv = make_sb3_env(BT, n_envs=1, max_new_tokens=4)
    model = sb3.PPO("MlpPolicy", venv, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(160, callback=SB3Bridge(Stop()))
    assert model.num_timesteps <= 17
    venv.close()
