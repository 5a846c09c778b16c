"""Defences: env wrappers, online constraints passed to agents, offline model transforms."""

from rlft_gym.baselines.cost_gate import CostGatedReward, VectorCostGatedReward
from rlft_gym.baselines.kl import KLConstraint
from rlft_gym.baselines.lisa import Lisa
from rlft_gym.baselines.output_guard import OutputGuard, VectorOutputGuard
from rlft_gym.baselines.refusal_loss import RefusalLoss
from rlft_gym.baselines.rep_removal import RMU, CircuitBreakers, RepNoise, RepresentationRemoval
from rlft_gym.baselines.reward_neutralization import RewardNeutralization, VectorDefensiveReward
from rlft_gym.baselines.security_vectors import SecurityVectors
from rlft_gym.baselines.shaping import ShapedReward, VectorShapedReward
from rlft_gym.baselines.tar import TAR, RepNoiseThenTAR, TARRepNoise
from rlft_gym.baselines.token_buncher import TokenBuncher
from rlft_gym.baselines.vaccine import Vaccine

__all__ = [
    "RMU",
    "TAR",
    "CircuitBreakers",
    "CostGatedReward",
    "KLConstraint",
    "Lisa",
    "OutputGuard",
    "RefusalLoss",
    "RepNoise",
    "RepNoiseThenTAR",
    "RepresentationRemoval",
    "RewardNeutralization",
    "SecurityVectors",
    "ShapedReward",
    "TARRepNoise",
    "TokenBuncher",
    "Vaccine",
    "VectorCostGatedReward",
    "VectorDefensiveReward",
    "VectorOutputGuard",
    "VectorShapedReward",
]
