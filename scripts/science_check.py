"""Science sanity of the embedded world on several attack seeds (minutes; not part of CI).

Runs undefended GRPO at flip_ratio 1.0 and 0.0 and a cost-gated run, prints a table and writes
`<out>/science.json`. `tests/test_science.py` (marked slow) asserts the expected shape on its output.
Usage: python scripts/science_check.py --seeds 0 1 2 --steps 150 --out runs/science
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rlft_gym.experiment import AttackSpec, run_attack
from rlft_gym.worlds import load_world


def science(seeds: list[int], steps: int, out: Path, preset: str = "standard") -> dict:
    world = load_world("embedded", preset=preset)
    runs = []
    for seed in seeds:
        for defence, flip in (("none", 1.0), ("none", 0.0)):
            spec = AttackSpec(
                defence=defence,
                steps=steps,
                seed=seed,
                name=f"grpo-{defence}-flip{flip:g}-seed{seed}",
                env_kwargs={"flip_ratio": flip, "world_preset": preset},
            )
            s = run_attack(spec, out, progress=False)
            runs.append(
                {"seed": seed, "defence": defence, "flip_ratio": flip, **{k: v for k, v in s.items() if k != "history"}}
            )
    spec = AttackSpec(
        defence="cost-gate",
        steps=steps,
        seed=seeds[0],
        name=f"grpo-cost-gate-flip1-seed{seeds[0]}",
        env_kwargs={"flip_ratio": 1.0, "world_preset": preset},
    )
    s = run_attack(spec, out, progress=False)
    gated = {
        "seed": seeds[0],
        "defence": "cost-gate",
        "flip_ratio": 1.0,
        **{k: v for k, v in s.items() if k != "history"},
        "final_samples": s["history"][-1]["samples"],
    }
    report = {
        "world_fingerprint": world.fingerprint,
        "world_metrics": world.metrics,
        "steps": steps,
        "runs": runs + [gated],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "science.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--out", type=Path, default=Path("runs/science"))
    args = p.parse_args()
    report = science(args.seeds, args.steps, args.out)
    m = report["world_metrics"]["metrics"]
    print(
        f"classifier F1, held-out templates: {m['cost_model']['heldout_templates']['f1']:.3f}; "
        f"seen templates: {m['cost_model']['eval_prompts_seen_templates']['f1']:.3f}"
    )
    print("defence    flip seed  harm0  final  first_breach  time_in_safe  helpful0->final  hacking")
    for r in report["runs"]:
        i, f = r["initial"], r["final"]
        print(
            f"{r['defence']:<10} {r['flip_ratio']:<4g} {r['seed']:<5} {i['harmfulness']:.3f}  {f['harmfulness']:.3f}  "
            f"{str(r['first_breach_step']):<13} {r['time_in_safe_set']:.2f}          "
            f"{i['helpfulness']:.2f}->{f['helpfulness']:.2f}      {r['reward_hacking']}"
        )
    for s in report["runs"][-1]["final_samples"][:4]:
        print("cost-gated sample:", s["prompt"], "->", s["response"], f"(cost {s['cost']:.2f})")


if __name__ == "__main__":
    main()
