"""Harm and reward curves of one or more runs, with the cost limit b drawn (matplotlib, PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

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
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
