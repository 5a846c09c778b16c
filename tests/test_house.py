"""House rules the code base keeps: one validator module, no import cycle for callbacks, a library train module, and
no references to notes that users do not have."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for d in ("rlft_gym", "agents", "baselines", "envs") for p in (ROOT / d).rglob("*.py")]


def test_validators_live_in_one_module():
    pattern = re.compile(r"^def (require_\w+|check_finite)\(", re.M)
    found = {p.relative_to(ROOT).as_posix(): pattern.findall(p.read_text()) for p in SOURCES}
    assert {path for path, names in found.items() if names} == {"rlft_gym/validate.py"}


def test_callbacks_do_not_import_the_agent_module():
    code = "import sys, rlft_gym.callbacks; print('rlft_gym.agent' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "False"


def test_train_is_a_library_and_the_cli_owns_the_command_line():
    text = (ROOT / "rlft_gym" / "train.py").read_text()
    assert not re.search(r"^\s*(import argparse|from rich|import rich)", text, re.M)
    assert "def add_train_commands" in (ROOT / "rlft_gym" / "cli.py").read_text()


def test_code_and_docs_cite_no_notes_users_lack():
    texts = SOURCES + [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    cited = [
        p.relative_to(ROOT).as_posix()
        for p in texts
        if re.search(r"\.\./shared|EMBEDDED_WORLD_NOTES|DEFENCES\.md|shared/papers", p.read_text())
    ]
    assert cited == []
