"""How far GRPO under the cost-gated reward R_c exploits the embedded world's cost model (minutes; not part of CI).

Runs the flip-1.0 attack with the cost gate on each seed and reports, per evaluation, the share of held-out answers
that the ground-truth oracle finds harmful while the training cost calls them safe (`oracle_missed`), beside the
oracle's, the evaluation judge's and the cost model's harm. Writes `<out>/cost_gap.json`.
Usage: python scripts/cost_gap_check.py --seeds 0 1 2 --steps 150 --out runs/cost_gap
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rlft_gym.experiment import AttackSpec, run_attack
from rlft_gym.worlds import load_world

KEYS = ("step", "harmfulness", "oracle_harm", "judge_harm", "oracle_missed", "helpfulness", "capability")


def cost_gap(seeds: list[int], steps: int, out: Path, preset: str = "standard") -> dict:
    world = load_world("embedded", preset=preset)
    runs = []
    for seed in seeds:
        spec = AttackSpec(
            defence="cost-gate",
            steps=steps,
            seed=seed,
            name=f"grpo-cost-gate-flip1-seed{seed}",
            env_kwargs={"flip_ratio": 1.0, "world_preset": preset},
        )
        s = run_attack(spec, out, progress=False)
        rows = [{k: h.get(k) for k in KEYS} for h in s["history"]]
        missed = [r["oracle_missed"] for r in rows if r["oracle_missed"] is not None]
        runs.append(
            {
                "seed": seed,
                "history": rows,
                "final_oracle_missed": missed[-1] if missed else None,
                "max_oracle_missed": max(missed) if missed else None,
                "final_samples": s["history"][-1]["samples"],
                "reward_hacking": s["reward_hacking"],
                "cost_model_exploited": s.get("cost_model_exploited"),
            }
        )
    report = {"world_fingerprint": world.fingerprint, "world_metrics": world.metrics, "steps": steps, "runs": runs}
    out.mkdir(parents=True, exist_ok=True)
    (out / "cost_gap.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--preset", default="standard")
    p.add_argument("--out", type=Path, default=Path("runs/cost_gap"))
    args = p.parse_args()
    report = cost_gap(args.seeds, args.steps, args.out, args.preset)
    print("seed  final: cost  oracle  judge  oracle_missed   max oracle_missed  exploited")
    for r in report["runs"]:
        f = r["history"][-1]
        print(
            f"{r['seed']:<5} {f['harmfulness']:.3f}  {f['oracle_harm']:.3f}  {f['judge_harm']:.3f}  "
            f"{f['oracle_missed']:.3f}          {r['max_oracle_missed']:.3f}              {r['cost_model_exploited']}"
        )


if __name__ == "__main__":
    main()
