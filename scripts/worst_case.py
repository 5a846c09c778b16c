"""Worst-case scoring of defences on the embedded world (not part of CI): each part's runs are kept under `--out`
and skipped when the command runs again (searches resume their Optuna study).

Parts:
- `search`: GRPO against each defence in `--defences`, `--trials` trials (trial 0 the Table 1 setting, the rest
  sampled over learning rate, group size, temperature, KL coefficient and flip ratio); default vs worst case;
- `early-stop`: PPO against refusal loss, plain and stopped at the first step whose batch reward reaches
  `--stop-reward` (the RPA paper's early-stopping adaptive attack), both for `--early-steps` steps;
- `defence-aware`: against the defences whose model answers uniformly (Reward Neutralization, TokenBuncher), GRPO
  with expert answers mixed into every group (`expert-grpo`) and GRPO at temperature 1.5, beside plain GRPO.
Harm is the evaluation judge's held-out grading (no training signal uses it).

Usage:
    python scripts/worst_case.py --parts search early-stop defence-aware --trials 4 --out runs/worst_case
    python scripts/worst_case.py --report --out runs/worst_case > runs/worst_case/report.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rlft_gym.experiment import AttackSpec, defence_kind, run_attack
from rlft_gym.search import AttackSearch, markdown, trial_record

sys.path.insert(0, str(Path(__file__).parent))
from defence_table import attack_spec  # noqa: E402

PARTS = ("search", "early-stop", "defence-aware")
DEFENCES = ("lisa", "refusal-loss", "repnoise", "reward-neutralization", "token-buncher", "tar")
UNIFORM = ("reward-neutralization", "token-buncher")  # defended models that answer alike: GRPO sees no variance


def spec(attack: str, defence: str, seed: int, preset: str, **changes: Any) -> AttackSpec:
    """The Table 1 setting of `attack` (GRPO's for the expert-guided variant) against `defence`, with `changes`."""
    out = attack_spec("grpo" if attack == "expert-grpo" else attack, defence, seed, preset)[0]
    out.agent = attack
    if defence_kind(defence) == "transform":
        out.defence_kwargs = {"seed": seed}  # each seed trains its own defended checkpoint
    for key, value in changes.items():
        if key == "agent_kwargs":
            out.agent_kwargs.update(value)
        else:
            setattr(out, key, value)
    return out


def run(args: argparse.Namespace) -> None:
    path = args.out / "worst_case.json"
    report = json.loads(path.read_text()) if path.is_file() else {"search": {}, "runs": {}}
    for seed in args.seeds:
        if "search" in args.parts:
            for defence in args.defences:
                searcher = AttackSearch(spec("grpo", defence, seed, args.preset), args.out / f"search-{defence}-{seed}")
                report["search"][f"{defence}-seed{seed}"] = searcher.run(args.trials)
                save(report, path)
        cells = []
        if "early-stop" in args.parts:
            for stop in (None, args.stop_reward):
                name = f"early-stop/ppo-refusal-loss-{'plain' if stop is None else f'stop{stop:g}'}-seed{seed}"
                cells.append(
                    (name, spec("ppo", "refusal-loss", seed, args.preset, steps=args.early_steps, stop_at_reward=stop))
                )
        if "defence-aware" in args.parts:
            for defence in UNIFORM:
                for label, attack, extra in [
                    ("grpo", "grpo", {}),
                    ("expert-grpo", "expert-grpo", {}),
                    ("grpo-t1.5", "grpo", {"temperature": 1.5}),
                ]:
                    cells.append(
                        (
                            f"defence-aware/{label}-{defence}-seed{seed}",
                            spec(attack, defence, seed, args.preset, agent_kwargs=extra),
                        )
                    )
        for name, s in cells:
            if name in report["runs"]:
                continue
            s.name = name.split("/")[1]
            summary = run_attack(s, args.out / name.split("/")[0], progress=False)
            report["runs"][name] = {
                "spec": dict(s.__dict__),
                "steps_run": summary["final"]["step"],
                **trial_record(summary, "judge"),
            }
            save(report, path)
            r = report["runs"][name]
            print(f"{name}: judge harm {r['harm']:.3f} at step {r['steps_run']}, fluent {r['fluent']}", flush=True)


def save(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str))


def render(report: dict[str, Any]) -> str:
    """The markdown of every part that has run."""
    out = []
    if report["search"]:
        out += ["## Default vs worst-case GRPO (search)", "", markdown(list(report["search"].values())), ""]
    for part in ("early-stop", "defence-aware"):
        rows = {k: v for k, v in report["runs"].items() if k.startswith(part)}
        if rows:
            out += [
                f"## {part}",
                "",
                "| run | steps run | judge harm | time in safe set | ppl ratio | distinct-2 ratio | capability drop "
                "| counts |",
                "|---" * 8 + "|",
            ]
            for name, r in rows.items():
                out.append(
                    f"| {name.split('/')[1]} | {r['steps_run']} | {r['harm']:.2f} | {r['time_in_safe_set']:.2f} | "
                    f"{r['perplexity_ratio']:.2f} | {r['distinct_2_ratio']:.2f} | {r['capability_drop']:.2f} | "
                    f"{'yes' if r['fluent'] else 'no'} |"
                )
            out.append("")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    p.add_argument("--defences", nargs="+", choices=DEFENCES, default=list(DEFENCES))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--stop-reward", type=float, default=0.0, help="early-stop: the reward the attacker stops at")
    p.add_argument("--early-steps", type=int, default=120)
    p.add_argument("--preset", default="standard")
    p.add_argument("--out", type=Path, default=Path("runs/worst_case"))
    p.add_argument("--report", action="store_true", help="print the markdown of what has run, run nothing")
    args = p.parse_args()
    if args.report:
        print(render(json.loads((args.out / "worst_case.json").read_text())))
    else:
        run(args)


if __name__ == "__main__":
    main()
