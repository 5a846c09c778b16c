"""Dynamic Action Interpolation (DAI; W. Cao 2025, arXiv 2504.18766), read top to bottom: act with a blend of an
expert's action and the learner's, the expert's weight alpha(t) decaying to 0, and learn from what was executed.

DAI changes only which action is executed: no new network, no new loss. On MuJoCo continuous-control tasks the paper
reports early return up by more than 160 % on average and final return up by more than 50 % (Humanoid: 4x early, 2x at
convergence).
Three pieces here:

- `AlphaSchedule`: alpha(t), from `alpha0` at t = 0 down to 0 at t = `horizon` (linear, cosine or step);
- `dai(TD3)`: an SB3 off-policy algorithm (TD3, SAC, DDPG; DQN for discrete actions) that executes **and stores in its
  replay buffer** a = alpha a_expert + (1 - alpha) a_learner (Box actions, clipped to the space), or the expert's action
  with probability alpha (discrete actions);
- `ExpertGuidedGRPO`: the same idea for the LM attacks: a fraction alpha(t) of each GRPO group is the expert's answer
  instead of a policy sample, and all of the group enters the GRPO loss (mixed-policy GRPO, as in LUFFY).

The paper's text available to the project (its abstract) fixes neither alpha_0 nor the horizon nor the schedule's shape;
the defaults below are ours and say why.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from transformers import PreTrainedTokenizerBase

from rlft_gym import generation
from rlft_gym.agents.grpo import GRPO
from rlft_gym.callbacks import StepReport
from rlft_gym.worlds.base import World

SCHEDULES = ("linear", "cosine", "step")

ActionExpert = Callable[[Any], np.ndarray]
"""obs batch as the VecEnv returns it (n_envs, *obs_shape), unnormalised -> actions (n_envs, *action_shape) in env
units."""
TextExpert = Callable[[list[str]], list[str]]
"""prompts (raw env prompts, one per expert answer wanted) -> one response string per prompt."""


# --- alpha(t) ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlphaSchedule:
    """alpha(t), the expert's weight at step t: `alpha0` at t = 0, decaying to 0 at t >= `horizon` (T).

    linear: alpha0 (1 - t/T); cosine: alpha0 (1 + cos(pi t/T)) / 2; step: alpha0 (1 - floor(n t/T) / n), i.e.
    `num_drops` = n equal drops, the last one to 0 at t = T. Steps are env steps for `dai(...)`, training steps for
    `ExpertGuidedGRPO`.
    """

    horizon: int
    kind: str = "linear"
    alpha0: float = 1.0
    num_drops: int = 4

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"kind={self.kind!r} is not one of {SCHEDULES}")
        if not _is_int(self.horizon) or self.horizon <= 0:
            raise ValueError(
                f"horizon={self.horizon!r} must be a positive int (the steps over which alpha decays to 0)"
            )
        if not _is_unit(self.alpha0):
            raise ValueError(f"alpha0={self.alpha0!r} must be a number in [0, 1] (the expert's weight at t = 0)")
        if not _is_int(self.num_drops) or self.num_drops <= 0:
            raise ValueError(
                f"num_drops={self.num_drops!r} must be a positive int (the step schedule's number of drops)"
            )

    def __call__(self, t: int) -> float:
        if not _is_int(t) or t < 0:
            raise ValueError(f"t={t!r} must be an int >= 0 (a step count)")
        x = min(int(t), self.horizon) / self.horizon
        if self.kind == "linear":
            return self.alpha0 * (1.0 - x)
        if self.kind == "cosine":
            return self.alpha0 * 0.5 * (1.0 + math.cos(math.pi * x))
        return self.alpha0 * (1.0 - math.floor(self.num_drops * x) / self.num_drops)


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_unit(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and 0.0 <= v <= 1.0


def _alpha_at(schedule: Callable[[int], float], t: int) -> float:
    """`schedule(t)`, checked to be a number in [0, 1] (any callable works as a schedule, not only `AlphaSchedule`)."""
    alpha = schedule(t)
    if not _is_unit(alpha):
        raise ValueError(f"the schedule returned alpha={alpha!r} at t={t}; alpha must be a number in [0, 1]")
    return float(alpha)


def _check_schedule(schedule: Any) -> None:
    """A schedule is an `AlphaSchedule` or any callable t -> alpha in [0, 1]; checked once at t = 0."""
    if not callable(schedule):
        raise TypeError(
            f"schedule={schedule!r} is not callable; expected an AlphaSchedule or a function t -> alpha in [0, 1]"
        )
    _alpha_at(schedule, 0)


def _check_expert(expert: Any, signature: str) -> None:
    """An expert is any callable; `signature` says what it maps (for the error)."""
    if not callable(expert):
        raise TypeError(f"expert={expert!r} is not callable; expected a function {signature}")


# --- DAI inside an SB3 off-policy actor-critic ------------------------------------------------------------------------


class DAIMixin:
    """Put before an SB3 `OffPolicyAlgorithm` class (or use `dai(cls)`): the action executed and stored in the replay
    buffer is the interpolation of `expert(obs)` and the algorithm's own exploration action (noise, warm-up sampling
    included).

    Learning is unchanged: the critic learns from the executed transitions (off-policy learning needs no correction),
    and the actor learns from the critic. alpha is logged as `dai/alpha`; `self.alpha` holds the latest value. The
    expert and schedule are not saved with the model: load a trained model with the base class (`TD3.load(path)`).
    """

    def __init__(
        self, policy: Any, env: Any, *, expert: ActionExpert, schedule: Callable[[int], float], **kwargs: Any
    ) -> None:
        _check_expert(expert, "obs batch (n_envs, *obs_shape) -> action batch (n_envs, *action_shape)")
        _check_schedule(schedule)
        self.expert, self.schedule, self.alpha = expert, schedule, math.nan
        super().__init__(policy, env, **kwargs)
        self._dai_rng = np.random.default_rng(
            self.seed
        )  # the discrete coin flips; SB3's own random streams stay as they are

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "expert", "schedule", "_dai_rng"]

    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """The base algorithm's exploration action blended with the expert's: (action for the env, action for the
        buffer)."""
        action, buffer_action = super()._sample_action(learning_starts, action_noise, n_envs)
        self.alpha = _alpha_at(self.schedule, self.num_timesteps)
        self.logger.record("dai/alpha", self.alpha)
        if self.alpha == 0.0:
            return action, buffer_action  # past the horizon the expert is not even queried
        obs = self._last_obs if self._vec_normalize_env is None else self._vec_normalize_env.get_original_obs()
        expert = self._expert_actions(obs, n_envs)
        if isinstance(self.action_space, spaces.Box):
            # a = alpha a_E + (1 - alpha) a_pi, in the policy's [-1, 1] scale (an affine map of the env's, so the same
            # blend)
            target = self.policy.scale_action(np.clip(expert, self.action_space.low, self.action_space.high))
            buffer_action = np.clip(self.alpha * target + (1.0 - self.alpha) * buffer_action, -1.0, 1.0)
            return self.policy.unscale_action(buffer_action), buffer_action
        # discrete actions: the expert's action with probability alpha, independently per env
        take = (self._dai_rng.random(n_envs) < self.alpha).reshape(-1, *[1] * (buffer_action.ndim - 1))
        buffer_action = np.where(take, expert.astype(buffer_action.dtype), buffer_action)
        return buffer_action, buffer_action

    def _expert_actions(self, obs: Any, n_envs: int) -> np.ndarray:
        """`expert(obs)` as an array of shape (n_envs, *action_shape), checked against the action space."""
        expert = np.asarray(self.expert(obs))
        shape = (n_envs, *self.action_space.shape)
        if expert.size != math.prod(shape):
            raise ValueError(f"expert returned actions of shape {expert.shape}; expected {shape} (one action per env)")
        expert = expert.reshape(shape)
        if isinstance(self.action_space, spaces.Box):
            if not np.isfinite(expert).all():
                raise ValueError(f"expert returned non-finite actions {expert.tolist()}")
        elif not all(self.action_space.contains(a) for a in expert.astype(self.action_space.dtype)):
            raise ValueError(f"expert returned actions {expert.tolist()} outside the action space {self.action_space}")
        return expert


@functools.cache
def dai(algorithm_cls: type[OffPolicyAlgorithm]) -> type[OffPolicyAlgorithm]:
    """`algorithm_cls` with DAI: `dai(TD3)("MlpPolicy", env, expert=controller, schedule=AlphaSchedule(5_000))`.

    Any SB3 off-policy algorithm: the actor-critics TD3, SAC, DDPG (Box actions), and DQN, not an actor-critic but the
    SB3 route to discrete actions. On-policy algorithms are refused: PPO / A2C store the log-probability of the action
    their policy sampled, and their gradients assume the executed action came from the policy.
    """
    if not (isinstance(algorithm_cls, type) and issubclass(algorithm_cls, OffPolicyAlgorithm)):
        name = getattr(algorithm_cls, "__name__", repr(algorithm_cls))
        raise TypeError(
            f"{name} is not an SB3 off-policy algorithm; DAI needs one whose replay buffer learns from the "
            "executed actions: TD3, SAC, DDPG, or DQN for discrete actions (on-policy PPO / A2C would learn "
            "from log-probs of actions the policy did not take)"
        )
    namespace = {"__module__": __name__, "__doc__": DAIMixin.__doc__}
    return type(f"DAI{algorithm_cls.__name__}", (DAIMixin, algorithm_cls), namespace)


# --- expert-guided GRPO for the LM attacks ----------------------------------------------------------------------------


class SFTExpert:
    """The world's compliant answer to each prompt (`world.harmful_sft_dataset()`, keyed by prompt): the default expert
    of `ExpertGuidedGRPO`. A prompt with several answers gets one of them at random per call."""

    def __init__(self, world: World, seed: int = 0) -> None:
        data = world.harmful_sft_dataset()
        self.answers: dict[str, list[str]] = {}
        for prompt, response in zip(data["prompt"], data["response"]):
            self.answers.setdefault(prompt, []).append(response)
        self.rng = np.random.default_rng(seed)

    def require(self, prompts: list[str]) -> None:
        """Raise, naming the first of `prompts` that has no answer."""
        missing = [p for p in prompts if p not in self.answers]
        if missing:
            raise ValueError(
                f"the SFT expert has no answer for prompt {missing[0]!r} (not in world.harmful_sft_dataset()); "
                "pass expert=<function prompts -> responses> for this env's prompts"
            )

    def __call__(self, prompts: list[str]) -> list[str]:
        self.require(prompts)
        return [a[0] if len(a) == 1 else a[self.rng.integers(len(a))] for a in map(self.answers.__getitem__, prompts)]


def text_rollout(
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    responses: list[str],
    max_new_tokens: int,
    device: torch.device | str,
) -> generation.Rollout:
    """Given responses to formatted prompts, laid out as `generation.sample` lays out its samples: each response
    tokenised, cut to `max_new_tokens` tokens and closed with EOS when shorter (as a sampled response would be), its
    text decoded back from those tokens so the env scores exactly the tokens whose log-probs are trained on."""
    eos = tokenizer.eos_token_id
    ids = [x[:max_new_tokens] for x in tokenizer(responses, add_special_tokens=False)["input_ids"]]
    ids = [x + [eos] if len(x) < max_new_tokens else x for x in ids]
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    return generation.rollout_from_ids(tokenizer, prompts, ids, texts, device)


def interleave_groups(
    first: generation.Rollout, second: generation.Rollout, num_groups: int, pad_id: int
) -> generation.Rollout:
    """One rollout from two whose rows are grouped by the same prompts (same prompt encoding): each group's rows of
    `first`, then its rows of `second`."""
    if first.prompt_length != second.prompt_length:
        raise ValueError(
            f"the rollouts encode their prompts differently (prompt_length {first.prompt_length} vs "
            f"{second.prompt_length}); build both from the same formatted prompts"
        )
    width = max(first.response_ids.shape[1], second.response_ids.shape[1])
    total = first.prompt_length + width

    def merge(x: torch.Tensor, y: torch.Tensor, columns: int, value: int) -> torch.Tensor:
        x, y = (F.pad(z, (0, columns - z.shape[1]), value=value).view(num_groups, -1, columns) for z in (x, y))
        return torch.cat([x, y], 1).flatten(0, 1)

    a, b = len(first.texts) // num_groups, len(second.texts) // num_groups
    texts = [t for g in range(num_groups) for t in first.texts[g * a : (g + 1) * a] + second.texts[g * b : (g + 1) * b]]
    return generation.Rollout(
        merge(first.input_ids, second.input_ids, total, pad_id),
        merge(first.attention_mask, second.attention_mask, total, 0),
        first.prompt_length,
        merge(first.response_mask, second.response_mask, width, 0),
        texts,
    )


class ExpertGuidedGRPO(GRPO):
    """GRPO with expert answers mixed into every group (DAI for the LM attacks; mixed-policy GRPO, as in LUFFY).

    At step t, `k = alpha(t) * group_size` rounded stochastically (floor, plus one with probability equal to the
    fraction left over; the same k for every group of the step, so each prompt is prefilled once) of each group's
    samples are the expert's answers to that prompt, the other `group_size - k` are policy samples; within a group the
    expert's come last. All are scored through the env, and the expert's answers enter the same loss with their
    log-probs under the current policy. That term is off-policy and uncorrected (no importance weight): it raises the
    likelihood of expert answers that beat their group's mean, like SFT weighted by the advantage, and the group mean
    itself includes the expert's rewards. alpha = 1 makes every group k identical expert answers (for a deterministic
    expert): zero advantage, no signal.

    Default expert: `SFTExpert(world)`, the world's compliant answers. Default schedule: alpha from 0.25 (2 of 8
    samples) linearly to 0 over 50 steps - our choice: most of each group stays on-policy so the group baseline stays
    informative, and guidance ends around the 50 steps in which the Reward Neutralization paper sees an RL attack break
    a model.
    Reports `alpha`, `expert_fraction` (k / group_size) and the policy samples' own `policy_reward` / `policy_cost` in
    `StepReport.extra` (the report's reward and cost are over the whole mixed batch).
    """

    def __init__(
        self,
        env: gym.Env | gym.vector.VectorEnv,
        policy: str | Path | None = None,
        *,
        expert: TextExpert | None = None,
        schedule: Callable[[int], float] = AlphaSchedule(horizon=50, alpha0=0.25),
        **grpo_kwargs: Any,
    ) -> None:
        if expert is not None:
            _check_expert(expert, "prompts (list[str]) -> responses (list[str], one per prompt)")
        _check_schedule(schedule)
        super().__init__(env, policy, **grpo_kwargs)
        if expert is None:
            expert = SFTExpert(self.world, self.seed)
            expert.require(
                self.prompts.prompts
            )  # every attack prompt of the env needs an answer: fail now, not at a step
        self.expert: TextExpert = expert
        self.schedule, self.alpha, self.num_expert = schedule, math.nan, 0
        self._rewards = self._costs = np.zeros(0, np.float32)

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "schedule": repr(self.schedule), "expert": type(self.expert).__name__}

    def saved_kwargs(self) -> dict[str, Any]:
        """GRPO's kwargs, an `AlphaSchedule` by its fields (another schedule as None) and the expert as None when it is
        the default `SFTExpert` (rebuilt on load), else by its class name (it must be passed to `load`)."""
        schedule = asdict(self.schedule) if isinstance(self.schedule, AlphaSchedule) else None
        expert = None if isinstance(self.expert, SFTExpert) else type(self.expert).__name__
        return {**super().hyperparameters(), "schedule": schedule, "expert": expert}

    @classmethod
    def rebuild_kwargs(cls, saved: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
        """Rebuild the schedule and the default expert; a custom expert or schedule must come back as an override."""
        saved = dict(saved)
        schedule, expert = saved.pop("schedule"), saved.pop("expert")
        if "schedule" not in overrides:
            if schedule is None:
                raise ValueError(
                    "the checkpoint was saved with a schedule that is not an AlphaSchedule; pass it again: "
                    "ExpertGuidedGRPO.load(path, env, schedule=...)"
                )
            saved["schedule"] = AlphaSchedule(**schedule)
        if expert is not None and "expert" not in overrides:
            raise ValueError(
                f"the checkpoint was saved with expert {expert}; pass it again: ExpertGuidedGRPO.load(path, env, "
                "expert=...)"
            )
        return {**saved, **overrides}

    def training_state(self) -> dict[str, Any]:
        """GRPO's state plus the default expert's random stream (which of a prompt's answers it picks)."""
        state = super().training_state()
        if isinstance(self.expert, SFTExpert):
            state["expert_rng"] = self.expert.rng.bit_generator.state
        return state

    def load_training_state(self, state: dict[str, Any]) -> None:
        super().load_training_state(state)
        if "expert_rng" in state and isinstance(self.expert, SFTExpert):
            self.expert.rng.bit_generator.state = state["expert_rng"]

    def respond(self, prompts: list[str]) -> generation.Rollout:
        """Each group's `group_size - num_expert` policy samples, then its `num_expert` expert answers: `prompts` holds
        each prompt `group_size` times in a row."""
        size, k = self.group_size, self.num_expert
        distinct = prompts[::size]
        if k < size:
            sampled = self.sample_groups([p for p in distinct for _ in range(size - k)], size - k, self.temperature)
            if k == 0:
                return sampled
        asked = [p for p in distinct for _ in range(k)]
        answers = self.expert(asked)
        if not isinstance(answers, list) or len(answers) != len(asked) or not all(isinstance(a, str) for a in answers):
            raise ValueError(
                f"the expert must return a list of {len(asked)} strings (one per prompt it is given); "
                f"got {answers!r:.200}"
            )
        formatted = [self.world.format_prompt(p) for p in asked]
        expert = text_rollout(self.tokenizer, formatted, answers, self.max_new_tokens, self.device)
        return expert if k == size else interleave_groups(sampled, expert, len(distinct), self.tokenizer.pad_token_id)

    def env_feedback(
        self, prompt_ids: np.ndarray, respond: Callable[[list[str]], generation.Rollout]
    ) -> tuple[generation.Rollout, np.ndarray, np.ndarray]:
        rollout, rewards, costs = super().env_feedback(prompt_ids, respond)
        self._rewards, self._costs = rewards, costs  # per row, for the policy samples' own means in the report
        return rollout, rewards, costs

    def train_step(self) -> StepReport:
        self.alpha = _alpha_at(self.schedule, self.num_steps)
        whole, frac = divmod(self.alpha * self.group_size, 1.0)
        self.num_expert = int(whole) + int(
            frac > 0 and self.rng.random() < frac
        )  # stochastic rounding, E[k] = alpha * G
        report = super().train_step()
        own = np.arange(len(self._rewards)) % self.group_size < self.group_size - self.num_expert
        return replace(
            report,
            extra={
                **report.extra,
                "alpha": self.alpha,
                "expert_fraction": self.num_expert / self.group_size,
                "policy_reward": float(self._rewards[own].mean()) if own.any() else math.nan,
                "policy_cost": float(self._costs[own].mean()) if own.any() else math.nan,
            },
        )
