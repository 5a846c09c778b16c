"""The kwargs every text env accepts (world, policy, generation length, cost limit, hf checkpoints), validated once at
construction; `RPAConfig` and `TaskConfig` add their own."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from rlft_gym.core import BUILTIN_COSTS
from rlft_gym.worlds import WORLDS

MAX_RESPONSE_CHARS = 1024
MAX_PROMPT_CHARS = 1024
EMBEDDED_MAX_NEW_TOKENS = 64  # the embedded GPT-2 has 96 positions
REFERENCES = ("policy", "aligned")  # named `reference` values; any other value is a checkpoint path


@dataclass(frozen=True)
class EnvConfig:
    """Kwargs shared by every text env; subclasses name the fields the registry fixes (`FIXED`) and the hf-only ones.

    `reference` is the frozen model the agents' KL and the safe-set monitor's perplexity are measured against:
    "policy" (default, the RPA paper's setup: a copy of the model the attack starts from, i.e. the `policy` kwarg, so a
    defended checkpoint is its own reference), "aligned" (the embedded world's original aligned model, to measure a
    defended model's drift from it) or a checkpoint path. Without `policy`, "policy" and "aligned" are the same weights.

    `extra_costs` adds named costs beside harm to `info["costs"]`, for solvers with several constraints: name -> a
    built-in cost's name (`rlft_gym.core.BUILTIN_COSTS`, e.g. "length": response tokens / max_new_tokens) or a
    (prompts, responses) -> costs in [0, 1] callable; `cost_limits` gives each its limit (harm's is `cost_limit`).
    """

    FIXED: ClassVar[tuple[str, ...]] = ()  # set by the registry (e.g. schema, task), not by the user
    HF_ONLY: ClassVar[tuple[str, ...]] = (
        "dataset",
        "split",
        "eval_split",
        "cost_model",
        "helpfulness_model",
        "dtype",
        "num_attack_pairs",
        "num_eval_prompts",
        "lora",
    )

    world: str = "embedded"
    policy: str | None = None
    cost_limit: float = 0.2
    max_new_tokens: int = 32
    horizon: int = 1
    device: str = "cpu"
    world_seed: int = 0
    world_preset: str = field(default_factory=lambda: os.environ.get("RLFT_GYM_WORLD_PRESET", "standard"))
    max_response_chars: int = MAX_RESPONSE_CHARS
    render_mode: str | None = None
    reference: str = "policy"  # "policy", "aligned" (embedded world) or a checkpoint path; see the class docstring
    extra_costs: dict[str, Any] | None = None  # name -> built-in cost name or score callable; see the class docstring
    cost_limits: dict[str, float] | None = None  # name of each extra cost -> its limit in [0, 1]
    # world="hf" only: data and checkpoints (local paths or cached hub ids)
    dataset: str | None = None
    split: str | None = None
    eval_split: str | None = None
    cost_model: Any = None
    helpfulness_model: Any = None
    dtype: str = "float32"
    num_attack_pairs: int = 1000
    num_eval_prompts: int = 100
    lora: dict[str, Any] | None = None

    @property
    def env_id(self) -> str:
        raise NotImplementedError

    def invalid(self, name: str, allowed: str) -> ValueError:
        """The one error for a bad kwarg: its name, its value, the env and what is allowed."""
        return ValueError(f"{name}={getattr(self, name)!r} is invalid for {self.env_id}; expected {allowed}")

    def __post_init__(self) -> None:
        if self.world not in WORLDS:
            raise self.invalid("world", f"one of {WORLDS}")
        if (
            not isinstance(self.cost_limit, (int, float))
            or math.isnan(self.cost_limit)
            or not 0.0 <= self.cost_limit <= 1.0
        ):
            raise self.invalid("cost_limit", "a number in [0, 1] (the bound b on mean held-out cost)")
        hf_only = [f.name for f in fields(self) if f.name in self.HF_ONLY and getattr(self, f.name) != f.default]
        if self.world != "hf" and hf_only:
            raise ValueError(f"{hf_only} only apply to world='hf' (world={self.world!r})")
        longest = EMBEDDED_MAX_NEW_TOKENS if self.world == "embedded" else 8192
        for name, hi in (
            ("max_new_tokens", longest),
            ("horizon", 10_000),
            ("max_response_chars", 1 << 20),
            ("num_attack_pairs", 10**7),
            ("num_eval_prompts", 10**6),
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= hi:
                raise self.invalid(name, f"an int in [1, {hi}]")
        if not isinstance(self.world_seed, int) or isinstance(self.world_seed, bool):
            raise self.invalid("world_seed", "an int")
        if self.policy is not None and not isinstance(self.policy, str):
            raise self.invalid("policy", "None or a path to a save_pretrained causal LM")
        if self.world == "hf" and self.reference == "aligned":
            raise self.invalid(
                "reference", "'policy' or a checkpoint path on world='hf' (its aligned model is `policy`)"
            )
        if not isinstance(self.reference, str) or (
            self.world == "embedded" and self.reference not in REFERENCES and not Path(self.reference).is_dir()
        ):
            raise self.invalid("reference", f"one of {REFERENCES} or a path to a save_pretrained causal LM")
        self._check_costs()

    def _check_costs(self) -> None:
        """`extra_costs` names costs other than harm, each a built-in name or a callable; `cost_limits` bounds each."""
        extra = {} if self.extra_costs is None else self.extra_costs
        if not isinstance(extra, dict) or not all(
            isinstance(name, str) and name != "harm" and (callable(fn) or (isinstance(fn, str) and fn in BUILTIN_COSTS))
            for name, fn in extra.items()
        ):
            raise self.invalid(
                "extra_costs",
                f"None or a dict: name (not 'harm', which is info['cost']) -> a built-in cost {tuple(BUILTIN_COSTS)} "
                "or a (prompts, responses) -> costs in [0, 1] callable",
            )
        limits = {} if self.cost_limits is None else self.cost_limits
        if (
            not isinstance(limits, dict)
            or set(limits) != set(extra)
            or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in limits.values()
            )
        ):
            raise self.invalid(
                "cost_limits",
                f"a limit in [0, 1] for each extra cost and no other, i.e. keys {sorted(extra)} (harm's is cost_limit)",
            )

    def world_reference(self) -> str | None:
        """The `reference` checkpoint the world hands to agents, None for the world's own (the embedded world's frozen
        copy of its aligned policy; the hf world's `policy`)."""
        if self.reference == "policy":
            return self.policy
        return None if self.reference == "aligned" else self.reference

    @classmethod
    def allowed(cls, fixed: dict[str, Any]) -> list[str]:
        """The kwargs a user may pass, given the registry's fixed ones."""
        return sorted(f.name for f in fields(cls) if f.name not in cls.FIXED)

    @classmethod
    def from_kwargs(cls, env_id: str, kwargs: dict[str, Any], **fixed: Any) -> EnvConfig:
        """Validate user kwargs, naming any unknown one together with the allowed names."""
        allowed = cls.allowed(fixed)
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise TypeError(f"unknown kwarg(s) {unknown} for {env_id}; allowed: {allowed}")
        return cls(**fixed, **kwargs)

    def options(self, **extra: Any) -> dict[str, Any]:
        """The core env's options from this config (plus e.g. a task's own `eval_prompts`)."""
        return {
            "cost_limit": float(self.cost_limit),
            "max_new_tokens": self.max_new_tokens,
            "horizon": self.horizon,
            "max_response_chars": self.max_response_chars,
            "max_prompt_chars": MAX_PROMPT_CHARS,
            "render_mode": self.render_mode,
            "extra_costs": dict(self.extra_costs or {}),
            "cost_limits": {name: float(v) for name, v in (self.cost_limits or {}).items()},
            **extra,
        }
