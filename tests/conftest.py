"""Test session setup: offline, quiet, and a tiny embedded world built once into a temporary $RLFT_GYM_HOME."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", category=FutureWarning)

import pytest  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    # Unit tests run on the "tiny" preset (same recipe, fewer steps); slow tests pass world_preset="standard".
    # Worlds built by tests live in the checkout (git-ignored), never in the user's own $RLFT_GYM_HOME.
    os.environ["RLFT_GYM_HOME"] = str(config.rootpath / ".rlft_gym_test_home")
    os.environ["RLFT_GYM_WORLD_PRESET"] = "tiny"
    # SB3 makes a log folder for every model (in /tmp unless told): keep them in the git-ignored test home
    os.environ["SB3_LOGDIR"] = str(config.rootpath / ".rlft_gym_test_home" / "sb3-logs")


@pytest.fixture(scope="session")
def world():
    """The tiny embedded world (built on first use, then cached for the session and later runs)."""
    from rlft_gym.worlds import load_world

    return load_world("embedded", preset="tiny")
