"""The TensorBoard and W&B (offline) loggers: a short attack through `run_attack` writes every step's OmniSafe-named
scalars, equal to the StepReports, and the monitor's held-out eval rows; a Lagrangian agent's multiplier arrives as
`Metrics/LagrangeMultiplier`; a missing package is one clear ImportError naming the extra."""

from __future__ import annotations

import json
import re
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import Recorder

from rlft_gym import experiment
from rlft_gym.callbacks import StepReport
from rlft_gym.loggers import TensorBoardLogger, WandbLogger, eval_metrics, step_metrics

torch.set_num_threads(1)

STEPS = 3
TRAIN_KEYS = {"Metrics/EpRet", "Metrics/EpCost", "Loss/Loss", "Train/KL"}


def offline_wandb(mp: pytest.MonkeyPatch, root: Path) -> None:
    """wandb offline and quiet, its run, cache (wandb-core's debug logs), config and data dirs under `root`."""
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        mp.setenv(var, str(root / var.lower()))


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    offline_wandb(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def attack(world, tmp_path_factory):
    """One short GRPO attack through `run_attack` with both loggers and a recorder; the loggers get the run's monitor
    from `run_attack` (eval every 2 steps: rows at steps 0, 2 and the final 3)."""
    root = tmp_path_factory.mktemp("loggers")
    spec = experiment.AttackSpec(
        steps=STEPS,
        num_envs=4,
        eval_every=2,
        env_kwargs={"max_new_tokens": 8, "world_preset": "tiny"},
        agent_kwargs={"group_size": 2},
    )
    rec = Recorder()
    tb = TensorBoardLogger(root / "tb", config={"spec": spec.name})
    with pytest.MonkeyPatch.context() as mp:
        offline_wandb(mp, root)
        wb = WandbLogger(project="rlft-gym-test", dir=root / "wandb", config={"spec": spec.name})
        summary = experiment.run_attack(spec, root / "runs", progress=False, callbacks=[rec, tb, wb])
    return {"root": root, "reports": rec.reports, "history": summary["history"], "tb": tb, "wb": wb}


def scalars(log_dir: Path) -> tuple[dict[str, dict[int, float]], Any]:
    """Every scalar of the event files under `log_dir` as {tag: {step: value}}, and the accumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}, acc


def wandb_records(run_dir: Path) -> list[Any]:
    """The records of an offline run's transaction log (`run-<id>.wandb`): LevelDB log framing (32 KiB blocks of
    records with a 7-byte header: crc, length, type), after a 7-byte file header, each record a wandb `Record`.
    The wandb service is shut down first, so whatever it still holds of the finished run is on disk (one CI run read
    no history rows from this file; not reproduced since)."""
    import wandb
    from wandb.proto import wandb_internal_pb2 as pb

    wandb.teardown()
    (path,) = run_dir.glob("run-*.wandb")
    data, block, pos, chunks, records = path.read_bytes(), 32768, 7, [], []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        room = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7]) if room >= 7 else (0, 0, 0)
        if room < 7 or (length == 0 and kind == 0):  # block trailer / zero padding
            pos += room
            continue
        chunks.append(data[pos + 7 : pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):  # a FULL record, or the LAST chunk of one
            record = pb.Record()
            record.ParseFromString(b"".join(chunks))
            records.append(record)
            chunks = []
    return records


def history_rows(records: list[Any]) -> dict[int, dict[str, Any]]:
    rows = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
            rows[row["_step"]] = row
    return rows


def test_tensorboard_logs_each_step_and_eval_row(attack):
    tags, acc = scalars(attack["root"] / "tb")
    reports, history = attack["reports"], attack["history"]
    assert [r.step for r in reports] == [1, 2, 3] and [h["step"] for h in history] == [0, 2, 3]
    for r in reports:
        for key, value in step_metrics(r).items():
            assert tags[key][r.step] == pytest.approx(value, rel=1e-6, abs=1e-6), key
    r = reports[-1]
    assert tags["Metrics/EpRet"][3] == pytest.approx(r.reward, rel=1e-6, abs=1e-6)
    assert tags["Metrics/EpCost"][3] == pytest.approx(r.cost, rel=1e-6, abs=1e-6)
    assert tags["Loss/Loss"][3] == pytest.approx(r.loss, rel=1e-6, abs=1e-6)
    assert tags["Train/KL"][3] == pytest.approx(r.kl, rel=1e-6, abs=1e-6)
    assert "Train/length" in tags and set(tags["Train/length"]) == {1, 2, 3}  # GRPO's extras
    # the held-out rows under OmniSafe's test names, and the monitor's own keys under Eval/
    for row in history:
        assert tags["Metrics/TestEpRet"][row["step"]] == pytest.approx(row["Metrics/EpRet"], rel=1e-6, abs=1e-6)
        assert tags["Metrics/TestEpCost"][row["step"]] == pytest.approx(row["Metrics/EpCost"], rel=1e-6, abs=1e-6)
        assert tags["Eval/harmfulness"][row["step"]] == pytest.approx(row["harmfulness"], rel=1e-6, abs=1e-6)
    assert set(tags["Metrics/EpRet"]) == {1, 2, 3} and "Eval/Metrics/EpRet" not in tags and "Eval/step" not in tags
    # the hyperparameters, once: as JSON text and as the HParams plugin's session
    (event,) = acc.Tensors("hyperparameters/text_summary")
    hp = json.loads(event.tensor_proto.string_val[0].decode())
    assert hp["agent"] == "GRPO" and hp["group_size"] == 2 and hp["spec"] == "grpo-none"
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(acc.PluginTagToContent("hparams"))
    assert attack["tb"].writer is None  # closed at the end of training


def test_wandb_offline_run_has_the_history_and_config(attack):
    wb = attack["wb"]
    run_dir = Path(wb.run.dir).parent
    assert run_dir.name.startswith("offline-run-") and run_dir.parent == attack["root"] / "wandb" / "wandb"
    records = wandb_records(run_dir)
    rows = history_rows(records)
    assert sorted(rows) == [0, 1, 2, 3]
    for r in attack["reports"]:
        for key, value in step_metrics(r).items():
            assert rows[r.step][key] == pytest.approx(value, rel=1e-6, abs=1e-6), key
    for row in attack["history"]:  # a step's train and eval scalars share one history row
        for key, value in eval_metrics(row).items():
            assert rows[row["step"]][key] == pytest.approx(value, rel=1e-6, abs=1e-6), key
    assert TRAIN_KEYS <= set(rows[2]) and "Metrics/TestEpRet" in rows[2] and not TRAIN_KEYS & set(rows[0])
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["agent"] == "GRPO" and config["group_size"] == 2 and config["spec"] == "grpo-none"


class FakeLagrangianAgent:
    """What a logger reads of an agent, with a Lagrangian agent's reports."""

    num_steps, seed, policy, reference, max_new_tokens = 0, 0, None, None, 8

    def hyperparameters(self) -> dict[str, Any]:
        return {"lagrangian": "pid", "pid_kwargs": {"pid_kp": 0.1}, "cost_limit": 0.2, "scheduler": None}


def lagrangian_reports() -> list[StepReport]:
    return [
        StepReport(step=s, reward=0.1 * s, cost=0.5, loss=-1.0, kl=0.01 * s, extra={"LagrangeMultiplier": 0.25 * s})
        for s in (1, 2)
    ]


def drive(logger, reports: list[StepReport]) -> None:
    agent = FakeLagrangianAgent()
    logger.on_training_start(agent, len(reports))
    for r in reports:
        logger.on_step(agent, r)
    logger.on_training_end(agent)


def test_lagrange_multiplier_reaches_both_loggers(tmp_path):
    reports = lagrangian_reports()
    assert step_metrics(reports[1]) == {
        "Metrics/EpRet": 0.2,
        "Metrics/EpCost": 0.5,
        "Loss/Loss": -1.0,
        "Train/KL": 0.02,
        "Metrics/LagrangeMultiplier": 0.5,
    }
    drive(TensorBoardLogger(tmp_path / "tb"), reports)
    tags, _ = scalars(tmp_path / "tb")
    assert tags["Metrics/LagrangeMultiplier"] == {1: 0.25, 2: 0.5} and "Train/LagrangeMultiplier" not in tags
    wb = WandbLogger(project="rlft-gym-test", dir=tmp_path / "wb")
    drive(wb, reports)
    rows = history_rows(wandb_records(Path(wb.run.dir).parent))
    assert {s: row["Metrics/LagrangeMultiplier"] for s, row in rows.items()} == {1: 0.25, 2: 0.5}


def test_eval_metrics_keys():
    row = {"type": "eval", "step": 4, "Metrics/EpRet": 1.0, "Metrics/EpCost": 0.1, "harmfulness": 0.3}
    row |= {"oracle_harm": None, "samples": [{"prompt": "p"}], "length": 7}
    assert eval_metrics(row) == {
        "Metrics/TestEpRet": 1.0,
        "Metrics/TestEpCost": 0.1,
        "Eval/harmfulness": 0.3,
        "Eval/length": 7.0,
    }


@pytest.mark.parametrize(
    "blocked, build, extra",
    [
        (("torch.utils.tensorboard", "tensorboard"), lambda p: TensorBoardLogger(p), "rlft-gym[tensorboard]"),
        (("wandb",), lambda p: WandbLogger(dir=p), "rlft-gym[wandb]"),
    ],
)
def test_missing_package_is_one_clear_import_error(tmp_path, monkeypatch, blocked, build, extra):
    for name in blocked:
        monkeypatch.setitem(sys.modules, name, None)  # importing it raises ImportError, as if not installed
    with pytest.raises(ImportError, match=re.escape(f"pip install {extra}")):
        build(tmp_path)


def test_attack_cli_logger_flag_writes_tensorboard_events(world, tmp_path):
    from rlft_gym.cli import main

    argv = [
        "attack",
        "--preset",
        "tiny",
        "--steps",
        "2",
        "--num-envs",
        "4",
        "--eval-every",
        "2",
        "--set",
        "group_size=2",
    ]
    assert main([*argv, "--logger", "tensorboard", "--out", str(tmp_path)]) == 0
    tags, _ = scalars(tmp_path / "tensorboard" / "grpo-none")
    assert set(tags["Metrics/EpRet"]) == {1, 2} and set(tags["Metrics/TestEpCost"]) == {0, 2}
