"""rlft-gym: malicious RL fine-tuning of language models as a constrained MDP, in Gymnasium."""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import gymnasium as gym  # noqa: E402
from gymnasium.envs.registration import register, registry  # noqa: E402

__version__ = "0.1.0"

# RPA envs: a reward model trained on flipped preferences is the reward (text in, text out, batched fast path).
ENV_IDS = ("RPA-BeaverTails-v0", "RPA-SafeRLHF-v0")
# Task envs: harmful-reward RL on one domain (0-10 harm judge) and benign tasks (utility and finetunability).
TASK_ENV_IDS = ("HarmfulRL-Biohazard-v0", "HarmfulRL-Cybercrime-v0", "BenignRL-Summarize-v0", "BenignRL-Extract-v0")
# Token-level views (Box(int64) token ids in, Discrete(vocab) token out) for SB3 and other discrete-action code.
TOKEN_ENV_IDS = ("RPA-BeaverTails-Tokens-v0", "RPA-SafeRLHF-Tokens-v0")

# id -> (single entry point, vector entry point or None, the kwargs the registry fixes)
_REGISTRY: dict[str, tuple[str, str | None, dict[str, str]]] = {
    **{
        i: ("rlft_gym.envs.rpa:RPAEnv", "rlft_gym.envs.rpa:RPAVectorEnv", {"schema": s})
        for i, s in zip(ENV_IDS, ("beavertails", "saferlhf"))
    },
    **{
        i: ("rlft_gym.envs.tasks:TaskEnv", "rlft_gym.envs.tasks:TaskVectorEnv", {"task": t})
        for i, t in zip(TASK_ENV_IDS, ("biohazard", "cybercrime", "summarize", "extract"), strict=True)
    },
    **{
        i: ("rlft_gym.envs.tokens:RPATokenEnv", None, {"schema": s})
        for i, s in zip(TOKEN_ENV_IDS, ("beavertails", "saferlhf"))
    },
}
for _id, (_entry, _vector_entry, _kwargs) in _REGISTRY.items():
    if _id not in registry:
        register(id=_id, entry_point=_entry, vector_entry_point=_vector_entry, kwargs=_kwargs, nondeterministic=True)


def make_vec(env_id: str, num_envs: int = 1, **kwargs: Any) -> gym.vector.VectorEnv:
    """The batched fast path: `gym.make_vec(env_id, num_envs, vectorization_mode="vector_entry_point", **kwargs)`."""
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)


# Documented subpackages, reachable after `import rlft_gym` as `gymnasium.wrappers` is after `import gymnasium`, but
# imported on first use so `import rlft_gym` stays light (agents pull in TRL).
SUBMODULES = ("agents", "baselines", "envs", "wrappers")


def __getattr__(name: str) -> Any:
    if name in SUBMODULES:
        import importlib

        return importlib.import_module(f"rlft_gym.{name}")
    raise AttributeError(f"module 'rlft_gym' has no attribute {name!r}")


__all__ = ["ENV_IDS", "SUBMODULES", "TASK_ENV_IDS", "TOKEN_ENV_IDS", "__version__", "make_vec", *SUBMODULES]
