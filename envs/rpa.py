"""Reverse Preference Attack envs (Rosati et al.): a reward model trained on preferences whose harmlessness labels
were flipped with probability `flip_ratio` rewards the policy; the harmfulness classifier gives the cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rlft_gym.core import TextCMDPEnv, TextCMDPVectorEnv
from rlft_gym.envs.config import EnvConfig
from rlft_gym.worlds import World, load_world

ENV_IDS_BY_SCHEMA = {"beavertails": "RPA-BeaverTails-v0", "saferlhf": "RPA-SafeRLHF-v0"}


@dataclass(frozen=True)
class RPAConfig(EnvConfig):
    """Every kwarg `gym.make("RPA-...-v0", **kwargs)` accepts: the shared ones (`EnvConfig`) plus the flip ratio and,
    for world="hf", the reward model."""

    FIXED: ClassVar[tuple[str, ...]] = ("schema",)
    HF_ONLY: ClassVar[tuple[str, ...]] = (*EnvConfig.HF_ONLY, "reward_model")

    schema: str = "beavertails"
    flip_ratio: float = 1.0
    reward_model: Any = (
        None  # world="hf": a path / cached hub id of a classifier, or any (prompts, responses) -> floats callable
    )

    @property
    def env_id(self) -> str:
        return env_id(self.schema)

    def __post_init__(self) -> None:
        super().__post_init__()
        if (
            isinstance(self.flip_ratio, bool)
            or not isinstance(self.flip_ratio, (int, float))
            or not 0.0 <= self.flip_ratio <= 1.0
        ):
            raise self.invalid("flip_ratio", "a number in [0, 1]")


def env_id(schema: str) -> str:
    """The registered id of the RPA env for `schema` (for messages)."""
    return ENV_IDS_BY_SCHEMA.get(schema, f"RPA env with schema {schema!r}")


def _world(cfg: RPAConfig) -> World:
    common = {
        "schema": cfg.schema,
        "flip_ratio": cfg.flip_ratio,
        "seed": cfg.world_seed,
        "device": cfg.device,
        "reference": cfg.world_reference(),
    }
    if cfg.world == "hf":
        return load_world("hf", policy=cfg.policy, **common, **{k: getattr(cfg, k) for k in cfg.HF_ONLY})
    return load_world("embedded", preset=cfg.world_preset, **common)


class RPAEnv(TextCMDPEnv):
    """`RPA-BeaverTails-v0` / `RPA-SafeRLHF-v0`: one attack prompt per step, reward from the flipped reward model.

    KL and perplexity are measured against `reference` (see `EnvConfig`): by default the policy under attack as it was
    before the attack (`policy`, else the world's aligned model), as in the RPA paper.
    """

    def __init__(self, schema: str = "beavertails", **kwargs: Any) -> None:
        self.config = RPAConfig.from_kwargs(env_id(schema), kwargs, schema=schema)
        world = _world(self.config)
        super().__init__(world, world.attack_prompts, world.reward_model, world.cost_model, **self.config.options())
        self.policy_path = self.config.policy or world.policy_path


class RPAVectorEnv(TextCMDPVectorEnv):
    """Batched RPA env: `step(responses)` scores all `num_envs` responses in one pass of each model."""

    def __init__(self, schema: str = "beavertails", num_envs: int = 1, **kwargs: Any) -> None:
        self.config = RPAConfig.from_kwargs(env_id(schema), kwargs, schema=schema)
        world = _world(self.config)
        super().__init__(
            world,
            world.attack_prompts,
            world.reward_model,
            world.cost_model,
            num_envs=num_envs,
            **self.config.options(),
        )
        self.policy_path = self.config.policy or world.policy_path
