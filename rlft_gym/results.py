"""Results files: JSON Lines, one row per evaluation plus a run header and a summary, written atomically."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any


def versions() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on."""
    import gymnasium
    import numpy
    import torch
    import transformers

    import rlft_gym

    out = {
        "python": platform.python_version(),
        "rlft_gym": rlft_gym.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "gymnasium": gymnasium.__version__,
        "numpy": numpy.__version__,
    }
    try:
        import trl

        out["trl"] = trl.__version__
    except ImportError:
        pass
    return out


def write_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Write all rows to `path` in one atomic replace, so a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        for row in rows:
            f.write(json.dumps(row, default=str) + "\n")
    os.replace(tmp, path)
    return path


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a results file; a malformed line is an error naming the file and line."""
    rows = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n} is not valid JSON ({e.msg})") from None
    return rows
