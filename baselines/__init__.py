"""Defences: env wrappers, online constraints passed to agents, offline model transforms."""

from rlft_gym.baselines.cost_gate import CostGatedReward, VectorCostGatedReward
from rlft_gym.baselines.kl import KLConstraint
from rlft_gym.baselines.shaping import ShapedReward, VectorShapedReward

__all__ = ["CostGatedReward", "KLConstraint", "ShapedReward", "VectorCostGatedReward", "VectorShapedReward"]
