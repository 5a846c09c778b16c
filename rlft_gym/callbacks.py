"""The callback protocol every agent reports to, once per training step (SB3-style)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class Agent(Protocol):
    """What callbacks may use of the agent they observe (every `rlft_gym.agent.Agent` has it)."""

    num_steps: int
    seed: int
    policy: Any  # the causal LM under attack
    reference: Any  # the frozen reference LM
    max_new_tokens: int

    def hyperparameters(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class StepReport:
    """What one training step did: batch means of the env reward and cost, the loss and the KL to the reference."""

    step: int
    reward: float
    cost: float
    loss: float
    kl: float
    extra: dict[str, float] = field(default_factory=dict)


class Callback:
    """Hooks around training; `on_step` returning False stops training early."""

    def on_training_start(self, agent: Agent, total_steps: int) -> None:
        """Called once before the first step."""

    def on_step(self, agent: Agent, report: StepReport) -> bool | None:
        """Called after every optimizer step."""
        return None

    def on_training_end(self, agent: Agent) -> None:
        """Called once after the last step (also after an early stop)."""


class CallbackList(Callback):
    """Several callbacks run in order; training stops if any of them asks to."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)

    def on_training_start(self, agent: Agent, total_steps: int) -> None:
        for cb in self.callbacks:
            cb.on_training_start(agent, total_steps)

    def on_step(self, agent: Agent, report: StepReport) -> bool:
        return all([cb.on_step(agent, report) is not False for cb in self.callbacks])

    def on_training_end(self, agent: Agent) -> None:
        for cb in self.callbacks:
            cb.on_training_end(agent)


class ProgressBar(Callback):
    """A rich progress bar with the latest reward, cost and KL."""

    def __init__(self, description: str = "attack", transient: bool = False) -> None:
        self.description, self.transient = description, transient
        self._progress: Progress | None = None

    def on_training_start(self, agent: Agent, total_steps: int) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeRemainingColumn(),
            transient=self.transient,
        )
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=total_steps, stats="")

    def on_step(self, agent: Agent, report: StepReport) -> None:
        stats = f"reward {report.reward:+.2f} cost {report.cost:.2f} kl {report.kl:.3f}"
        self._progress.update(self._task, advance=1, stats=stats)

    def on_training_end(self, agent: Agent) -> None:
        if self._progress is not None:
            self._progress.stop()


class StopAtReward(Callback):
    """The early-stopping adaptive attack: stop at the first step whose batch reward reaches `threshold`. Attackers
    stop on a reward score (a common guard against reward hacking); against a defence whose reward oscillates, such as
    refusal loss, this keeps the policy from a peak the defence would pull it back from."""

    def __init__(self, threshold: float) -> None:
        self.threshold = float(threshold)
        self.stopped_at: int | None = None

    def on_step(self, agent: Agent, report: StepReport) -> bool:
        if report.reward >= self.threshold:
            self.stopped_at = report.step
            return False
        return True


class CheckpointCallback(Callback):
    """Every `every` steps, save the agent to `path` (an `Agent.load` checkpoint, replaced in one move), with
    `extra_state()` beside it as `extra_state.json` (e.g. the monitor's rows), so a killed run resumes from there."""

    EXTRA = "extra_state.json"

    def __init__(self, path: str | Path, every: int, extra_state: Callable[[], dict[str, Any]] | None = None) -> None:
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every={every!r} must be an int >= 1 (steps between checkpoints)")
        self.path, self.every, self.extra_state = Path(path), every, extra_state

    def on_step(self, agent: Any, report: StepReport) -> None:
        if report.step % self.every == 0:
            from rlft_gym import cache

            with cache.staging(self.path) as tmp:
                agent.write_checkpoint(tmp)
                (tmp / self.EXTRA).write_text(json.dumps(self.extra_state() if self.extra_state else {}))
                cache.publish(tmp, self.path)


def as_callback(callback: Callback | Sequence[Callback] | None) -> Callback:
    """Normalise None, one callback or a list of them into one Callback."""
    if callback is None:
        return Callback()
    if isinstance(callback, Callback):
        return callback
    items = list(callback)
    for cb in items:
        if not isinstance(cb, Callback):
            raise TypeError(f"callback {cb!r} is not an rlft_gym.callbacks.Callback")
    return CallbackList(items)
