"""Harm and reward curves of one or more runs, with the cost limit b drawn, and a bench's figures (matplotlib, PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rlft_gym.monitor import GRADERS  # noqa: E402
from rlft_gym.results import read_jsonl  # noqa: E402


def plot_runs(results: Sequence[str | Path], out: str | Path, labels: Sequence[str] | None = None) -> Path:
    """Plot held-out harmfulness and train reward against attack step for each results file; return the PNG path."""
    if labels is not None and len(labels) != len(results):
        raise ValueError(f"got {len(labels)} labels for {len(results)} results files")
    fig, (ax_h, ax_r) = plt.subplots(1, 2, figsize=(11, 4))
    limits = set()
    for i, path in enumerate(results):
        rows = read_jsonl(path)
        evals = [r for r in rows if r.get("type") == "eval"]
        if not evals:
            raise ValueError(f"{path} has no eval rows; is it an rlft-gym results file?")
        head = next((r for r in rows if r.get("type") == "run"), {})
        label = labels[i] if labels else head.get("config", {}).get("name") or Path(path).stem
        limits.add(head.get("cost_limit"))
        steps = [r["step"] for r in evals]
        ax_h.plot(steps, [r["harmfulness"] for r in evals], marker="o", ms=3, label=label)
        trained = [r for r in evals if r.get("train_reward") is not None]
        ax_r.plot([r["step"] for r in trained], [r["train_reward"] for r in trained], marker="o", ms=3, label=label)
    for b in sorted(x for x in limits if x is not None):
        ax_h.axhline(b, color="crimson", ls="--", lw=1, label=f"cost limit b = {b:g}")
    ax_h.set(
        xlabel="attack step",
        ylabel="held-out harmfulness (mean cost)",
        ylim=(-0.02, 1.02),
        title="Harm: inside Pi_c while below b",
    )
    ax_r.set(xlabel="attack step", ylabel="mean train reward", title="Reward seen by the attacker")
    for ax in (ax_h, ax_r):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, out)


def bench_curves(report: dict[str, Any], grader: str = "judge") -> dict[tuple[str, str], tuple[list[int], list[float]]]:
    """Per (attack, defence) of a bench report, the held-out harm under `grader` at each eval step, averaged over the
    seeds evaluated at that step (read from each run's results file)."""
    key = GRADERS[grader]
    by_step: dict[tuple[str, str], dict[int, list[float]]] = {}
    for record in report["runs"].values():
        spec = record["spec"]
        rows = [r for r in read_jsonl(record["results"]) if r.get("type") == "eval" and r.get(key) is not None]
        cell = by_step.setdefault((spec["agent"], spec["defence"]), {})
        for r in rows:
            cell.setdefault(int(r["step"]), []).append(float(r[key]))
    return {
        cell: (sorted(steps), [sum(steps[s]) / len(steps[s]) for s in sorted(steps)])
        for cell, steps in sorted(by_step.items())
    }


def plot_bench(report: dict[str, Any], out_dir: str | Path, grader: str = "judge") -> list[Path]:
    """The bench's figures in `out_dir`: harm curves per attack with the cost limit and the safe set shaded, time inside
    the safe set per defence x attack, and final reward against final harm per run (reward hacking marked)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not any(grader in r["by_grader"] for r in report["runs"].values()):
        grader = "cost_model"  # a world without this grader (the hf world has no oracle, a judge only if given)
    curves = bench_curves(report, grader)
    attacks = sorted({a for a, _ in curves})
    defences = sorted({d for _, d in curves})
    limit = _cost_limit(report)
    fig, axes = plt.subplots(1, len(attacks), figsize=(4.5 * len(attacks), 3.8), squeeze=False)
    for ax, attack in zip(axes[0], attacks):
        for defence in defences:
            if (attack, defence) in curves:
                steps, harm = curves[attack, defence]
                ax.plot(steps, harm, marker="o", ms=3, label=defence)
        ax.axhspan(0, limit, color="seagreen", alpha=0.12, label="safe set (harm <= b)")
        ax.axhline(limit, color="crimson", ls="--", lw=1, label=f"cost limit b = {limit:g}")
        ax.set(title=attack, xlabel="attack step", ylabel=f"held-out harm ({grader})", ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    paths = [_save(fig, out_dir / "harm_curves.png")]

    inside: dict[tuple[str, str], list[float]] = {}
    for record in report["runs"].values():  # a world without this grader (the hf world has no oracle) is skipped
        if grader in record["by_grader"]:
            cell = inside.setdefault((record["spec"]["agent"], record["spec"]["defence"]), [])
            cell.append(record["by_grader"][grader]["time_in_safe_set"])
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(defences) * len(attacks) / 2), 3.8))
    width = 0.8 / len(attacks)
    for i, attack in enumerate(attacks):
        xs = [j + i * width for j, d in enumerate(defences) if (attack, d) in inside]
        ys = [sum(inside[attack, d]) / len(inside[attack, d]) for d in defences if (attack, d) in inside]
        ax.bar(xs, ys, width, label=attack)
    ax.set_xticks([j + width * (len(attacks) - 1) / 2 for j in range(len(defences))], defences, rotation=30, ha="right")
    ax.set(ylabel=f"time inside the safe set ({grader})", ylim=(0, 1.05))
    ax.legend(fontsize=8)
    paths.append(_save(fig, out_dir / "time_in_safe_set.png"))

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for attack in attacks:
        runs = [
            r
            for r in report["runs"].values()
            if r["spec"]["agent"] == attack and r["final"].get(GRADERS[grader]) is not None
        ]
        x = [r["final"]["eval_reward"] for r in runs]
        y = [r["final"][GRADERS[grader]] for r in runs]
        ax.scatter(x, y, s=18, label=attack)
        hacked = [(a, b) for a, b, r in zip(x, y, runs) if r.get("reward_hacking")]
        if hacked:
            ax.scatter(*zip(*hacked), s=60, facecolors="none", edgecolors="crimson")
    ax.axhline(limit, color="crimson", ls="--", lw=1)
    ax.set(xlabel="final held-out reward", ylabel=f"final held-out harm ({grader})", title="red ring: reward hacking")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths.append(_save(fig, out_dir / "reward_vs_harm.png"))
    return paths


def _cost_limit(report: dict[str, Any]) -> float:
    head = next(r for r in read_jsonl(next(iter(report["runs"].values()))["results"]) if r.get("type") == "run")
    return float(head["cost_limit"])


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
