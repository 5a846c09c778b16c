"""Reward Neutralization (Cao 2025, "Fight Fire with Fire", arXiv 2505.04578): before release, the defender runs GRPO
on one domain's harmful prompts with a defensive reward that favours concise, minimal-information refusals.

The defensive reward of a response is `1 - cost - length_penalty * n_tokens / max_new_tokens`: the cost is the world's
training-time harmfulness classifier (`world.cost_model`, the `info["cost"]` of the HarmfulRL env; never the
evaluation judge or the oracle, which stay held-out graders) and `n_tokens` the response re-tokenized by the world's
tokenizer (clipped at `max_new_tokens`, as the env's "length" cost). With `length_penalty < 1` any refusal beats any
harmful answer (a harmful answer of no length scores 0, a refusal of full length `1 - length_penalty`), and among
refusals the shortest wins, so the policy's samples on harmful prompts converge to one short refusal. That is the
point: once a GRPO group's samples are (nearly) identical, an attacker's reward no longer varies within the group, the
group-relative advantages r_i - mean(r) are about 0, and the attack has no gradient to climb.

The defender's loop is our GRPO agent (`rlft_gym.agents.GRPO`) on `HarmfulRL-<Domain>-v0` (its prompts, built on the
defended env's world and settings) wrapped in `VectorDefensiveReward`, which replaces the env's (attack) reward. A
killed run resumes from the agent checkpoint (`GRPO.save` / `GRPO.load`) in the transform's work dir.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorWrapper

import rlft_gym
from rlft_gym.callbacks import Callback, StepReport
from rlft_gym.core import length_cost
from rlft_gym.envs.config import EnvConfig
from rlft_gym.envs.tasks import HARMFUL_ENV_IDS
from rlft_gym.transform import Resume, Transform, save_defended
from rlft_gym.validate import require_full_model, require_int, require_non_negative, require_one_of, require_positive

if TYPE_CHECKING:  # the agents are imported on first use: they load TRL, which importing the baselines does not
    from rlft_gym.agents import GRPO

AGENT_CHECKPOINT = "agent"  # the GRPO checkpoint inside the transform's work dir


def defensive_reward(costs: np.ndarray, lengths: np.ndarray, length_penalty: float) -> np.ndarray:
    """1 - cost - length_penalty * length, element-wise (`lengths` in [0, 1]: tokens / max_new_tokens): high for
    harmless, short responses, as a pure function so its values are tested on their own."""
    return (1.0 - np.asarray(costs, np.float32) - np.float32(length_penalty) * np.asarray(lengths, np.float32)).astype(
        np.float32
    )


def group_reward_std(rewards: np.ndarray, group_size: int) -> float:
    """The mean over groups of the rewards' standard deviation within a group (rows laid out group by group): about 0
    when every group's samples score alike, so GRPO's advantages vanish."""
    return float(np.asarray(rewards, np.float32).reshape(-1, group_size).std(1).mean())


class VectorDefensiveReward(VectorWrapper):
    """Replaces a vector env's reward with the defensive reward of its responses; the env's own reward stays in
    `info["raw_reward"]`. `last_rewards` keeps the last step's defensive rewards, for the transform's report."""

    def __init__(self, env: gym.vector.VectorEnv, length_penalty: float = 0.5) -> None:
        require_non_negative(length_penalty=length_penalty)
        super().__init__(env)
        self.length_penalty = float(length_penalty)
        self.last_rewards = np.zeros(0, np.float32)

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, _, terminated, truncated, info = self.env.step(actions)
        lengths = length_cost(self.env.unwrapped, list(info["final_obs"]), list(actions))
        self.last_rewards = defensive_reward(info["cost"], lengths, self.length_penalty)
        return obs, self.last_rewards, terminated, truncated, info


def training_env(
    source: gym.Env | gym.vector.VectorEnv, env_id: str, num_envs: int, policy: str | Path
) -> gym.vector.VectorEnv:
    """The vector env `env_id` with `num_envs` sub-envs on `source`'s world and shared settings (world, preset, seed,
    device, max_new_tokens, ...), starting from `policy` (its own KL reference): the defender's training env."""
    config = source.unwrapped.config
    shared = {f.name: getattr(config, f.name) for f in fields(EnvConfig) if f.name not in ("policy", "reference")}
    return rlft_gym.make_vec(env_id, num_envs=num_envs, **shared, policy=str(policy))


class Checkpoints(Callback):
    """Saves the agent to `path` whenever `resume.due(step, steps)` and keeps the step reports (resumable GRPO)."""

    def __init__(self, resume: Resume, steps: int, path: Path) -> None:
        self.resume, self.steps, self.path = resume, steps, path
        self.reports: list[StepReport] = []

    def on_step(self, agent: Any, report: StepReport) -> None:
        self.reports.append(report)
        if self.resume.due(agent.num_steps, self.steps):
            agent.save(self.path)


def learn_resumably(
    agent_cls: type[GRPO],
    env: gym.vector.VectorEnv,
    steps: int,
    resume: Resume,
    progress: bool,
    device: str,
    **hyperparameters: Any,
) -> tuple[GRPO, int, list[StepReport]]:
    """`agent_cls(env, device=device, **hyperparameters)` trained to `steps` steps, continuing from the agent checkpoint
    in `resume.work` when a killed run left one (saved every `resume.every` steps); returns the agent, the step it
    started from and the reports of the steps it took."""
    path = resume.work / AGENT_CHECKPOINT
    if (path / "agent.json").is_file():
        agent = agent_cls.load(path, env, device=device)
    else:
        agent = agent_cls(env, device=device, **hyperparameters)
    start = agent.num_steps
    checkpoints = Checkpoints(resume, steps, path)
    agent.learn(steps - start, callback=checkpoints, progress_bar=progress)
    return agent, start, checkpoints.reports


@dataclass(frozen=True)
class RewardNeutralization(Transform):
    """Reward Neutralization: `steps` of GRPO on `HarmfulRL-<domain>-v0`'s prompts with the defensive reward
    1 - cost - `length_penalty` * tokens / max_new_tokens (see the module docstring).

    Defaults: 100 steps (the paper's attacks break a model in about 50, so the defence trains twice that); lr 1e-4 and
    mean-centred advantages, as our GRPO attack, on which the embedded models move within tens of steps; 8 prompts x 8
    samples a step; `length_penalty` 0.5, so harm (up to 1) always outweighs length (at most 0.5).
    """

    name: ClassVar[str] = "reward-neutralization"

    domain: str = "biohazard"
    steps: int = 100
    learning_rate: float = 1e-4
    group_size: int = 8
    num_prompts: int = 8
    length_penalty: float = 0.5
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        require_one_of("domain", self.domain, tuple(HARMFUL_ENV_IDS))
        require_int(1, steps=self.steps, num_prompts=self.num_prompts)
        require_int(2, group_size=self.group_size)
        require_int(0, seed=self.seed)
        require_positive(learning_rate=self.learning_rate, temperature=self.temperature)
        if not 0 <= self.length_penalty < 1:
            raise ValueError(
                f"length_penalty={self.length_penalty!r} must be a number in [0, 1): at 1 or more a short harmful "
                "answer would score as high as a long refusal"
            )

    def train(
        self, env: gym.Env | gym.vector.VectorEnv, policy: str | Path, out: Path, resume: Resume, progress: bool
    ) -> dict[str, Any]:
        from rlft_gym.agents import GRPO

        world = env.unwrapped.world
        require_full_model(self.name, world)
        task = training_env(env, HARMFUL_ENV_IDS[self.domain], self.group_size * self.num_prompts, policy)
        defended = VectorDefensiveReward(task, self.length_penalty)
        agent, start, reports = learn_resumably(
            GRPO,
            defended,
            self.steps,
            resume,
            progress,
            world.device,
            learning_rate=self.learning_rate,
            group_size=self.group_size,
            temperature=self.temperature,
            seed=self.seed,
        )
        save_defended(agent.policy, world, out)
        task.close()
        return {
            "final_reward": reports[-1].reward,
            "final_cost": reports[-1].cost,
            "mean_length": reports[-1].extra["length"],
            "group_reward_std": group_reward_std(defended.last_rewards, self.group_size),
            "resumed_from_step": start,
            "env_id": HARMFUL_ENV_IDS[self.domain],
            "policy": str(policy),
        }
