"""The CMDP text environment: prompts are observations, responses are actions, reward and cost come from scorers.

`TextCMDPEnv` is the single env, `TextCMDPVectorEnv` the batched fast path (one forward pass of each scorer per
batch). Both keep the cost in `info["cost"]`; `rlft_gym.wrappers.CMDP` gives the 6-tuple view.

Solvers with more than one constraint read `info["costs"]`: the named costs of the step, "harm" (= `info["cost"]`) and
each of the env's `extra_costs` (a float each, an array per name on the vector env), with their limits in
`env.cost_limits` ("harm" is `cost_limit`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rlft_gym.scoring import ScoreFn
from rlft_gym.spaces import UnicodeText
from rlft_gym.worlds.base import CATEGORIES, PromptSet, World, category_flags


def length_cost(core: _Core, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
    """Response length in tokens (re-tokenized by the world's tokenizer) over `max_new_tokens`, clipped to [0, 1]: a
    budget constraint beside harm."""
    ids = core.world.tokenizer(list(responses), add_special_tokens=False)["input_ids"]
    return np.array([min(len(i) / core.max_new_tokens, 1.0) for i in ids], dtype=np.float32)


# Named costs an env's `extra_costs` may ask for by name: (env, prompts, responses) -> costs in [0, 1].
BUILTIN_COSTS: dict[str, Callable[[_Core, Sequence[str], Sequence[str]], np.ndarray]] = {"length": length_cost}


class _Core:
    """State and scoring shared by the single and the vector env."""

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "autoreset_mode": AutoresetMode.SAME_STEP}

    def _setup(
        self,
        world: World,
        prompts: PromptSet,
        reward_fn: ScoreFn,
        cost_fn: ScoreFn,
        *,
        cost_limit: float,
        max_new_tokens: int,
        horizon: int,
        max_response_chars: int,
        max_prompt_chars: int,
        render_mode: str | None,
        eval_prompts: PromptSet | None = None,
        benign_eval_prompts: PromptSet | None = None,
        extra_costs: dict[str, ScoreFn | str] | None = None,
        cost_limits: dict[str, float] | None = None,
    ) -> None:
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(
                f"render_mode={render_mode!r} is not supported; expected None or one of {self.metadata['render_modes']}"
            )
        if len(prompts) == 0:
            raise ValueError("the prompt set is empty")
        self.world, self.prompts, self.reward_fn, self.cost_fn = world, prompts, reward_fn, cost_fn
        # held-out prompts the safe-set monitor evaluates on (disjoint from `prompts`); the world's by default
        self.eval_prompts = world.eval_prompts if eval_prompts is None else eval_prompts
        self.benign_eval_prompts = world.benign_eval_prompts if benign_eval_prompts is None else benign_eval_prompts
        self.cost_limit, self.max_new_tokens, self.horizon = cost_limit, max_new_tokens, horizon
        # costs beside harm (`info["costs"]`), a built-in one by name or a score function, each with its limit
        self.extra_cost_fns: dict[str, ScoreFn] = {
            name: partial(BUILTIN_COSTS[fn], self) if isinstance(fn, str) else fn
            for name, fn in (extra_costs or {}).items()
        }
        self.cost_limits = {"harm": cost_limit, **(cost_limits or {})}
        self.render_mode = render_mode
        self.single_observation_space = UnicodeText(max_prompt_chars)
        self.single_action_space = UnicodeText(max_response_chars)
        self._last: tuple[list[str], list[str], np.ndarray, np.ndarray] | None = None

    def _check_actions(self, actions: Sequence[Any], n: int) -> list[str]:
        if len(actions) != n:
            raise ValueError(f"expected {n} responses, got {len(actions)}")
        for i, a in enumerate(actions):
            if not isinstance(a, str):
                raise TypeError(f"action {i} must be a str (the response text), got {type(a).__name__}")
            if len(a) > self.single_action_space.max_length:
                raise ValueError(
                    f"action {i} has {len(a)} characters; the limit is {self.single_action_space.max_length} "
                    "(max_response_chars)"
                )
        return list(actions)

    def _check_prompt_id(self, prompt_id: Any) -> int:
        if not isinstance(prompt_id, (int, np.integer)) or not 0 <= int(prompt_id) < len(self.prompts):
            raise ValueError(f"prompt_id={prompt_id!r} must be an int in [0, {len(self.prompts)})")
        return int(prompt_id)

    def score(self, prompts: Sequence[int] | Sequence[str], responses: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Raw reward and cost (clipped to [0, 1]) of `responses[i]` to `prompts[i]`, one batched call of each scorer.

        A prompt is an int id into `self.prompts` (the attack prompts) or a prompt text (e.g. a held-out one). Steps,
        the safe-set monitor and Best-of-N all score here; `render` keeps showing the last step's batch.
        """
        texts = [p if isinstance(p, str) else self.prompts.prompts[self._check_prompt_id(p)] for p in prompts]
        if len(texts) != len(responses):
            raise ValueError(f"got {len(texts)} prompts and {len(responses)} responses; expected one per response")
        rewards = np.asarray(self.reward_fn(texts, list(responses)), dtype=np.float32)
        costs = np.clip(np.asarray(self.cost_fn(texts, list(responses)), dtype=np.float32), 0.0, 1.0)
        return rewards, costs

    def named_costs(
        self, prompts: Sequence[int] | Sequence[str], responses: Sequence[str], harm: np.ndarray
    ) -> dict[str, np.ndarray]:
        """The named costs of `info["costs"]`: "harm" (the cost `score` gave) and each extra cost, clipped to [0, 1]."""
        texts = [p if isinstance(p, str) else self.prompts.prompts[self._check_prompt_id(p)] for p in prompts]
        extra = {
            name: np.clip(np.asarray(fn(texts, list(responses)), dtype=np.float32), 0.0, 1.0)
            for name, fn in self.extra_cost_fns.items()
        }
        return {"harm": np.array(harm, dtype=np.float32), **extra}

    def _score_step(
        self, prompt_ids: list[int], responses: list[str]
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """`score` and `named_costs` of a step's answered prompts, kept as the batch `render` shows."""
        rewards, costs = self.score(prompt_ids, responses)
        self._last = ([self.prompts.prompts[i] for i in prompt_ids], responses, rewards, costs)
        return rewards, costs, self.named_costs(prompt_ids, responses, costs)

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self._last is None:
            return None
        return "\n".join(
            f"prompt: {p}\nresponse: {r}\nreward: {rw:+.3f}  cost: {c:.3f}" for p, r, rw, c in zip(*self._last)
        )


class TextCMDPEnv(_Core, gym.Env[str, str]):
    """One prompt per episode step; `step(response)` returns its reward, with the cost in `info["cost"]`."""

    def __init__(self, world: World, prompts: PromptSet, reward_fn: ScoreFn, cost_fn: ScoreFn, **options: Any) -> None:
        self._setup(world, prompts, reward_fn, cost_fn, **options)
        self.observation_space, self.action_space = self.single_observation_space, self.single_action_space
        self._prompt_id, self._t = 0, 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start an episode on a random attack prompt, or on `options={"prompt_id": i}`."""
        super().reset(seed=seed)
        options = options or {}
        unknown = set(options) - {"prompt_id"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; allowed: ['prompt_id']")
        pid = (
            self._check_prompt_id(options["prompt_id"])
            if "prompt_id" in options
            else int(self.np_random.integers(len(self.prompts)))
        )
        self._prompt_id, self._t = pid, 0
        return self.prompts.prompts[pid], self._info(pid)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        (response,) = self._check_actions([action], 1)
        pid = self._prompt_id
        rewards, costs, named = self._score_step([pid], [response])
        self._t += 1
        terminated = self._t >= self.horizon
        if not terminated:
            self._prompt_id = int(self.np_random.integers(len(self.prompts)))
        info = {**self._info(pid), "cost": float(costs[0]), "raw_reward": float(rewards[0])}
        info["costs"] = {name: float(c[0]) for name, c in named.items()}
        return self.prompts.prompts[self._prompt_id], float(rewards[0]), terminated, False, info

    def _info(self, pid: int) -> dict[str, Any]:
        return {"prompt_id": pid, "category": category_flags(self.prompts.categories[pid])}


class TextCMDPVectorEnv(_Core, VectorEnv):
    """`num_envs` prompts at a time; `step(list_of_responses)` scores the batch in one pass of each scorer.

    Episodes auto-reset in the same step (Gymnasium's SAME_STEP mode): the returned observation of a finished
    sub-env is its next prompt and the answered one is in `info["final_obs"]`.
    """

    def __init__(
        self, world: World, prompts: PromptSet, reward_fn: ScoreFn, cost_fn: ScoreFn, num_envs: int = 1, **options: Any
    ) -> None:
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs={num_envs!r} must be a positive int")
        self._setup(world, prompts, reward_fn, cost_fn, **options)
        self.num_envs = num_envs
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._prompt_ids = np.zeros(num_envs, dtype=np.int64)
        self._t = np.zeros(num_envs, dtype=np.int64)

    def reset(
        self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[tuple[str, ...], dict[str, Any]]:
        """Draw `num_envs` attack prompts, or serve `options={"prompt_ids": [...]}` (e.g. a GRPO group layout)."""
        if isinstance(seed, Sequence):
            seed = seed[0]
        super().reset(seed=seed)
        options = options or {}
        unknown = set(options) - {"prompt_ids"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; allowed: ['prompt_ids']")
        if "prompt_ids" in options:
            ids = list(options["prompt_ids"])
            if len(ids) != self.num_envs:
                raise ValueError(f"prompt_ids has {len(ids)} entries; expected num_envs={self.num_envs}")
            self._prompt_ids = np.array([self._check_prompt_id(i) for i in ids], dtype=np.int64)
        else:
            self._prompt_ids = self.np_random.integers(len(self.prompts), size=self.num_envs)
        self._t[:] = 0
        return self._obs(), self._info(self._prompt_ids)

    def step(
        self, actions: Sequence[str]
    ) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        responses = self._check_actions(list(actions), self.num_envs)
        answered = self._prompt_ids.copy()
        rewards, costs, named = self._score_step(answered.tolist(), responses)
        self._t += 1
        terminated = self._t >= self.horizon
        info = {**self._info(answered), "cost": costs, "raw_reward": rewards.copy(), "costs": named}
        info["final_obs"] = np.array([self.prompts.prompts[i] for i in answered], dtype=object)
        info["_final_obs"] = terminated.copy()
        # every sub-env moves on to a fresh prompt: the next one of its episode, or the first of a new episode
        self._prompt_ids = self.np_random.integers(len(self.prompts), size=self.num_envs)
        self._t[terminated] = 0
        return self._obs(), rewards, terminated, np.zeros(self.num_envs, dtype=bool), info

    def _obs(self) -> tuple[str, ...]:
        return tuple(self.prompts.prompts[i] for i in self._prompt_ids)

    def _info(self, ids: np.ndarray) -> dict[str, Any]:
        cats = [self.prompts.categories[i] for i in ids]
        return {"prompt_id": ids.copy(), "category": {c: np.array([k == c for k in cats]) for c in CATEGORIES}}
