"""Environment families built on the core CMDP text env."""
from rlft_gym.envs.rpa import RPAEnv, RPAVectorEnv

__all__ = ["RPAEnv", "RPAVectorEnv"]
