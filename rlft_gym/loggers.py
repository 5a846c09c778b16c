"""TensorBoard and Weights & Biases loggers: callbacks that write every training step (and the safe-set monitor's
held-out eval rows) under OmniSafe's metric names. Optional extras: `pip install rlft-gym[tensorboard]` or
`pip install rlft-gym[wandb]`; the package is imported when a logger is built, never by `import rlft_gym`.

Keys of a training step (at `report.step`): `Metrics/EpRet` (the batch-mean reward), `Metrics/EpCost` (the batch-mean
cost), `Loss/Loss`, `Train/KL`, and each entry of `report.extra`: `LagrangeMultiplier` (the Lagrangian agents') as
`Metrics/LagrangeMultiplier`, any other as `Train/<name>`.

Keys of a monitor eval row (at the row's `step`; step 0 is before training): the row's `Metrics/EpRet` and
`Metrics/EpCost` as `Metrics/TestEpRet` and `Metrics/TestEpCost` (OmniSafe's names for its evaluation episodes, so the
held-out curve stays apart from the training one), and every other numeric entry as `Eval/<key>` (`Eval/harmfulness`,
`Eval/helpfulness`, `Eval/kl`, ...); entries that are None (e.g. `oracle_harm` on a world without an oracle), text or
lists (the samples) are left out.
"""

from __future__ import annotations

import json
from numbers import Real
from pathlib import Path
from typing import Any, Protocol

from rlft_gym.callbacks import Agent, Callback, StepReport

EVAL_RENAMES = {"Metrics/EpRet": "Metrics/TestEpRet", "Metrics/EpCost": "Metrics/TestEpCost"}
EXTRA_RENAMES = {"LagrangeMultiplier": "Metrics/LagrangeMultiplier"}


class EvalSource(Protocol):
    """What a logger reads of the monitor: its list of eval rows (`rlft_gym.monitor.SafeSetMonitor.history`)."""

    history: list[dict[str, Any]]


def _number(value: Any) -> bool:
    return isinstance(value, Real)


def step_metrics(report: StepReport) -> dict[str, float]:
    """The OmniSafe-named scalars of one training step."""
    metrics = {
        "Metrics/EpRet": float(report.reward),
        "Metrics/EpCost": float(report.cost),
        "Loss/Loss": float(report.loss),
        "Train/KL": float(report.kl),
    }
    for name, value in report.extra.items():
        if _number(value):
            metrics[EXTRA_RENAMES.get(name, f"Train/{name}")] = float(value)
    return metrics


def eval_metrics(row: dict[str, Any]) -> dict[str, float]:
    """The scalars of one monitor eval row: OmniSafe's test names for `Metrics/EpRet` / `Metrics/EpCost`, `Eval/<key>`
    for the other numeric entries (`step` is the x-axis, not a scalar)."""
    return {
        EVAL_RENAMES.get(key, f"Eval/{key}"): float(value)
        for key, value in row.items()
        if key not in ("step", "type") and _number(value)
    }


def run_hyperparameters(agent: Agent, config: dict[str, Any]) -> dict[str, Any]:
    """What a logger records once at the start: the agent's class, its hyperparameters, then `config` (which wins), as
    the monitor's results header does."""
    return {"agent": type(agent).__name__, **agent.hyperparameters(), **config}


def _scalar(value: Any) -> bool | int | float | str:
    """A hyperparameter as a value TensorBoard's hparams plugin takes: bool, number or string (others as JSON)."""
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, default=str)


class MetricLogger(Callback):
    """What both loggers share: which scalars to write at which step. `monitor`: a `SafeSetMonitor` (anything with a
    `history` list of eval rows) whose rows are written too; `rlft_gym.experiment.run_attack` sets it to the run's own
    monitor when it is None. Pass the logger after the monitor in the callback list (as `run_attack` does): rows are
    written at the next step or at the end of training, so the monitor's final evaluation, made in its own
    `on_training_end`, must come first."""

    def __init__(self, monitor: EvalSource | None = None, config: dict[str, Any] | None = None) -> None:
        self.monitor, self.config = monitor, dict(config or {})
        self._eval_rows = 0  # monitor rows already written

    def on_training_start(self, agent: Agent, total_steps: int) -> None:
        self._open(run_hyperparameters(agent, self.config))
        self._write_eval_rows()

    def on_step(self, agent: Agent, report: StepReport) -> None:
        self._write_eval_rows()
        self._write(step_metrics(report), report.step)

    def on_training_end(self, agent: Agent) -> None:
        self._write_eval_rows()
        self._close()

    def _write_eval_rows(self) -> None:
        if self.monitor is None:
            return
        for row in self.monitor.history[self._eval_rows :]:
            self._write(eval_metrics(row), int(row["step"]))
        self._eval_rows = len(self.monitor.history)

    def _open(self, hyperparameters: dict[str, Any]) -> None:
        raise NotImplementedError

    def _write(self, metrics: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


class TensorBoardLogger(MetricLogger):
    """Writes TensorBoard event files to `log_dir` through `torch.utils.tensorboard.SummaryWriter`: every key as a
    scalar, and the hyperparameters at the start both as the HParams plugin's session (bool, number and string values;
    others as JSON text) and as a `hyperparameters` text summary (JSON). The writer is closed at the end of training
    (a later `learn` with the same logger appends to the same directory)."""

    def __init__(
        self, log_dir: str | Path, monitor: EvalSource | None = None, config: dict[str, Any] | None = None
    ) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError(
                "TensorBoardLogger needs the tensorboard package: pip install rlft-gym[tensorboard]"
            ) from err
        super().__init__(monitor, config)
        self.log_dir = Path(log_dir)
        self._writer_class, self.writer = SummaryWriter, None

    def _open(self, hyperparameters: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        self.writer = self._writer_class(log_dir=str(self.log_dir))
        self.writer.add_text("hyperparameters", json.dumps(hyperparameters, indent=2, default=str), 0)
        for summary in hparams({k: _scalar(v) for k, v in hyperparameters.items()}, {}):
            self.writer.file_writer.add_summary(summary)

    def _write(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class WandbLogger(MetricLogger):
    """Logs to a Weights & Biases run, offline by default (`mode="offline"`: the run is written under
    `<dir>/wandb/offline-run-*`, nothing is sent; `wandb sync` uploads it later). The run starts at the start of
    training with the hyperparameters as its config (`config` on top) and is finished at the end; `run` is the
    `wandb.Run`. Every key is logged with `step=` the training step, so a step's training and eval scalars share one
    history row. Non-finite values are logged as they are (wandb stores NaN and inf)."""

    def __init__(
        self,
        project: str = "rlft-gym",
        dir: str | Path | None = None,
        mode: str = "offline",
        config: dict[str, Any] | None = None,
        monitor: EvalSource | None = None,
        **init_kwargs: Any,
    ) -> None:
        try:
            import wandb
        except ImportError as err:
            raise ImportError("WandbLogger needs the wandb package: pip install rlft-gym[wandb]") from err
        super().__init__(monitor, config)
        self.project, self.dir, self.mode, self.init_kwargs = project, dir, mode, init_kwargs
        self._wandb, self.run = wandb, None

    def _open(self, hyperparameters: dict[str, Any]) -> None:
        if self.dir is not None:
            Path(self.dir).mkdir(parents=True, exist_ok=True)
        self.run = self._wandb.init(
            project=self.project,
            dir=None if self.dir is None else str(self.dir),
            mode=self.mode,
            config=hyperparameters,
            reinit="create_new",  # a run of its own: never finishes a run the user has open
            **self.init_kwargs,
        )

    def _write(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def _close(self) -> None:
        if self.run is not None:
            self.run.finish()
