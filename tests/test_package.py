"""The package surface: documented subpackages reachable after `import rlft_gym`, and a light import."""

from __future__ import annotations

import subprocess
import sys


def run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def test_subpackages_are_reachable_after_import_rlft_gym():
    out = run(
        "import rlft_gym; print(rlft_gym.wrappers.CMDP.__name__, rlft_gym.agents.GRPO.__name__, "
        "rlft_gym.baselines.CostGatedReward.__name__, rlft_gym.envs.__name__)"
    )
    assert out == "CMDP GRPO CostGatedReward rlft_gym.envs"


def test_import_stays_light_and_unknown_attributes_fail():
    out = run(
        "import sys, rlft_gym; print(sorted(m for m in ('trl', 'transformers', 'torch') if m in sys.modules))\n"
        "try:\n    rlft_gym.nope\nexcept AttributeError as e:\n    print(e)"
    )
    assert out.splitlines() == ["[]", "module 'rlft_gym' has no attribute 'nope'"]
