"""The RPA paper's Table 1 on the embedded world: each attack takes the aligned policy out of the safe set.

Runs every agent in `SETTINGS` (undefended, flip_ratio 1.0, standard world) on several seeds under the safe-set
monitor, prints a markdown table and writes `<out>/table1.json`; `tests/test_table1.py` (marked slow) asserts the
shape on its output. Minutes per run on 2 CPU cores; not part of CI.
Usage: python scripts/table1.py --agents sft dpo ppo grpo trl-grpo --seeds 0 1 2 --out runs/table1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rlft_gym.bench import ATTACK_SETTINGS
from rlft_gym.experiment import AttackSpec, run_attack
from rlft_gym.worlds import load_world

SETTINGS = ATTACK_SETTINGS  # per attack: steps, batch (num_envs), eval interval, hyperparameters


def table1(
    agents: list[str], seeds: list[int], out: Path, preset: str = "standard", eval_every: int = 10
) -> dict[str, Any]:
    """Run each agent on each seed; return (and write) the per-run safe-set summaries."""
    unknown = sorted(set(agents) - set(SETTINGS))
    if unknown:
        raise ValueError(f"agents {unknown} have no Table 1 settings; known: {sorted(SETTINGS)}")
    world = load_world("embedded", preset=preset)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "table1.json"
    report = json.loads(path.read_text()) if path.is_file() else {"runs": []}
    report.update(world_fingerprint=world.fingerprint, preset=preset)
    for agent in agents:
        settings = SETTINGS[agent]
        for seed in seeds:
            name = f"{agent}-seed{seed}"
            spec = AttackSpec(
                agent=agent,
                steps=settings["steps"],
                seed=seed,
                num_envs=settings["num_envs"],
                eval_every=eval_every,
                name=name,
                env_kwargs={"flip_ratio": 1.0, "world_preset": preset},
                agent_kwargs=dict(settings["agent_kwargs"]),
            )
            t0 = time.perf_counter()
            s = run_attack(spec, out, progress=False)
            run = {
                "agent": agent,
                "seed": seed,
                "steps": settings["steps"],
                "num_envs": settings["num_envs"],
                "agent_kwargs": settings["agent_kwargs"],
                "wall_s": round(time.perf_counter() - t0, 1),
                "curve": [(h["step"], round(h["harmfulness"], 3)) for h in s["history"]],
                **{k: v for k, v in s.items() if k != "history"},
            }
            report["runs"] = [r for r in report["runs"] if (r["agent"], r["seed"]) != (agent, seed)] + [run]
            path.write_text(json.dumps(report, indent=2, default=str))  # after every run: a long job keeps what it did
            print(row(run), flush=True)
    return report


def row(run: dict[str, Any]) -> str:
    """One markdown table row: agent, seed, harm before / after, first breach, time in the safe set, wall time."""
    i, f = run["initial"], run["final"]
    return (
        f"| {run['agent']} | {run['seed']} | {i['harmfulness']:.3f} | {f['harmfulness']:.3f} (step {f['step']}) | "
        f"{run['first_breach_step'] if run['first_breach_step'] is not None else 'never'} | "
        f"{run['time_in_safe_set']:.2f} | "
        f"{i['helpfulness']:.2f} -> {f['helpfulness']:.2f} | {run['wall_s'] / 60:.1f} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=Path("runs/table1"))
    args = p.parse_args()
    print("| attack | seed | harm before | harm after | first breach | time in safe set | helpfulness | minutes |")
    print("|---|---|---|---|---|---|---|---|")
    table1(args.agents, args.seeds, args.out)


if __name__ == "__main__":
    main()
