"""DAI measurements (minutes; not CI): prints a markdown table and writes everything, curves included, to --out as JSON.

`pendulum`: for each seed, an SB3 actor-critic on Pendulum-v1, plain and as `dai(algorithm)` with each alpha(t) schedule
(alpha from 1 to 0 over --horizon env steps) and an imperfect swing-up expert. The learner's own deterministic policy
(no expert) is evaluated every --eval-every steps on the same fixed-seed episodes. Per run: the mean return of the
training episodes in the first --early-steps steps (the executed actions, expert included), the learner's mean eval
return over the checkpoints up to --early-steps, and its eval return at the end.

`attack`: GRPO and ExpertGuidedGRPO (default schedule and expert) on RPA-BeaverTails-v0, held-out harmfulness from the
safe-set monitor every --eval-every steps.

Usage: python scripts/dai_check.py pendulum --algo td3 --seeds 0 1 2 --out runs/dai_td3.json
       RLFT_GYM_HOME=... python scripts/dai_check.py attack --seeds 0 --steps 30 --out runs/dai_attack.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.noise import NormalActionNoise

import rlft_gym
from rlft_gym.agent import Agent
from rlft_gym.agents import GRPO, ExpertGuidedGRPO
from rlft_gym.agents.dai import SCHEDULES, AlphaSchedule, dai
from rlft_gym.callbacks import Callback, StepReport
from rlft_gym.monitor import SafeSetMonitor
from rlft_gym.results import versions

ALGOS = {"td3": TD3, "sac": SAC}
ENV_ID = "Pendulum-v1"
EVAL_SEED = 10_000  # eval episode i starts from reset(seed=EVAL_SEED + i), the same for every run


def swing_up(
    obs: np.ndarray, pump_gain: float = 0.02, kp: float = 10.0, kd: float = 2.0, catch: float = 0.6
) -> np.ndarray:
    """A hand-written Pendulum expert, decent but imperfect: energy pumping with a deliberately low gain (a slow
    swing-up) away from the top, a PD law within `catch` rad of upright. Batched: obs (n, 3) -> torque (n, 1) in
    [-2, 2].

    With unit mass and length, theta'' = 15 sin(theta) + 3 u (theta = 0 upright), so E = theta'^2 / 2 + 15 cos(theta) is
    15 at rest upright and dE/dt = 3 u theta': u = k (15 - E) theta' pumps E towards 15.
    """
    cos, sin, speed = obs[:, 0], obs[:, 1], obs[:, 2]
    angle = np.arctan2(sin, cos)
    energy = 0.5 * speed**2 + 15.0 * cos
    torque = np.where(np.abs(angle) < catch, -(kp * angle + kd * speed), pump_gain * (15.0 - energy) * speed)
    return np.clip(torque, -2.0, 2.0)[:, None]


def episode_returns(act, episodes: int) -> list[float]:
    """Returns of `act(obs batch) -> action batch` on the fixed eval episodes."""
    env, returns = gym.make(ENV_ID), []
    for i in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs[None])[0])
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


class Evaluate(BaseCallback):
    """Every `every` steps (and at step 0), the learner's own deterministic policy on the fixed eval episodes."""

    def __init__(self, every: int, episodes: int) -> None:
        super().__init__()
        self.every, self.episodes, self.curve = every, episodes, []

    def _evaluate(self) -> None:
        returns = episode_returns(lambda obs: self.model.predict(obs, deterministic=True)[0], self.episodes)
        self.curve.append({"step": self.num_timesteps, "return": float(np.mean(returns))})

    def _on_training_start(self) -> None:
        self._evaluate()

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every == 0:
            self._evaluate()
        return True


def build(algo: str, schedule: AlphaSchedule | None, seed: int, env: gym.Env) -> BaseAlgorithm:
    """Small nets and rl-zoo-like Pendulum settings (lr 1e-3, gamma 0.98); `schedule=None` is the plain algorithm."""
    cls = ALGOS[algo]
    kwargs: dict[str, Any] = {
        "learning_rate": 1e-3,
        "gamma": 0.98,
        "learning_starts": 100,
        "seed": seed,
        "device": "cpu",
        "policy_kwargs": {"net_arch": [64, 64]},
    }
    if algo == "td3":
        kwargs["action_noise"] = NormalActionNoise(np.zeros(1), 0.1 * np.ones(1))
    if schedule is not None:
        cls, kwargs = dai(cls), {**kwargs, "expert": swing_up, "schedule": schedule}
    model = cls("MlpPolicy", env, **kwargs)
    model.set_logger(Logger(None, []))  # quiet, and no log folder under /tmp
    return model


def run(algo: str, kind: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """One training run: the learner's eval curve, its training-episode returns and the wall time."""
    env = Monitor(gym.make(ENV_ID))
    schedule = None if kind == "none" else AlphaSchedule(args.horizon, kind)
    model, evaluate = build(algo, schedule, seed, env), Evaluate(args.eval_every, args.eval_episodes)
    t0 = time.perf_counter()
    model.learn(args.steps, callback=evaluate)
    wall = time.perf_counter() - t0
    ends = np.cumsum(env.get_episode_lengths())
    train = np.asarray(env.get_episode_rewards())
    early = [c["return"] for c in evaluate.curve if c["step"] <= args.early_steps]
    return {
        "algo": algo,
        "schedule": kind,
        "seed": seed,
        "wall_s": wall,
        "early_train_return": float(train[ends <= args.early_steps].mean()),
        "early_eval_return": float(np.mean(early)),
        "final_eval_return": evaluate.curve[-1]["return"],
        "curve": evaluate.curve,
        "train_returns": train.tolist(),
    }


def table(runs: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """Markdown: one line per schedule and metric, the mean over seeds and each seed's value."""
    seeds = sorted({r["seed"] for r in runs})
    metrics = (
        ("early_train_return", f"train return, first {args.early_steps} steps"),
        ("early_eval_return", f"learner eval, mean of checkpoints <= {args.early_steps}"),
        ("final_eval_return", f"learner eval at {args.steps}"),
    )
    lines = [
        f"| {runs[0]['algo'].upper()} + DAI schedule | metric | mean | "
        + " | ".join(f"seed {s}" for s in seeds)
        + " |",
        "|---" * (len(seeds) + 3) + "|",
    ]
    for kind in dict.fromkeys(r["schedule"] for r in runs):
        by_seed = {r["seed"]: r for r in runs if r["schedule"] == kind}
        for key, name in metrics:
            values = [by_seed[s][key] for s in seeds]
            lines.append(
                f"| {kind} | {name} | {np.mean(values):.0f} | " + " | ".join(f"{v:.0f}" for v in values) + " |"
            )
    return "\n".join(lines)


def pendulum(args: argparse.Namespace) -> None:
    """Every (seed, schedule) run on Pendulum-v1, the expert's own return for reference, the table and the JSON."""
    torch.set_num_threads(1)
    expert = episode_returns(swing_up, args.eval_episodes)
    print(
        f"expert alone on the eval episodes: mean return {np.mean(expert):.0f} (min {np.min(expert):.0f})", flush=True
    )
    runs, t0 = [], time.perf_counter()
    for seed in args.seeds:
        for kind in args.schedules:
            runs.append(run(args.algo, kind, seed, args))
            r = runs[-1]
            print(
                f"{args.algo} {kind:<6} seed {seed}: early train {r['early_train_return']:.0f}, early eval "
                f"{r['early_eval_return']:.0f}, final eval {r['final_eval_return']:.0f} ({r['wall_s']:.0f} s)",
                flush=True,
            )
    report = {
        "config": config(args, env=ENV_ID, eval_seed=EVAL_SEED),
        "expert_eval_returns": expert,
        "total_wall_s": time.perf_counter() - t0,
        "runs": runs,
    }
    write(args.out, report)
    print(
        f"\n{ENV_ID}, {args.steps} steps, alpha 1 -> 0 over {args.horizon} steps, expert alone {np.mean(expert):.0f}, "
        f"total {report['total_wall_s'] / 60:.1f} min\n"
    )
    print(table(runs, args))


class Reports(Callback):
    """Keeps every step report of an rlft-gym agent."""

    def __init__(self) -> None:
        self.reports: list[StepReport] = []

    def on_step(self, agent: Agent, report: StepReport) -> None:
        self.reports.append(report)


def attack(args: argparse.Namespace) -> None:
    """GRPO then ExpertGuidedGRPO for each seed under the safe-set monitor, the harm table and the JSON."""
    torch.set_num_threads(1)
    runs, t0 = [], time.perf_counter()
    for seed in args.seeds:
        for name, cls in (("GRPO", GRPO), ("ExpertGuidedGRPO", ExpertGuidedGRPO)):
            env = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=args.num_envs, world_preset=args.world_preset)
            agent, monitor, reports = (
                cls(env, seed=seed),
                SafeSetMonitor(env, every=args.eval_every, seed=seed),
                Reports(),
            )
            start = time.perf_counter()
            agent.learn(args.steps, callback=[monitor, reports])
            summary = monitor.summary()
            runs.append(
                {
                    "agent": name,
                    "seed": seed,
                    "wall_s": time.perf_counter() - start,
                    "hyperparameters": agent.hyperparameters(),
                    "world_fingerprint": agent.world.fingerprint,
                    "first_breach_step": summary["first_breach_step"],
                    "time_in_safe_set": summary["time_in_safe_set"],
                    "harm": [{"step": h["step"], "harmfulness": h["harmfulness"]} for h in monitor.history],
                    "train": [{"step": r.step, "reward": r.reward, "cost": r.cost, **r.extra} for r in reports.reports],
                }
            )
            print(
                f"{name} seed {seed}: harm {[round(h['harmfulness'], 3) for h in runs[-1]['harm']]}, "
                f"first breach {summary['first_breach_step']} ({runs[-1]['wall_s']:.0f} s)",
                flush=True,
            )
            env.close()
    write(args.out, {"config": config(args), "total_wall_s": time.perf_counter() - t0, "runs": runs})
    steps = [h["step"] for h in runs[0]["harm"]]
    print(f"\nheld-out harmfulness (mean P(harmful)), cost limit 0.2, world {runs[0]['world_fingerprint'][:12]}\n")
    print(
        "| agent | seed | "
        + " | ".join(f"step {s}" for s in steps)
        + " | first breach | train cost of own samples, steps 1-10 |"
    )
    print("|---" * (len(steps) + 4) + "|")
    for r in runs:
        own = [t.get("policy_cost", t["cost"]) for t in r["train"][:10]]
        print(
            f"| {r['agent']} | {r['seed']} | "
            + " | ".join(f"{h['harmfulness']:.3f}" for h in r["harm"])
            + f" | {r['first_breach_step']} | {np.mean(own):.3f} |"
        )


def config(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """The command's arguments and the package versions, for the JSON header."""
    return {
        **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "run"},
        **extra,
        "versions": versions(),
    }


def write(path: Path, report: dict[str, Any]) -> None:
    """The report as JSON at `path` (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=float))
    print(f"written to {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(required=True)
    c = sub.add_parser("pendulum", help="SB3 TD3 / SAC on Pendulum-v1 with and without DAI")
    c.set_defaults(run=pendulum)
    c.add_argument("--algo", choices=sorted(ALGOS), default="td3")
    c.add_argument("--schedules", nargs="+", choices=("none", *SCHEDULES), default=["none", *SCHEDULES])
    c.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    c.add_argument("--steps", type=int, default=10_000)
    c.add_argument("--horizon", type=int, default=5_000, help="env steps over which alpha decays from 1 to 0")
    c.add_argument("--early-steps", type=int, default=3_000)
    c.add_argument("--eval-every", type=int, default=1_000)
    c.add_argument("--eval-episodes", type=int, default=10)
    c.add_argument("--out", type=Path, default=Path("runs/dai_pendulum.json"))
    a = sub.add_parser("attack", help="GRPO vs ExpertGuidedGRPO on RPA-BeaverTails-v0")
    a.set_defaults(run=attack)
    a.add_argument("--seeds", type=int, nargs="+", default=[0])
    a.add_argument("--steps", type=int, default=30)
    a.add_argument("--eval-every", type=int, default=5)
    a.add_argument("--num-envs", type=int, default=128, help="16 prompts x GRPO's 8 samples, as in docs/science.md")
    a.add_argument("--world-preset", default="standard")
    a.add_argument("--out", type=Path, default=Path("runs/dai_attack.json"))
    args = p.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
