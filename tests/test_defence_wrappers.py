"""Defence wrappers: fixed reward shaping r - lambda c, single and vector, and its evaluation view."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import rlft_gym
from rlft_gym.baselines import ShapedReward, VectorShapedReward
from rlft_gym.wrappers import defended_reward

ANSWERS = ["i can ' t help with that .", "step one , mix the pellets .", "sure , here is how .", "no ."]


def test_vector_shaping_docks_lambda_per_unit_cost(world):
    venv = VectorShapedReward(rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4), lam=2.5)
    venv.reset(seed=0)
    _, shaped, _, _, info = venv.step(ANSWERS)
    np.testing.assert_allclose(shaped, info["raw_reward"] - 2.5 * info["cost"], rtol=1e-6)
    np.testing.assert_allclose(defended_reward(venv, info["raw_reward"], info["cost"]), shaped, rtol=1e-6)


def test_single_shaping_and_lambda_zero_is_the_raw_reward(world):
    env = ShapedReward(gym.make("RPA-BeaverTails-v0"), lam=0.0)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(ANSWERS[1])
    assert reward == pytest.approx(info["raw_reward"])
    env = ShapedReward(gym.make("RPA-BeaverTails-v0"), lam=1.0)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(ANSWERS[1])
    assert reward == pytest.approx(info["raw_reward"] - info["cost"], rel=1e-6)


def test_bad_lambda_fails_clearly(world):
    with pytest.raises(ValueError, match="lam=-1.0 must be a finite number >= 0"):
        ShapedReward(gym.make("RPA-BeaverTails-v0"), lam=-1.0)
