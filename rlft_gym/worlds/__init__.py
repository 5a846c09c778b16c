"""Worlds: the data, models and scorers an environment runs on."""

from __future__ import annotations

from rlft_gym.worlds.base import CATEGORIES, SCHEMAS, PromptSet, World, category_flags

WORLDS = ("embedded", "hf")


def load_world(name: str = "embedded", **kwargs) -> World:
    """Build or load a world by name (`"embedded"` or `"hf"`); kwargs go to the world's constructor."""
    if name == "embedded":
        from rlft_gym.worlds.embedded import EmbeddedWorld

        return EmbeddedWorld(**kwargs)
    if name == "hf":
        from rlft_gym.worlds.hf import HFWorld

        return HFWorld(**kwargs)
    raise ValueError(f"world={name!r} is not available; expected one of {WORLDS}")


__all__ = ["CATEGORIES", "SCHEMAS", "WORLDS", "PromptSet", "World", "category_flags", "load_world"]
