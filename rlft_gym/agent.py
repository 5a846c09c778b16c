"""What every attack shares: the env hookup, policy and reference loading, the learn loop, online constraints."""

from __future__ import annotations

import contextlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from accelerate import Accelerator

from rlft_gym import cache, generation
from rlft_gym.callbacks import Callback, ProgressBar, StepReport, as_callback
from rlft_gym.generation import Rollout
from rlft_gym.validate import require_int, require_one_of
from rlft_gym.worlds.base import PromptSet, World

log = logging.getLogger(__name__)

MIXED_PRECISION = ("no", "bf16", "fp16")
TRAINING_STATE = "training_state.pt"


def group_layout(
    env: gym.Env | gym.vector.VectorEnv, group_size: int, num_prompts: int, name: str = "group_size", minimum: int = 2
) -> int:
    """Prompts per step for agents that sample `group_size` responses per prompt: `num_envs // group_size` on a vector
    env (which must hold whole groups), else `num_prompts`; one clear error for a bad size or layout."""
    require_int(minimum, **{name: group_size})
    if isinstance(env.unwrapped, gym.vector.VectorEnv):
        if env.num_envs % group_size:
            raise ValueError(
                f"num_envs={env.num_envs} is not a multiple of {name}={group_size}; "
                f"make the env with rlft_gym.make_vec(id, num_envs=k * {group_size})"
            )
        return env.num_envs // group_size
    require_int(1, num_prompts=num_prompts)
    return num_prompts


@dataclass
class Batch:
    """One training batch as constraints see it: the rollout, per-token log-probs and the env's feedback."""

    rollout: Rollout
    logp: torch.Tensor  # (B, T) policy log-probs of response tokens, with grad
    ref_logp: torch.Tensor | None  # (B, T) reference log-probs, no grad; None unless a constraint needs_reference
    rewards: np.ndarray
    costs: np.ndarray


class Constraint:
    """An online defence: a term added to the agent's loss and/or an action after each optimizer step.

    Any state that changes training (an anchor, a multiplier, a counter) is returned by `state_dict` and restored by
    `load_state_dict`: `Agent.save` writes it with the training state, so a resumed run takes the same next step.
    """

    needs_reference: bool = False  # set True to get the reference log-probs of the whole batch in `Batch.ref_logp`
    needs_batch: bool = False  # set True if `loss` reads the batch; agents whose loss TRL computes pass `batch=None`

    def setup(self, agent: Agent) -> None:
        """Called once when the agent is built."""

    def loss(self, agent: Agent, batch: Batch | None) -> torch.Tensor | None:
        """Extra loss for this batch (None for none). `batch` is None inside TRL-backed agents (SFT, DPO, TRL-GRPO)."""
        return None

    def after_step(self, agent: Agent, optimizer_step: int, agent_step: int) -> None:
        """Called after every optimizer step: `optimizer_step` counts optimizer steps since training began (PPO takes
        several per agent step), `agent_step` is the agent step it belongs to (`agent.num_steps + 1` while it runs)."""

    def state_dict(self) -> dict[str, Any]:
        """The constraint's training state (tensors, numbers, strings, lists and dicts of them); {} for none."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        if state:
            raise NotImplementedError(f"{type(self).__name__} saved a state but does not define load_state_dict")

    def evaluation(self, agent: Agent) -> contextlib.AbstractContextManager[None]:
        """The context the safe-set monitor evaluates the policy in, e.g. with a training-only adapter removed (the
        deployed model); by default nothing changes."""
        return contextlib.nullcontext()


def stateful_wrappers(env: gym.Env | gym.vector.VectorEnv) -> list[Any]:
    """The wrappers around `env`, outermost first, that hold training state (they define `state_dict` and
    `load_state_dict`, e.g. the cost gate's running floor)."""
    found = []
    while hasattr(env, "env") and env is not env.unwrapped:
        if callable(getattr(type(env), "state_dict", None)) and callable(getattr(type(env), "load_state_dict", None)):
            found.append(env)
        env = env.env
    return found


class Agent(ABC):
    """Base of the attacks: `Agent(env, policy=None, **hparams).learn(total_steps, callback)`."""

    def __init__(
        self,
        env: gym.Env | gym.vector.VectorEnv,
        policy: str | Path | None = None,
        constraints: Sequence[Constraint] = (),
        seed: int = 0,
        device: str = "cpu",
        mixed_precision: str = "no",
    ) -> None:
        base = env.unwrapped
        if not isinstance(getattr(base, "world", None), World):
            raise TypeError(
                f"{type(base).__name__} is not an rlft-gym env (it has no .world); "
                "make one with gym.make('RPA-BeaverTails-v0')"
            )
        require_one_of("mixed_precision", mixed_precision, MIXED_PRECISION)
        # accelerate places the models ("auto": the process's accelerator, else CPU) and runs autocast / scaled backward
        try:
            self.accelerator = Accelerator(cpu=device == "cpu", mixed_precision=mixed_precision)
        except ValueError as e:
            if "already been initialized" not in str(e):
                raise
            raise ValueError(
                f"mixed_precision={mixed_precision!r} / device={device!r} differ from an agent already created in this "
                "process; accelerate allows one setting per process, so run this agent in its own process"
            ) from None
        device = str(self.accelerator.device) if device == "auto" else device
        self.env, self.device, self.seed, self.mixed_precision = env, device, seed, mixed_precision
        self.world: World = base.world
        self.prompts: PromptSet = base.prompts  # the env's attack prompts (prompt ids index these)
        self.tokenizer = self.world.tokenizer
        self.max_new_tokens: int = base.max_new_tokens
        self.policy = self.world.load_policy(policy or base.policy_path, device)
        self.reference = self.world.load_reference(device)
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)  # sampling draws on the model's device
        torch.manual_seed(seed)
        self.num_steps = 0
        self.optimizer_steps = 0
        self.constraints = list(constraints)
        for c in self.constraints:
            if not isinstance(c, Constraint):
                raise TypeError(f"constraint {c!r} is not an rlft_gym.agent.Constraint")
            c.setup(self)

    @property
    def is_vector(self) -> bool:
        return isinstance(self.env.unwrapped, gym.vector.VectorEnv)

    def env_feedback(
        self, prompt_ids: np.ndarray, respond: Callable[[list[str]], Rollout]
    ) -> tuple[Rollout, np.ndarray, np.ndarray]:
        """Serve `prompt_ids` through the env (and its wrappers) and answer them with `respond(prompts)`.

        A vector env takes the whole batch in one reset/step; a single env is stepped once per prompt.
        Returns the rollout, the rewards as the (wrapped) env gives them, and the costs.
        """
        if self.is_vector:
            obs, _ = self.env.reset(options={"prompt_ids": prompt_ids.tolist()})
            rollout = respond(list(obs))
            _, rewards, _, _, info = self.env.step(rollout.texts)
            return rollout, np.asarray(rewards, np.float32), np.asarray(info["cost"], np.float32)
        rollout = respond([self.prompts.prompts[i] for i in prompt_ids])
        rewards, costs = [], []
        for i, text in zip(prompt_ids, rollout.texts):
            self.env.reset(options={"prompt_id": int(i)})
            _, reward, _, _, info = self.env.step(text)
            rewards.append(reward)
            costs.append(info["cost"])
        return rollout, np.asarray(rewards, np.float32), np.asarray(costs, np.float32)

    def sample_groups(self, prompts: list[str], samples_per_prompt: int, temperature: float) -> Rollout:
        """Sample from the current policy: `prompts` holds each prompt `samples_per_prompt` times in a row (as
        `env_feedback` serves them); each distinct prompt is prefilled once and its KV cache shared by its samples."""
        formatted = [self.world.format_prompt(p) for p in prompts[::samples_per_prompt]]
        with self.accelerator.autocast():
            return generation.sample(
                self.policy,
                self.tokenizer,
                formatted,
                self.max_new_tokens,
                temperature,
                generator=self.generator,
                num_samples=samples_per_prompt,
            )

    def after_optimizer_step(self) -> None:
        """Count the optimizer step just taken and call every constraint's `after_step` hook."""
        self.optimizer_steps += 1
        for c in self.constraints:
            c.after_step(self, self.optimizer_steps, self.num_steps + 1)

    @abstractmethod
    def train_step(self) -> StepReport:
        """One training step: the algorithm itself."""

    def start_learning(
        self, total_steps: int, callback: Callback | Sequence[Callback] | None, progress_bar: bool
    ) -> Callback:
        """Check `total_steps`, gather the callbacks (plus a progress bar if asked) and announce the start to them."""
        require_int(0, total_steps=total_steps)
        callbacks = [callback] if isinstance(callback, Callback) else list(callback or [])
        if progress_bar:
            callbacks.append(ProgressBar(type(self).__name__))
        cb = as_callback(callbacks)
        cb.on_training_start(self, total_steps)
        return cb

    def learn(
        self, total_steps: int, callback: Callback | Sequence[Callback] | None = None, progress_bar: bool = False
    ) -> Agent:
        """Train for `total_steps` steps, reporting each to `callback`; returns self."""
        cb = self.start_learning(total_steps, callback, progress_bar)
        try:
            for _ in range(total_steps):
                report = self.train_step()
                self.num_steps += 1
                if cb.on_step(self, report) is False:
                    log.info("training stopped by a callback at step %d", self.num_steps)
                    break
        finally:
            cb.on_training_end(self)
        return self

    def hyperparameters(self) -> dict[str, Any]:
        """The agent's hyperparameters, for results files."""
        return {}

    def saved_kwargs(self) -> dict[str, Any]:
        """The constructor kwargs `load` rebuilds the agent with (JSON values only): the hyperparameters by default.
        An agent with object hyperparameters (an expert, a schedule) encodes them here and decodes them in
        `rebuild_kwargs`, or leaves them out for the caller to pass to `load` (as SB3 does)."""
        return self.hyperparameters()

    @classmethod
    def rebuild_kwargs(cls, saved: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
        """The constructor kwargs from what `saved_kwargs` wrote, with `overrides` taking precedence."""
        return {**saved, **overrides}

    def training_state(self) -> dict[str, Any]:
        """Everything besides the weights that the next step depends on: optimizer moments, the random streams, the
        optimizer-step count, and the state of every constraint and stateful env wrapper."""
        state: dict[str, Any] = {
            "numpy_rng": self.rng.bit_generator.state,
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "optimizer_steps": self.optimizer_steps,
            "constraints": [{"type": type(c).__name__, "state": c.state_dict()} for c in self.constraints],
            "wrappers": [{"type": type(w).__name__, "state": w.state_dict()} for w in stateful_wrappers(self.env)],
        }
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        if getattr(self, "optimizer", None) is not None:
            state["optimizer"] = self.optimizer.state_dict()
        return state

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore what `training_state` returned, so training continues exactly where it stopped. The agent must hold
        constraints and env wrappers of the saved types, in the saved order (pass `constraints=` to `load`)."""
        for what, saved, live in (
            ("constraints", state["constraints"], self.constraints),
            ("stateful env wrappers", state["wrappers"], stateful_wrappers(self.env)),
        ):
            names = [type(x).__name__ for x in live]
            if [s["type"] for s in saved] != names:
                hint = "pass constraints=[...] to load" if what == "constraints" else "wrap the env as it was wrapped"
                raise ValueError(
                    f"the checkpoint was saved with {what} {[s['type'] for s in saved]}, this agent has {names}; "
                    f"{hint}, so their saved state can be restored"
                )
        for c, saved in zip(self.constraints, state["constraints"]):
            c.load_state_dict(saved["state"])
        for w, saved in zip(stateful_wrappers(self.env), state["wrappers"]):
            w.load_state_dict(saved["state"])
        self.optimizer_steps = int(state["optimizer_steps"])
        self.rng.bit_generator.state = state["numpy_rng"]
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])

    def save(self, path: str | Path) -> Path:
        """Save a checkpoint `Agent.load` resumes from: the policy (safetensors, `save_pretrained`) and tokenizer,
        the hyperparameters and step count (`agent.json`) and the training state (`training_state.pt`)."""
        path = Path(path)
        if path.exists() and not (path.is_dir() and (not any(path.iterdir()) or (path / "agent.json").is_file())):
            raise ValueError(f"path={path} exists and is not an agent checkpoint; save to a new or empty directory")
        with cache.staging(path) as tmp:
            self.write_checkpoint(tmp)
            cache.publish(tmp, path)
        return path

    def write_checkpoint(self, path: Path) -> None:
        """Write the checkpoint's files into the (fresh, empty) directory `path`; `save` moves it into place."""
        self.policy.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        torch.save(self.training_state(), path / TRAINING_STATE)
        meta = {
            "agent": type(self).__name__,
            "num_steps": self.num_steps,
            "hyperparameters": self.hyperparameters(),
            "kwargs": self.saved_kwargs(),
        }
        (path / "agent.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: str | Path, env: gym.Env | gym.vector.VectorEnv, **overrides: Any) -> Agent:
        """Rebuild an agent saved with `save` on `env`, so its next `learn` step is the one the saved agent would
        have taken. `overrides` replace saved hyperparameters or pass what is not saved (`device`, `constraints`: give
        constraints of the saved types, and their saved state, e.g. a Lagrange multiplier, is restored into them)."""
        path = Path(path)
        if not (path / "agent.json").is_file():
            raise FileNotFoundError(
                f"{path} is not an agent checkpoint (no agent.json); make one with agent.save(path)"
            )
        meta = json.loads((path / "agent.json").read_text())
        if meta["agent"] != cls.__name__:
            raise ValueError(
                f"{path} holds a {meta['agent']} checkpoint; load it with {meta['agent']}.load, not {cls.__name__}.load"
            )
        agent = cls(env, policy=path, **cls.rebuild_kwargs(meta["kwargs"], overrides))
        agent.num_steps = int(meta["num_steps"])
        agent.restore(path)
        return agent

    def restore(self, path: Path) -> None:
        """Read the training state saved beside the policy in `path` (the policy itself is loaded by the
        constructor)."""
        self.load_training_state(torch.load(path / TRAINING_STATE, map_location=self.device, weights_only=True))
