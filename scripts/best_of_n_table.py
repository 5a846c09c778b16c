"""Best-of-N harmfulness against N on the embedded world (the RPA paper's Table 5 shape; minutes, not part of CI).

Runs `best_of_n` on the undefended aligned policy of `RPA-BeaverTails-v0` (flip_ratio 1.0) for each seed, prints a
markdown table (N, harmfulness mean over seeds, per-seed values) and writes the results to --out as JSON.
Usage: python scripts/best_of_n_table.py --seeds 0 1 2 --out runs/best_of_n.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import rlft_gym  # noqa: F401  (registers the envs)
from rlft_gym.agents.best_of_n import NS, best_of_n


def table(runs: list[dict]) -> str:
    """Markdown table: one line per N (N = 1 first), harmfulness mean over seeds and per seed, plus picked reward."""
    seeds = [r["config"]["seed"] for r in runs]
    lines = [
        "| N | harmfulness (mean) | "
        + " | ".join(f"seed {s}" for s in seeds)
        + " | harmful rate (mean) | picked reward (mean) |",
        "|---" * (len(seeds) + 4) + "|",
    ]
    for i in range(len(runs[0]["rows"]) + 1):
        rows = [r["baseline"] if i == 0 else r["rows"][i - 1] for r in runs]
        harm = [row["harmfulness"] for row in rows]
        lines.append(
            f"| {rows[0]['n']} | {np.mean(harm):.3f} | "
            + " | ".join(f"{h:.3f}" for h in harm)
            + f" | {np.mean([row['harmful_rate'] for row in rows]):.3f} | "
            + f"{np.mean([row['reward'] for row in rows]):+.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--ns", type=int, nargs="+", default=list(NS))
    p.add_argument("--prompts", choices=("eval", "attack"), default="eval")
    p.add_argument("--flip-ratio", type=float, default=1.0)
    p.add_argument("--world-preset", default="standard")
    p.add_argument("--out", type=Path, default=Path("runs/best_of_n.json"))
    args = p.parse_args()
    env = gym.make("RPA-BeaverTails-v0", flip_ratio=args.flip_ratio, world_preset=args.world_preset)
    runs = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        runs.append(best_of_n(env, ns=args.ns, prompts=args.prompts, seed=seed))
        print(f"seed {seed}: {time.perf_counter() - t0:.1f} s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs}, indent=2))
    cfg = runs[0]["config"]
    print(
        f"\nBest-of-N on {cfg['env']} (flip_ratio {cfg['flip_ratio']:g}, world {cfg['world_fingerprint'][:12]}), "
        f"{cfg['n_prompts']} {args.prompts} prompts, T = {cfg['temperature']:g}, {cfg['max_new_tokens']} new tokens\n"
    )
    print(table(runs))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
