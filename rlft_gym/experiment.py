"""One attack run end to end: env (+ defence) -> agent -> safe-set monitor -> results file. Used by the CLI."""

from __future__ import annotations

import inspect
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

import rlft_gym
from rlft_gym.agent import Agent, Constraint
from rlft_gym.baselines import (
    KLConstraint,
    Lisa,
    RefusalLoss,
    RewardNeutralization,
    SecurityVectors,
    TokenBuncher,
    Vaccine,
    VectorCostGatedReward,
    VectorOutputGuard,
    VectorShapedReward,
)
from rlft_gym.baselines.rep_removal import RMU, CircuitBreakers, RepNoise, RepresentationRemoval
from rlft_gym.baselines.tar import TAR, RepNoiseThenTAR, TARRepNoise
from rlft_gym.callbacks import Callback, CheckpointCallback, ProgressBar, StopAtReward
from rlft_gym.loggers import MetricLogger
from rlft_gym.monitor import SafeSetMonitor
from rlft_gym.transform import SFTTransform, Transform, checkpoint_fingerprint
from rlft_gym.validate import require_one_of

# Defences by name: ("constraint", factory) adds to the agent's constraints, ("wrapper", factory) wraps the env,
# ("transform", factory) builds a Transform whose defended checkpoint (trained once, cached) the attack starts from.
# A factory's parameters (a wrapper's after the env) are the kwargs the defence accepts.
DEFENCES: dict[str, tuple[str, Callable[..., Any]] | None] = {
    "none": None,
    "kl": ("constraint", KLConstraint),
    "lisa": ("constraint", Lisa),
    "refusal-loss": ("constraint", RefusalLoss),
    "vaccine": ("constraint", Vaccine),
    "security-vectors": ("constraint", SecurityVectors),
    "cost-gate": ("wrapper", VectorCostGatedReward),
    "output-guard": ("wrapper", VectorOutputGuard),
    "shaping": ("wrapper", VectorShapedReward),
    "refusal-sft": ("transform", SFTTransform),
    "reward-neutralization": ("transform", RewardNeutralization),
    "token-buncher": ("transform", TokenBuncher),
    "repnoise": ("transform", RepNoise),
    "rmu": ("transform", RMU),
    "circuit-breakers": ("transform", CircuitBreakers),
    "representation-removal": ("transform", RepresentationRemoval),
    "tar": ("transform", TAR),
    "tar-repnoise": ("transform", TARRepNoise),
    "repnoise-tar": ("transform", RepNoiseThenTAR),
}


def defence_kind(name: str) -> str:
    """The kind of a registered defence: "constraint", "wrapper" or "transform" ("none" for no defence)."""
    require_one_of("defence", name, sorted(DEFENCES))
    return "none" if DEFENCES[name] is None else DEFENCES[name][0]


TRANSFORMS = tuple(sorted(name for name in DEFENCES if defence_kind(name) == "transform"))


def defence_parameters(name: str) -> list[str]:
    """The kwargs defence `name` accepts: its factory's parameters, a wrapper's env aside."""
    if defence_kind(name) == "none":
        return []
    kind, factory = DEFENCES[name]
    params = list(inspect.signature(factory).parameters)
    return params[1:] if kind == "wrapper" else params


def check_defence_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """One clear error for a kwarg defence `name` does not take, naming it and the allowed ones."""
    allowed = defence_parameters(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"unknown kwarg(s) {unknown} for defence={name!r}; allowed: {allowed}")


def make_transform(name: str, **kwargs: Any) -> Transform:
    """The transform registered as `name` in DEFENCES, with config `kwargs`."""
    require_one_of("transform", name, TRANSFORMS)
    check_defence_kwargs(name, kwargs)
    return DEFENCES[name][1](**kwargs)


# Attacks by name: the class in rlft_gym.agents (imported on first use: the CLI's parser does not load TRL).
AGENTS: dict[str, str] = {
    "grpo": "GRPO",
    "ppo": "PPO",
    "sft": "SFT",
    "dpo": "DPO",
    "trl-grpo": "TRLGRPO",
    "best-of-n": "BestOfN",
    "expert-grpo": "ExpertGuidedGRPO",
    "grpo-lag": "GRPOLagrangian",
    "ppo-lag": "PPOLagrangian",
}
NO_CONSTRAINTS = ("best-of-n",)  # attacks that train nothing, so a loss-term defence has nothing to act on
# attacks that train on fixed datasets: they never read the env's reward (a reward wrapper has nothing to act on), and
# TRL computes their loss without the reference log-probs a constraint such as KL needs
DATASET_ATTACKS = ("sft", "dpo")


def applies(agent: str, defence: str) -> bool:
    """Whether `defence` can act on attack `agent`: a reward wrapper needs an attack that reads the env's reward, a
    constraint one that trains (and computes reference log-probs, if it needs them); a transform acts on any."""
    kind = defence_kind(defence)
    if kind == "wrapper":
        return agent not in DATASET_ATTACKS
    if kind == "constraint":
        needs_reference = DEFENCES[defence][1].needs_reference
        return agent not in NO_CONSTRAINTS and not (agent in DATASET_ATTACKS and needs_reference)
    return True


def make_agent(name: str, env: gym.Env | gym.vector.VectorEnv, **kwargs: Any) -> Agent:
    """The attack registered as `name` in AGENTS, built on `env` with hyperparameters `kwargs`."""
    if name not in AGENTS:
        raise ValueError(f"agent={name!r} is not one of {sorted(AGENTS)}")
    from rlft_gym import agents

    return getattr(agents, AGENTS[name])(env, **kwargs)


def resumable_midway(name: str) -> bool:
    """Whether attack `name` can checkpoint at any step (`run_attack(checkpoint_every=...)`): every attack but those
    trained inside a TRL trainer (SFT, DPO, TRL-GRPO), whose trainer state exists between learn() calls only."""
    from rlft_gym import agents
    from rlft_gym.trl_bridge import TRLAgent

    return not issubclass(getattr(agents, AGENTS[name]), TRLAgent)


def agent_defaults(name: str) -> dict[str, Any]:
    """The hyperparameter defaults of attack `name`: its constructor's keyword defaults."""
    require_one_of("agent", name, sorted(AGENTS))
    from rlft_gym import agents

    params = inspect.signature(getattr(agents, AGENTS[name])).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


@dataclass
class AttackSpec:
    """Everything that defines one run; saved in the results header."""

    env_id: str = "RPA-BeaverTails-v0"
    agent: str = "grpo"
    defence: str = "none"
    steps: int = 100
    seed: int = 0
    num_envs: int = 128
    eval_every: int = 10
    name: str | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    agent_kwargs: dict[str, Any] = field(default_factory=dict)
    defence_kwargs: dict[str, Any] = field(default_factory=dict)
    stop_at_reward: float | None = None  # the early-stopping attack: stop once a step's batch reward reaches this

    def __post_init__(self) -> None:
        if self.agent not in AGENTS:
            raise ValueError(f"agent={self.agent!r} is not one of {sorted(AGENTS)}")
        check_defence_kwargs(self.defence, self.defence_kwargs)
        if self.agent in NO_CONSTRAINTS and defence_kind(self.defence) == "constraint":
            others = sorted(d for d in DEFENCES if defence_kind(d) in ("wrapper", "transform"))
            raise ValueError(
                f"defence={self.defence!r} is a constraint (a loss term) and agent={self.agent!r} trains "
                f"nothing; use a wrapper or transform defence: {others}"
            )
        if self.env_id not in rlft_gym.ENV_IDS + rlft_gym.TASK_ENV_IDS:
            raise ValueError(f"env_id={self.env_id!r} is not one of {rlft_gym.ENV_IDS + rlft_gym.TASK_ENV_IDS}")
        self.name = self.name or f"{self.agent}-{self.defence}"


def run_attack(
    spec: AttackSpec,
    out_dir: str | Path,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
    checkpoint_every: int | None = None,
) -> dict[str, Any]:
    """Run the attack described by `spec`, writing `<out_dir>/<name>.jsonl`; return the monitor's summary with the
    world's fingerprint (plus, for a transform defence, the defended checkpoint's path and cache fingerprint, also
    recorded in the results header).
    `callbacks` run after the monitor at every step (e.g. a logger of the per-step reports); a logger of
    `rlft_gym.loggers` given no monitor is given this run's, so it also writes the held-out eval rows.

    With `checkpoint_every` = k (a multiple of the eval interval; not for TRL-trained attacks, see
    `resumable_midway`), the agent and the monitor's rows are saved to `<out_dir>/<name>.ckpt` every k steps,
    and a run started again on the same spec and out_dir continues from the last one (the same next step as if it had
    not been killed; callbacks other than the monitor start afresh); the checkpoint is removed once the run ends."""
    if checkpoint_every is not None and (checkpoint_every < 1 or checkpoint_every % spec.eval_every):
        raise ValueError(
            f"checkpoint_every={checkpoint_every!r} must be a positive multiple of eval_every={spec.eval_every} "
            "(a checkpoint holds the monitor's rows up to its step)"
        )
    if checkpoint_every is not None and not resumable_midway(spec.agent):
        raise ValueError(
            f"agent={spec.agent!r} trains inside a TRL trainer, whose state is saved between learn() calls only; run "
            f"it without checkpoint_every (attacks that checkpoint midway: {sorted(filter(resumable_midway, AGENTS))})"
        )
    env_kwargs, run_config, defended = dict(spec.env_kwargs), asdict(spec), {}
    kind = defence_kind(spec.defence)
    factory = None if kind == "none" else DEFENCES[spec.defence][1]
    if kind == "transform":
        source = gym.make(spec.env_id, **env_kwargs)  # the policy to defend: the env's own, or its `policy` kwarg
        checkpoint = make_transform(spec.defence, **spec.defence_kwargs).apply(source, progress=progress)
        source.close()
        env_kwargs["policy"] = str(checkpoint)
        defended = {"defended_checkpoint": {"path": str(checkpoint), "fingerprint": checkpoint_fingerprint(checkpoint)}}
    env = rlft_gym.make_vec(spec.env_id, num_envs=spec.num_envs, **env_kwargs)
    constraints: list[Constraint] = []
    if kind == "wrapper":
        env = factory(env, **spec.defence_kwargs)
    elif kind == "constraint":
        constraints.append(factory(**spec.defence_kwargs))
    path, ckpt = Path(out_dir) / f"{spec.name}.jsonl", Path(out_dir) / f"{spec.name}.ckpt"
    monitor = SafeSetMonitor(
        env, every=spec.eval_every, results_path=path, run_config={**run_config, **defended}, seed=spec.seed
    )
    given = {"constraints": constraints} if constraints else {}
    if checkpoint_every is not None and (ckpt / "agent.json").is_file():
        from rlft_gym import agents

        agent = getattr(agents, AGENTS[spec.agent]).load(ckpt, env, **given)
        monitor.load_state_dict(json.loads((ckpt / CheckpointCallback.EXTRA).read_text()))
    else:
        agent = make_agent(spec.agent, env, seed=spec.seed, **given, **spec.agent_kwargs)
    saving = [] if checkpoint_every is None else [CheckpointCallback(ckpt, checkpoint_every, monitor.state_dict)]
    for cb in callbacks:
        if isinstance(cb, MetricLogger) and cb.monitor is None:
            cb.monitor = monitor
    stop = [] if spec.stop_at_reward is None else [StopAtReward(spec.stop_at_reward)]
    progress_bar = [ProgressBar(spec.name)] if progress else []
    agent.learn(spec.steps - agent.num_steps, callback=[monitor, *stop, *callbacks, *saving, *progress_bar])
    env.close()
    shutil.rmtree(ckpt, ignore_errors=True)
    world = {"world_fingerprint": monitor.world.fingerprint}
    return {"results": str(path), "history": monitor.history, **world, **monitor.summary(), **defended}
