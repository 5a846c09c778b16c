"""What the TRL-backed attacks (SFT, DPO, TRL-GRPO) share: a TRL trainer run as an rlft-gym `Agent`.

`learn(n)` runs `trainer.train()` for n more optimizer steps. A `transformers.TrainerCallback` turns each step's log
into a `StepReport` for our callbacks, so SafeSetMonitor, ProgressBar and results files work unchanged, and ends
every `learn()` with a standard Trainer checkpoint (model, optimizer.pt, scheduler.pt, rng_state.pth,
trainer_state.json). The next `learn()` - or `load()` in another process - resumes it with
`trainer.train(resume_from_checkpoint=...)`: same weights, optimizer moments, RNG streams and data order, so a run
split into pieces takes the same steps as one run. The learning rate is constant (no warmup, no decay), because
`learn(n)` does not know how many steps will follow.

SFT and DPO do not sample from the env, so each step they probe it: `probe_prompts` attack prompts, one sample each
from the current policy (temperature 1), served through the env and its wrappers (`Agent.env_feedback`). The report's
reward and cost are the probe's means, its kl the mean per-token log pi - log pi_ref on the probe's samples (the
estimator native GRPO and PPO report); with `probe_prompts=0` all three are nan.

Constraints serve TRL agents as they serve native ones. `after_step` runs after each optimizer step. A loss term
is added to TRL's loss in the trainer's `compute_loss` (one mixin for SFT, DPO and TRL-GRPO), scaled so it counts
once per optimizer step whatever the gradient accumulation; the logged loss includes it and each term is logged as
`constraint/<Name>`. TRL computes the loss itself, so `Constraint.loss` gets `batch=None`: a constraint that needs
the batch or the reference log-probs (`needs_batch`, `needs_reference`) is refused (TRL-GRPO maps `KLConstraint`
to TRL's own KL penalty instead).

`trl_args` passes further fields to the TRL config (gradient_accumulation_steps, activation_checkpointing,
use_vllm, deepspeed, fsdp, ...) and is saved with the agent's hyperparameters. Fields the agent sets itself (from its
arguments, or fixed because `learn()` relies on them) are refused, naming the argument to use. An agent's batch
stays the examples per optimizer step: with gradient_accumulation_steps=k it is split into k micro-batches.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import json
import logging
import math
import shutil
import tempfile
import warnings
import weakref
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import datasets
import gymnasium as gym
import numpy as np
import torch
import transformers
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from rlft_gym import generation
from rlft_gym.agent import Agent, Constraint
from rlft_gym.callbacks import Callback, StepReport
from rlft_gym.validate import check_finite, require_int

log = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"  # a Trainer checkpoint's marker file
PROBE_TEMPERATURE = 1.0
THIRD_PARTY = ("transformers", "trl", "accelerate", "datasets", "peft", "torch")
# TRL config fields the bridge sets from the agent's own arguments: config field -> the argument to pass instead
ARGUMENT_FIELDS = {
    "output_dir": "output_dir",
    "seed": "seed",
    "use_cpu": "device",
    "bf16": "mixed_precision",
    "fp16": "mixed_precision",
}
# deprecated TrainingArguments aliases, renamed: the bridge sets the new name, which would silently win over the old
ALIASES = {
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the logs, warnings and progress bars of TRL and the libraries under it; ours are untouched."""
    loggers = [logging.getLogger(name) for name in THIRD_PARTY]
    levels = [lg.level for lg in loggers]
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            for name in THIRD_PARTY:
                warnings.filterwarnings("ignore", module=rf"{name}(\.|$)")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if bars:
            datasets.enable_progress_bars()


def completion_text(prompt: str, response: str) -> str:
    """A response as the continuation of its formatted prompt: space-separated unless the prompt ends in whitespace."""
    return response if prompt[-1:].isspace() else f" {response}"


class _StepReporter(transformers.TrainerCallback):
    """Bridges the Trainer's hooks to ours: constraint hooks and a NaN guard around the optimizer step, one
    `StepReport` per logged step, an early stop when our callback asks, and a checkpoint at the end of `learn()`."""

    def __init__(self, agent: TRLAgent) -> None:
        self.agent = agent
        self.callback: Callback = Callback()
        self.until = 0

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self.agent.mixed_precision == "fp16":  # the loss scaler skips overflowing steps itself
            return
        grads = [p.grad for p in self.agent.policy.parameters() if p.grad is not None]
        check_finite(torch.nn.utils.get_total_norm(grads), state.global_step + 1, "gradient norm")

    def on_step_end(self, args, state, control, **kwargs):
        # one optimizer step per Trainer step (gradient accumulation included); on_log then counts the agent step
        self.agent.optimizer_steps = state.global_step - 1
        self.agent.after_optimizer_step()

    def on_log(self, args, state, control, logs=None, **kwargs):
        agent = self.agent
        if not logs or "loss" not in logs or state.global_step <= agent.num_steps:  # e.g. the end-of-train summary
            return
        agent.num_steps = state.global_step
        stop = self.callback.on_step(agent, agent.step_report(state.global_step, logs)) is False
        if stop:
            log.info("training stopped by a callback at step %d", state.global_step)
            control.should_training_stop = True
        if stop or state.global_step >= self.until:
            control.should_save = True

    def on_save(self, args, state, control, **kwargs):
        self.agent.checkpoint = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"


class _ConstraintLoss(transformers.Trainer):
    """Trainer mixin, first among the bases: the agent's constraint terms added to the trainer's loss, and logged."""

    def __init__(self, *args: Any, agent: TRLAgent, **kwargs: Any) -> None:
        self.agent = agent
        names = [type(c).__name__ for c in agent.constraints]
        self.constraint_keys = [
            f"constraint/{n}" if names.count(n) == 1 else f"constraint/{n}_{i}" for i, n in enumerate(names)
        ]
        self.constraint_terms: dict[str, list[float]] = defaultdict(list)  # each micro-batch's term since the last log
        super().__init__(*args, **kwargs)

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """The trainer's loss plus each constraint's term (`loss(agent, None)`), counted once per optimizer step."""
        out = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        terms = [
            (key, term)
            for key, c in zip(self.constraint_keys, self.agent.constraints)
            if (term := c.loss(self.agent, None)) is not None
        ]
        for key, term in terms:
            self.constraint_terms[key].append(float(term.detach()))
        # Trainer.training_step's rule: it divides the loss by the accumulation steps unless already scaled for them
        scaled = self.loss_is_scaled_for_ga
        if scaled is None:
            scaled = (
                self.model_accepts_loss_kwargs and num_items_in_batch is not None
            ) or self.compute_loss_func is not None
        extra = sum(term for _, term in terms) / (self.current_gradient_accumulation_steps if scaled else 1)
        return (out[0] + extra, *out[1:]) if return_outputs else out + extra

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """The trainer's log plus each constraint's mean term since the last log, as `constraint/<Name>`."""
        logs.update({key: sum(v) / len(v) for key, v in self.constraint_terms.items()})
        self.constraint_terms.clear()
        super().log(logs, start_time)


class TRLAgent(Agent):
    """Base of the agents whose training loop is a TRL trainer (set `self.trainer` with `make_trainer`).

    Constraints act after each optimizer step (`after_step`) and add their `loss(agent, None)` to TRL's loss; one
    that needs the batch or the reference log-probs is refused. `trl_args` are further TRL config fields.
    `output_dir` holds the trainer's latest checkpoint between `learn()` calls (default: a temporary directory
    removed with the agent).
    """

    trainer: transformers.Trainer
    config_arguments: ClassVar[dict[str, str]] = {}  # config fields set from an argument of another name

    def __init__(
        self,
        env: gym.Env | gym.vector.VectorEnv,
        policy: str | Path | None = None,
        *,
        probe_prompts: int | None = None,
        output_dir: str | Path | None = None,
        constraints: Sequence[Constraint] = (),
        trl_args: dict[str, Any] | None = None,
        seed: int = 0,
        device: str = "cpu",
        mixed_precision: str = "no",
    ) -> None:
        for c in constraints:
            needs = [f"{flag}=True" for flag in ("needs_batch", "needs_reference") if getattr(c, flag, False)]
            if needs:
                raise ValueError(
                    f"constraint {type(c).__name__} has {' and '.join(needs)}, which "
                    f"{type(self).__name__} cannot serve: TRL computes the loss, so a constraint's loss "
                    "gets batch=None (no samples, no reference log-probs); use a constraint whose loss "
                    "reads only the agent, e.g. its weights"
                )
        self.trl_args = self._check_trl_args(trl_args)
        self.probe_prompts = self._probe_size(env, probe_prompts)
        super().__init__(env, policy, constraints, seed, device, mixed_precision)
        if output_dir is None:
            output_dir = tempfile.mkdtemp(prefix="rlft-gym-trl-")
            weakref.finalize(self, shutil.rmtree, output_dir, ignore_errors=True)
        self.output_dir = Path(output_dir)
        self.checkpoint: Path | None = None  # the Trainer checkpoint the next learn() resumes from
        self._failure: str | None = (
            None  # why learn() can no longer go on, after a failure with no checkpoint to fall back to
        )
        self._reporter = _StepReporter(self)

    @staticmethod
    def _check_trl_args(trl_args: dict[str, Any] | None) -> dict[str, Any]:
        """`trl_args` ({} for None) as `load` rebuilds it: a dict of JSON values, saved with the hyperparameters."""
        if trl_args is None:
            return {}
        if isinstance(trl_args, dict) and all(isinstance(k, str) for k in trl_args):
            with contextlib.suppress(TypeError, ValueError):
                return json.loads(json.dumps(trl_args))
        raise ValueError(
            f"trl_args={trl_args!r} must be a dict of TRL config fields with JSON values (it is saved with the agent)"
        )

    @staticmethod
    def _probe_size(env: gym.Env | gym.vector.VectorEnv, probe_prompts: int | None) -> int:
        """Default: 8 prompts on a single env, one batch of `num_envs` on a vector env (it scores whole batches)."""
        vector = isinstance(env.unwrapped, gym.vector.VectorEnv)
        if probe_prompts is None:
            return env.num_envs if vector else 8
        require_int(0, probe_prompts=probe_prompts)
        if vector and probe_prompts % env.num_envs:
            raise ValueError(
                f"probe_prompts={probe_prompts} is not a multiple of num_envs={env.num_envs}: a vector env scores "
                f"whole batches; pass 0, a multiple of {env.num_envs}, or make the env with num_envs={probe_prompts}"
            )
        return probe_prompts

    def make_trainer(
        self,
        trainer_cls: type[transformers.Trainer],
        config_cls: type[transformers.TrainingArguments],
        config: dict[str, Any],
        **trainer_kwargs: Any,
    ) -> transformers.Trainer:
        """Build a TRL trainer on this agent's policy, with its constraints in the loss, from the shared settings, the
        algorithm's `config` fields (`per_device_train_batch_size`: the batch per optimizer step) and `trl_args`."""
        fixed = dict(
            output_dir=str(self.output_dir),
            max_steps=1,
            save_strategy="no",
            save_total_limit=1,
            logging_steps=1,
            logging_nan_inf_filter=False,
            disable_tqdm=True,
            seed=self.seed,
            lr_scheduler_type="constant",
            warmup_steps=0,
            use_cpu=self.device == "cpu",
            bf16=self.mixed_precision == "bf16",
            fp16=self.mixed_precision == "fp16",
            **config,
        )
        settings = dict(
            report_to="none",
            weight_decay=0.0,
            gradient_accumulation_steps=1,
            activation_checkpointing=False,
            dataloader_num_workers=0,
        )
        settings.update(self._config_args(config_cls, fixed))
        fixed["per_device_train_batch_size"] = self._micro_batch(
            fixed["per_device_train_batch_size"], settings["gradient_accumulation_steps"]
        )
        args = config_cls(**fixed, **settings)
        with quiet():
            trainer = type(trainer_cls.__name__, (_ConstraintLoss, trainer_cls), {})(
                model=self.policy,
                args=args,
                processing_class=copy.deepcopy(self.tokenizer),
                callbacks=[self._reporter],
                agent=self,
                **trainer_kwargs,
            )
        trainer.remove_callback(PrinterCallback)  # with tqdm disabled it prints every log dict
        trainer.remove_callback(ProgressCallback)
        return trainer

    def _config_args(self, config_cls: type[transformers.TrainingArguments], fixed: dict[str, Any]) -> dict[str, Any]:
        """`trl_args` as config fields (deprecated aliases renamed); one error for a field `config_cls` lacks or one
        the agent sets itself (`fixed`), naming the agent's argument to pass instead."""
        fields = {f.name for f in dataclasses.fields(config_cls)}
        name = type(self).__name__
        for key in self.trl_args:
            field = ALIASES.get(key, key)
            if key not in fields:
                raise ValueError(
                    f"trl_args has {key!r}, which is not a field of trl.{config_cls.__name__} (see its "
                    "documentation for the fields)"
                )
            if field in fixed:
                arg = {**ARGUMENT_FIELDS, **self.config_arguments}.get(field, field)
                if arg in inspect.signature(type(self)).parameters:
                    raise ValueError(
                        f"trl_args has {key!r}, which {name} sets from its argument {arg}; pass "
                        f"{name}({arg}=...) instead"
                    )
                raise ValueError(
                    f"trl_args has {key!r}, which {name} fixes ({field}={fixed[field]!r}): learn() and "
                    "the reported hyperparameters rely on it"
                )
        return {ALIASES.get(k, k): v for k, v in self.trl_args.items()}

    def _micro_batch(self, batch: int, steps: int) -> int:
        """Examples per micro-batch: the agent's batch per optimizer step, split evenly over `steps` accumulations."""
        require_int(1, gradient_accumulation_steps=steps)
        if batch % steps:
            arg = self.config_arguments.get("per_device_train_batch_size", "per_device_train_batch_size")
            raise ValueError(
                f"gradient_accumulation_steps={steps} does not divide {type(self).__name__}'s {batch} "
                f"examples per optimizer step (set by {arg}); each step is split into equal micro-batches"
            )
        return batch // steps

    def train_step(self) -> StepReport:
        """TRL agents train through `learn`, which runs the trainer's own loop."""
        raise NotImplementedError(f"{type(self).__name__} steps inside trainer.train(); call learn(1)")

    def learn(
        self, total_steps: int, callback: Callback | Sequence[Callback] | None = None, progress_bar: bool = False
    ) -> TRLAgent:
        """Run the trainer for `total_steps` more optimizer steps, reporting each to `callback`; returns self."""
        if self._failure is not None:
            raise RuntimeError(self._failure)
        cb = self.start_learning(total_steps, callback, progress_bar)
        try:
            if total_steps:
                self._reporter.callback, self._reporter.until = cb, self.num_steps + total_steps
                self.trainer.args.max_steps = self.num_steps + total_steps
                try:
                    with quiet():
                        self.trainer.train(resume_from_checkpoint=str(self.checkpoint) if self.checkpoint else None)
                except BaseException:
                    self._fall_back()
                    raise
        finally:
            cb.on_training_end(self)
        return self

    def _fall_back(self) -> None:
        """The trainer's loop died mid-step: the next learn() resumes the last checkpoint (weights, optimizer, step
        count); with none yet, an agent that already took steps cannot be resumed exactly and refuses to go on."""
        if self.checkpoint is not None:
            self.num_steps = json.loads((self.checkpoint / TRAINER_STATE).read_text())["global_step"]
        elif self.num_steps:
            self._failure = (
                f"{type(self).__name__}.learn() failed at step {self.num_steps + 1}, before its first checkpoint; "
                "build a new agent (or save agents between learn() calls to resume from there)"
            )

    def step_report(self, step: int, logs: dict[str, float]) -> StepReport:
        """The report of one optimizer step: the trainer's loss, the env probe's reward, cost and KL, TRL's logs as
        extra."""
        reward, cost, kl = self.probe()
        extra = {k: float(v) for k, v in logs.items() if k != "loss" and isinstance(v, (int, float))}
        return StepReport(step=step, reward=reward, cost=cost, loss=float(logs["loss"]), kl=kl, extra=extra)

    def probe(self) -> tuple[float, float, float]:
        """Mean env reward, mean cost and per-token KL to the reference of one fresh sample on `probe_prompts`
        prompts."""
        if self.probe_prompts == 0:
            return math.nan, math.nan, math.nan
        ids = self.rng.integers(len(self.prompts), size=self.probe_prompts)
        chunk = self.env.num_envs if self.is_vector else len(ids)
        was_training = self.policy.training
        self.policy.eval()
        results = [
            self.env_feedback(ids[i : i + chunk], lambda p: self.sample_groups(p, 1, PROBE_TEMPERATURE))
            for i in range(0, len(ids), chunk)
        ]
        self.policy.train(was_training)
        rewards = np.concatenate([r for _, r, _ in results])
        costs = np.concatenate([c for _, _, c in results])
        kls = [self.kl_to_reference(rollout) for rollout, _, _ in results]
        return float(rewards.mean()), float(costs.mean()), float(np.mean(kls))

    @torch.no_grad()
    def kl_to_reference(self, rollout: generation.Rollout) -> float:
        """Mean over response tokens of log pi(y_t) - log pi_ref(y_t), an unbiased estimate of KL(pi || pi_ref) per
        token."""
        was_training = self.policy.training
        self.policy.eval()
        with self.accelerator.autocast():
            logp = generation.response_logprobs(self.policy, rollout)
            ref_logp = generation.response_logprobs(self.reference, rollout)
        self.policy.train(was_training)
        mask = rollout.response_mask.float()
        return float(((logp - ref_logp) * mask).sum() / mask.sum().clamp_min(1))

    def write_checkpoint(self, path: Path) -> None:
        """The trainer's latest checkpoint (optimizer.pt, scheduler.pt, rng_state.pth, trainer_state.json, ...) plus
        the base checkpoint (policy, tokenizer, agent.json, the agent's own random streams for the probe)."""
        if self.checkpoint is not None:
            shutil.copytree(self.checkpoint, path, dirs_exist_ok=True)
        super().write_checkpoint(path)

    def restore(self, path: Path) -> None:
        """Restore the agent's random streams; the next `learn()` resumes the trainer from the checkpoint at `path`."""
        super().restore(path)
        self.checkpoint = path if (path / TRAINER_STATE).is_file() else None
