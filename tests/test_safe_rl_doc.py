"""docs/safe_rl.md runs: its python blocks (the named costs and the user's own Lagrangian loop) execute on the tiny
world, so the documented plug-in path stays true."""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

torch.set_num_threads(1)

DOC = Path(__file__).resolve().parents[1] / "docs" / "safe_rl.md"


def test_safe_rl_doc_examples_run(world):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    assert namespace["limits"] == {"harm": 0.2, "length": 0.5}
    assert namespace["step"] == 2 and namespace["lam"] >= 0.0 and math.isfinite(namespace["loss"].item())
    assert namespace["cost"].shape == (8,) and set(namespace["info"]["costs"]) == {"harm"}
