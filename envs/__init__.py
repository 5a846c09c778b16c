"""Environment families built on the core CMDP text env."""

from rlft_gym.envs.config import EnvConfig
from rlft_gym.envs.rpa import RPAConfig, RPAEnv, RPAVectorEnv
from rlft_gym.envs.tasks import TaskConfig, TaskEnv, TaskVectorEnv
from rlft_gym.envs.tokens import RPATokenEnv

__all__ = ["EnvConfig", "RPAConfig", "RPAEnv", "RPATokenEnv", "RPAVectorEnv", "TaskConfig", "TaskEnv", "TaskVectorEnv"]
