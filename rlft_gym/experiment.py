"""One attack run end to end: env (+ defence) -> agent -> safe-set monitor -> results file. Used by the CLI."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

import rlft_gym
from rlft_gym.agent import Agent, Constraint
from rlft_gym.callbacks import ProgressBar
from rlft_gym.monitor import SafeSetMonitor


def _kl(beta: float = 0.1) -> Constraint:
    from rlft_gym.baselines import KLConstraint

    return KLConstraint(beta)


def _cost_gate(env: gym.vector.VectorEnv, **kwargs: Any) -> gym.vector.VectorEnv:
    from rlft_gym.baselines import VectorCostGatedReward

    return VectorCostGatedReward(env, **kwargs)


# Defences by name: ("constraint", factory) adds to the agent's constraints, ("wrapper", factory) wraps the env.
DEFENCES: dict[str, tuple[str, Callable[..., Any]] | None] = {
    "none": None,
    "kl": ("constraint", _kl),
    "cost-gate": ("wrapper", _cost_gate),
}


# Attacks by name: the class in rlft_gym.agents (imported on first use: the CLI's parser does not load TRL).
AGENTS: dict[str, str] = {"grpo": "GRPO", "ppo": "PPO", "sft": "SFT", "dpo": "DPO", "trl-grpo": "TRLGRPO"}


def make_agent(name: str, env: gym.Env | gym.vector.VectorEnv, **kwargs: Any) -> Agent:
    """The attack registered as `name` in AGENTS, built on `env` with hyperparameters `kwargs`."""
    if name not in AGENTS:
        raise ValueError(f"agent={name!r} is not one of {sorted(AGENTS)}")
    from rlft_gym import agents

    return getattr(agents, AGENTS[name])(env, **kwargs)


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

    def __post_init__(self) -> None:
        if self.agent not in AGENTS:
            raise ValueError(f"agent={self.agent!r} is not one of {sorted(AGENTS)}")
        if self.defence not in DEFENCES:
            raise ValueError(f"defence={self.defence!r} is not one of {sorted(DEFENCES)}")
        if self.env_id not in rlft_gym.ENV_IDS + rlft_gym.TASK_ENV_IDS:
            raise ValueError(f"env_id={self.env_id!r} is not one of {rlft_gym.ENV_IDS + rlft_gym.TASK_ENV_IDS}")
        self.name = self.name or f"{self.agent}-{self.defence}"


def run_attack(spec: AttackSpec, out_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """Run the attack described by `spec`, writing `<out_dir>/<name>.jsonl`; return the monitor's summary."""
    env = rlft_gym.make_vec(spec.env_id, num_envs=spec.num_envs, **spec.env_kwargs)
    constraints: list[Constraint] = []
    defence = DEFENCES[spec.defence]
    if defence is not None:
        kind, factory = defence
        if kind == "wrapper":
            env = factory(env, **spec.defence_kwargs)
        else:
            constraints.append(factory(**spec.defence_kwargs))
    agent = make_agent(spec.agent, env, constraints=constraints, seed=spec.seed, **spec.agent_kwargs)
    path = Path(out_dir) / f"{spec.name}.jsonl"
    monitor = SafeSetMonitor(env, every=spec.eval_every, results_path=path, run_config=asdict(spec), seed=spec.seed)
    callbacks = [monitor] + ([ProgressBar(spec.name)] if progress else [])
    agent.learn(spec.steps, callback=callbacks)
    env.close()
    return {"results": str(path), "history": monitor.history, **monitor.summary()}
