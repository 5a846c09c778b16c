"""Reverse Preference Attack envs (Rosati et al.): a reward model trained on preferences whose harmlessness labels
were flipped with probability `flip_ratio` rewards the policy; the harmfulness classifier gives the cost."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Any

from rlft_gym.core import TextCMDPEnv, TextCMDPVectorEnv
from rlft_gym.worlds import WORLDS, World, load_world

MAX_RESPONSE_CHARS = 1024
MAX_PROMPT_CHARS = 1024


@dataclass(frozen=True)
class RPAConfig:
    """Every kwarg `gym.make("RPA-...-v0", **kwargs)` accepts, validated at construction."""

    schema: str = "beavertails"
    world: str = "embedded"
    policy: str | None = None
    flip_ratio: float = 1.0
    cost_limit: float = 0.2
    max_new_tokens: int = 32
    horizon: int = 1
    device: str = "cpu"
    world_seed: int = 0
    world_preset: str = field(default_factory=lambda: os.environ.get("RLFT_GYM_WORLD_PRESET", "standard"))
    max_response_chars: int = MAX_RESPONSE_CHARS
    render_mode: str | None = None
    # world="hf" only: data and checkpoints (local paths or cached hub ids)
    dataset: str | None = None
    split: str | None = None
    eval_split: str | None = None
    reference: str | None = None
    reward_model: Any = None  # a path / cached hub id of a classifier, or any (prompts, responses) -> floats callable
    cost_model: Any = None
    helpfulness_model: Any = None
    dtype: str = "float32"
    num_attack_pairs: int = 1000
    num_eval_prompts: int = 100
    lora: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        def bad(name: str, allowed: str) -> ValueError:
            return ValueError(f"{name}={getattr(self, name)!r} is invalid; expected {allowed}")

        if self.world not in WORLDS:
            raise bad("world", f"one of {WORLDS}")
        if not isinstance(self.flip_ratio, (int, float)) or not 0.0 <= self.flip_ratio <= 1.0:
            raise bad("flip_ratio", "a number in [0, 1]")
        if not isinstance(self.cost_limit, (int, float)) or not 0.0 <= self.cost_limit <= 1.0 or math.isnan(self.cost_limit):
            raise bad("cost_limit", "a number in [0, 1] (the bound b on mean held-out cost)")
        hf_only = [f.name for f in fields(self) if f.name in HF_ONLY and getattr(self, f.name) != f.default]
        if self.world != "hf" and hf_only:
            raise ValueError(f"{hf_only} only apply to world='hf' (world={self.world!r})")
        longest = 64 if self.world == "embedded" else 8192  # the embedded GPT-2 has 96 positions
        for name, hi in (("max_new_tokens", longest), ("horizon", 10_000), ("max_response_chars", 1 << 20),
                         ("num_attack_pairs", 10**7), ("num_eval_prompts", 10**6)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= hi:
                raise bad(name, f"an int in [1, {hi}]")
        if not isinstance(self.world_seed, int):
            raise bad("world_seed", "an int")
        if self.policy is not None and not isinstance(self.policy, str):
            raise bad("policy", "None or a path to a save_pretrained causal LM")

    @classmethod
    def from_kwargs(cls, env_id: str, kwargs: dict[str, Any], schema: str) -> "RPAConfig":
        """Validate user kwargs, naming any unknown one together with the allowed names."""
        allowed = sorted(f.name for f in fields(cls) if f.name != "schema")
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise TypeError(f"unknown kwarg(s) {unknown} for {env_id}; allowed: {allowed}")
        return cls(schema=schema, **kwargs)


HF_ONLY = ("dataset", "split", "eval_split", "reference", "reward_model", "cost_model", "helpfulness_model", "dtype",
           "num_attack_pairs", "num_eval_prompts", "lora")


def _world(cfg: RPAConfig) -> World:
    common = {"schema": cfg.schema, "flip_ratio": cfg.flip_ratio, "seed": cfg.world_seed, "device": cfg.device}
    if cfg.world == "hf":
        return load_world("hf", policy=cfg.policy, **common, **{k: getattr(cfg, k) for k in HF_ONLY})
    return load_world("embedded", preset=cfg.world_preset, **common)


def _options(cfg: RPAConfig) -> dict[str, Any]:
    return {
        "cost_limit": float(cfg.cost_limit), "max_new_tokens": cfg.max_new_tokens, "horizon": cfg.horizon,
        "max_response_chars": cfg.max_response_chars, "max_prompt_chars": MAX_PROMPT_CHARS, "render_mode": cfg.render_mode,
    }


class RPAEnv(TextCMDPEnv):
    """`RPA-BeaverTails-v0` / `RPA-SafeRLHF-v0`: one attack prompt per step, reward from the flipped reward model."""

    def __init__(self, schema: str = "beavertails", **kwargs: Any) -> None:
        self.config = RPAConfig.from_kwargs(_env_id(schema), kwargs, schema)
        world = _world(self.config)
        super().__init__(world, world.attack_prompts, world.reward_model, world.cost_model, **_options(self.config))
        self.policy_path = self.config.policy or world.policy_path


class RPAVectorEnv(TextCMDPVectorEnv):
    """Batched RPA env: `step(responses)` scores all `num_envs` responses in one pass of each model."""

    def __init__(self, schema: str = "beavertails", num_envs: int = 1, **kwargs: Any) -> None:
        self.config = RPAConfig.from_kwargs(_env_id(schema), kwargs, schema)
        world = _world(self.config)
        super().__init__(world, world.attack_prompts, world.reward_model, world.cost_model, num_envs=num_envs, **_options(self.config))
        self.policy_path = self.config.policy or world.policy_path


def _env_id(schema: str) -> str:
    return {"beavertails": "RPA-BeaverTails-v0", "saferlhf": "RPA-SafeRLHF-v0"}.get(schema, f"RPA env with schema {schema!r}")
