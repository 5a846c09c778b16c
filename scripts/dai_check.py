"""DAI measurements (minutes; not CI): prints a markdown table and writes everything, curves included, to --out as JSON.

`pendulum`: for each seed, an SB3 actor-critic on Pendulum-v1, plain and as `dai(algorithm)` with each alpha(t) schedule
(alpha from 1 to 0 over --horizon env steps) and an imperfect swing-up expert. The learner's own deterministic policy
(no expert) is evaluated every --eval-every steps on the same fixed-seed episodes. Per run: the mean return of the
training episodes in the first --early-steps steps (the executed actions, expert included), the learner's mean eval
return over the checkpoints up to --early-steps, and its eval return at the end.

`mujoco`: the same measurement on HalfCheetah-v5 and Hopper-v5 (needs the `mujoco` extra), SB3 TD3 and SAC, plain and
`dai(...)` with the linear schedule, against an SAC expert trained here for --expert-steps steps (saved beside --out and
reused). Finished runs stored in --out are skipped on rerun, so an interrupted measurement resumes.

`attack`: GRPO and ExpertGuidedGRPO (default schedule and expert) on RPA-BeaverTails-v0, held-out harmfulness from the
safe-set monitor every --eval-every steps.

Usage: python scripts/dai_check.py pendulum --algo td3 --seeds 0 1 2 --out runs/dai_td3.json
       OMP_NUM_THREADS=1 python scripts/dai_check.py mujoco --out /tmp/dai_mujoco/dai_mujoco.json
       RLFT_GYM_HOME=... python scripts/dai_check.py attack --seeds 0 --steps 30 --out runs/dai_attack.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
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
MUJOCO_ENVS = ("HalfCheetah-v5", "Hopper-v5")
EXPERT_SEED = 1_000  # the SAC expert's training seed, apart from the learners' seeds
PAPER_GAIN = {"early": 160.0, "final": 50.0}  # arXiv 2504.18766, MuJoCo average: early > +160 %, final > +50 %


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


def episode_returns(act, episodes: int, env_id: str = ENV_ID, lockstep: bool = False) -> list[float]:
    """Returns of `act(obs batch) -> action batch` on the fixed eval episodes. `lockstep`: all episodes at once, one
    `act` call per step on the batch of the episodes still running (the same episodes, fewer policy calls; used for
    MuJoCo's 1000-step episodes)."""
    if lockstep:
        return _lockstep_returns(act, episodes, env_id)
    env, returns = gym.make(env_id), []
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


def _lockstep_returns(act, episodes: int, env_id: str) -> list[float]:
    envs = [gym.make(env_id) for _ in range(episodes)]
    obs = [env.reset(seed=EVAL_SEED + i)[0] for i, env in enumerate(envs)]
    returns, running = [0.0] * episodes, list(range(episodes))
    while running:
        actions = act(np.stack([obs[i] for i in running]))
        still = []
        for i, action in zip(running, actions):
            obs[i], reward, terminated, truncated, _ = envs[i].step(action)
            returns[i] += float(reward)
            if not (terminated or truncated):
                still.append(i)
        running = still
    for env in envs:
        env.close()
    return returns


class Evaluate(BaseCallback):
    """Every `every` steps (and at step 0), the learner's own deterministic policy on the fixed eval episodes."""

    def __init__(self, every: int, episodes: int, env_id: str = ENV_ID, lockstep: bool = False) -> None:
        super().__init__()
        self.every, self.episodes, self.curve = every, episodes, []
        self.env_id, self.lockstep = env_id, lockstep

    def _evaluate(self) -> None:
        returns = episode_returns(
            lambda obs: self.model.predict(obs, deterministic=True)[0], self.episodes, self.env_id, self.lockstep
        )
        self.curve.append({"step": self.num_timesteps, "return": float(np.mean(returns))})

    def _on_training_start(self) -> None:
        self._evaluate()

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every == 0:
            self._evaluate()
        return True


PENDULUM_SETTINGS: dict[str, Any] = {"learning_rate": 1e-3, "gamma": 0.98, "learning_starts": 100}
MUJOCO_SETTINGS: dict[str, Any] = {"learning_starts": 1_000}  # otherwise SB3's defaults (lr, gamma 0.99, batch 256)


def build(
    algo: str,
    schedule: AlphaSchedule | None,
    seed: int,
    env: gym.Env,
    expert: Callable[[np.ndarray], np.ndarray] = swing_up,
    settings: dict[str, Any] = PENDULUM_SETTINGS,
) -> BaseAlgorithm:
    """Small nets ([64, 64]) and `settings` (by default rl-zoo-like Pendulum ones: lr 1e-3, gamma 0.98); TD3 explores
    with N(0, 0.1) action noise; `schedule=None` is the plain algorithm."""
    cls = ALGOS[algo]
    kwargs: dict[str, Any] = {**settings, "seed": seed, "device": "cpu", "policy_kwargs": {"net_arch": [64, 64]}}
    if algo == "td3":
        dim = env.action_space.shape[0]
        kwargs["action_noise"] = NormalActionNoise(np.zeros(dim), 0.1 * np.ones(dim))
    if schedule is not None:
        cls, kwargs = dai(cls), {**kwargs, "expert": expert, "schedule": schedule}
    model = cls("MlpPolicy", env, **kwargs)
    model.set_logger(Logger(None, []))  # quiet, and no log folder under /tmp
    return model


def run(
    algo: str,
    kind: str,
    seed: int,
    args: argparse.Namespace,
    env_id: str = ENV_ID,
    expert: Callable[[np.ndarray], np.ndarray] = swing_up,
    settings: dict[str, Any] = PENDULUM_SETTINGS,
) -> dict[str, Any]:
    """One training run: the learner's eval curve, its training-episode returns and the wall time."""
    env = Monitor(gym.make(env_id))
    schedule = None if kind == "none" else AlphaSchedule(args.horizon, kind)
    model = build(algo, schedule, seed, env, expert, settings)
    evaluate = Evaluate(args.eval_every, args.eval_episodes, env_id, lockstep=env_id != ENV_ID)
    t0 = time.perf_counter()
    model.learn(args.steps, callback=evaluate)
    wall = time.perf_counter() - t0
    lengths, train = env.get_episode_lengths(), env.get_episode_rewards()
    return {
        "env": env_id,
        "algo": algo,
        "schedule": kind,
        "seed": seed,
        "wall_s": wall,
        **stage_metrics(evaluate.curve, train, lengths, args.early_steps, args.steps),
        "curve": evaluate.curve,
        "train_returns": list(map(float, train)),
        "train_lengths": list(map(int, lengths)),
    }


def stage_metrics(
    curve: list[dict[str, float]], train: list[float], lengths: list[int], early_steps: int, steps: int
) -> dict[str, float]:
    """early / final metrics of one run. Train: the mean return of the training episodes that ended within the first
    `early_steps` steps, and within the last `early_steps` steps (final; nan when none ended there). Eval: the mean of
    the checkpoints at steps <= `early_steps`, and the last checkpoint."""
    ends, train = np.cumsum(lengths), np.asarray(train, dtype=float)
    early, late = train[ends <= early_steps], train[ends > steps - early_steps]
    return {
        "early_train_return": float(early.mean()) if len(early) else float("nan"),
        "final_train_return": float(late.mean()) if len(late) else float("nan"),
        "early_eval_return": float(np.mean([c["return"] for c in curve if c["step"] <= early_steps])),
        "final_eval_return": float(curve[-1]["return"]),
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


def gain(plain: float, guided: float) -> float:
    """DAI's relative gain in %: (guided - plain) / |plain| * 100 (|plain| so that a gain is positive for negative
    returns too; nan for plain = 0)."""
    return (guided - plain) / abs(plain) * 100.0 if plain != 0 else float("nan")


def mujoco_expert(env_id: str, args: argparse.Namespace) -> tuple[SAC, dict[str, Any]]:
    """The env's SAC expert, trained for `args.expert_steps` steps (seed EXPERT_SEED, the learners' settings) and saved
    as expert_<env>_sac<steps>.zip beside `args.out`, or loaded from there when present; with its mean eval return on
    the fixed episodes."""
    path = args.out.parent / f"expert_{env_id}_sac{args.expert_steps}.zip"
    wall = 0.0
    if path.exists():
        model = SAC.load(path, device="cpu")
    else:
        model = build("sac", None, EXPERT_SEED, Monitor(gym.make(env_id)), settings=MUJOCO_SETTINGS)
        t0 = time.perf_counter()
        model.learn(args.expert_steps)
        wall = time.perf_counter() - t0
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
    returns = episode_returns(
        lambda obs: model.predict(obs, deterministic=True)[0], args.eval_episodes, env_id, lockstep=True
    )
    info = {
        "path": str(path),
        "steps": args.expert_steps,
        "eval_returns": returns,
        "eval_return": float(np.mean(returns)),
    }
    return model, {**info, "train_wall_s": wall}


RUN_KEY = ("env", "algo", "schedule", "seed")
RESUME_KEYS = ("steps", "horizon", "early_steps", "eval_every", "eval_episodes", "expert_steps")


def resume(args: argparse.Namespace) -> dict[str, Any]:
    """The report in `args.out` if it exists (its settings must be this command's), else an empty one."""
    if not args.out.exists():
        return {"experts": {}, "runs": []}
    report = json.loads(args.out.read_text())
    stored = {k: report["config"][k] for k in RESUME_KEYS}
    asked = {k: getattr(args, k) for k in RESUME_KEYS}
    if stored != asked:
        raise SystemExit(f"{args.out} holds runs with {stored}, not {asked}: pass another --out")
    return report


def mujoco(args: argparse.Namespace) -> None:
    """Per env: the SAC expert, then every (algo, seed, plain / DAI) run not yet in --out, the JSON rewritten after each
    run; then the table."""
    torch.set_num_threads(1)
    report, t0 = resume(args), time.perf_counter()
    done = {tuple(r[k] for k in RUN_KEY) for r in report["runs"]}
    wall_before = report.get("total_wall_s", 0.0)
    for env_id in args.envs:
        expert_model, info = mujoco_expert(env_id, args)
        if env_id in report["experts"]:
            info["train_wall_s"] = report["experts"][env_id]["train_wall_s"] or info["train_wall_s"]
        report["experts"][env_id] = info
        print(f"{env_id} expert (SAC, {args.expert_steps} steps): eval return {info['eval_return']:.0f}", flush=True)

        def expert(obs: np.ndarray, m: SAC = expert_model) -> np.ndarray:
            return m.predict(obs, deterministic=True)[0]

        for algo in args.algos:
            for seed in args.seeds:
                for kind in ("none", args.schedule):
                    if (env_id, algo, kind, seed) in done:
                        continue
                    r = run(algo, kind, seed, args, env_id, expert, MUJOCO_SETTINGS)
                    report["runs"].append(r)
                    report.update(
                        config=config(args, eval_seed=EVAL_SEED, expert_seed=EXPERT_SEED, settings=MUJOCO_SETTINGS),
                        total_wall_s=wall_before + time.perf_counter() - t0,
                    )
                    write(args.out, report)
                    print(
                        f"{env_id} {algo} {kind:<6} seed {seed}: early train {r['early_train_return']:.0f}, early eval "
                        f"{r['early_eval_return']:.0f}, final eval {r['final_eval_return']:.0f} ({r['wall_s']:.0f} s)",
                        flush=True,
                    )
    report.update(
        config=config(args, eval_seed=EVAL_SEED, expert_seed=EXPERT_SEED, settings=MUJOCO_SETTINGS),
        total_wall_s=wall_before + time.perf_counter() - t0,
    )
    report["summary"] = mujoco_summary(report["runs"], args)
    write(args.out, report)
    experts = ", ".join(f"{e} {i['eval_return']:.0f}" for e, i in report["experts"].items())
    print(
        f"\n{args.steps} steps, alpha 1 -> 0 ({args.schedule}) over {args.horizon} steps, expert eval {experts}, "
        f"total {report['total_wall_s'] / 60:.1f} min (this call {(time.perf_counter() - t0) / 60:.1f})\n"
    )
    print(mujoco_table(report["summary"], args))
    print()
    print(curve_table(report["runs"], args))


MUJOCO_METRICS = (
    ("early_eval_return", "early", "learner's own eval, mean of checkpoints <= {early}"),
    ("final_eval_return", "final", "learner's own eval at {steps}"),
    ("early_train_return", "early", "train return (executed), episodes ending <= {early}"),
    ("final_train_return", "final", "train return (executed), episodes ending > {late}"),
)


def mujoco_summary(runs: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per env x algo x metric: plain and DAI, the mean and std over seeds and each seed's value, and the gain."""
    rows = []
    for env_id in dict.fromkeys(r["env"] for r in runs):
        for algo in dict.fromkeys(r["algo"] for r in runs if r["env"] == env_id):
            pick = {
                kind: sorted(
                    (r for r in runs if (r["env"], r["algo"], r["schedule"]) == (env_id, algo, kind)),
                    key=lambda r: r["seed"],
                )
                for kind in ("none", args.schedule)
            }
            for key, stage, _ in MUJOCO_METRICS:
                plain = [r[key] for r in pick["none"]]
                guided = [r[key] for r in pick[args.schedule]]
                rows.append(
                    {
                        "env": env_id,
                        "algo": algo,
                        "metric": key,
                        "plain": plain,
                        "dai": guided,
                        "plain_mean": float(np.mean(plain)),
                        "plain_std": float(np.std(plain)),
                        "dai_mean": float(np.mean(guided)),
                        "dai_std": float(np.std(guided)),
                        "gain_pct": gain(float(np.mean(plain)), float(np.mean(guided))),
                        "paper_gain_pct": PAPER_GAIN[stage],
                    }
                )
    return rows


def mujoco_table(summary: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """Markdown: one line per env x algo x metric; mean +- std over seeds (population std), the gain, the paper's."""
    names = {
        k: n.format(early=args.early_steps, steps=args.steps, late=args.steps - args.early_steps)
        for k, _, n in MUJOCO_METRICS
    }
    lines = ["| env | algo | metric | plain | DAI | gain | paper |", "|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(
            f"| {s['env']} | {s['algo'].upper()} | {names[s['metric']]} | {s['plain_mean']:.0f} ± {s['plain_std']:.0f} "
            f"| {s['dai_mean']:.0f} ± {s['dai_std']:.0f} | {s['gain_pct']:+.0f} % | +{s['paper_gain_pct']:.0f} % |"
        )
    return "\n".join(lines)


def curve_table(runs: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """Markdown: the learner's own eval return by step, mean over seeds, one line per env x algo x plain / DAI."""
    steps = [c["step"] for c in runs[0]["curve"]]
    lines = [
        "| run | " + " | ".join(f"{s / 1000:g}k" for s in steps) + " |",
        "|---" * (len(steps) + 1) + "|",
    ]
    for key in dict.fromkeys((r["env"], r["algo"], r["schedule"]) for r in runs):
        curves = np.array(
            [[c["return"] for c in r["curve"]] for r in runs if (r["env"], r["algo"], r["schedule"]) == key]
        )
        name = f"{key[0]} {key[1].upper()}" + ("" if key[2] == "none" else f" + DAI {key[2]}")
        lines.append(f"| {name} | " + " | ".join(f"{v:.0f}" for v in curves.mean(0)) + " |")
    return "\n".join(lines)


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
    m = sub.add_parser("mujoco", help="SB3 TD3 / SAC on HalfCheetah-v5 and Hopper-v5 with and without DAI")
    m.set_defaults(run=mujoco)
    m.add_argument("--envs", nargs="+", choices=MUJOCO_ENVS, default=list(MUJOCO_ENVS))
    m.add_argument("--algos", nargs="+", choices=sorted(ALGOS), default=["td3", "sac"])
    m.add_argument("--schedule", choices=SCHEDULES, default="linear")
    m.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    m.add_argument("--steps", type=int, default=15_000)
    m.add_argument("--horizon", type=int, default=5_000, help="env steps over which alpha decays from 1 to 0")
    m.add_argument("--early-steps", type=int, default=5_000)
    m.add_argument("--eval-every", type=int, default=1_000)
    m.add_argument("--eval-episodes", type=int, default=5)
    m.add_argument("--expert-steps", type=int, default=30_000, help="SAC training steps of each env's expert")
    m.add_argument("--out", type=Path, default=Path("/tmp/dai_mujoco/dai_mujoco.json"))
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
