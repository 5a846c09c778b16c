"""Environment families built on the core CMDP text env."""
from rlft_gym.envs.rpa import RPAEnv, RPAVectorEnv
from rlft_gym.envs.tokens import RPATokenEnv

__all__ = ["RPAEnv", "RPATokenEnv", "RPAVectorEnv"]
