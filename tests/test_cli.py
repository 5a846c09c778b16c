"""The CLI as a user runs it (tiny world)."""
from __future__ import annotations

import json

from rlft_gym.cli import main
from rlft_gym.results import read_jsonl


def test_world_info(world, capsys):
    assert main(["world", "info", "--preset", "tiny"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fingerprint"] == world.fingerprint


def test_attack_and_plot(world, tmp_path, capsys):
    code = main(["attack", "--preset", "tiny", "--steps", "2", "--num-envs", "8", "--eval-every", "1", "--defence", "cost-gate",
                 "--name", "t", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "in safe set" in out and "plot:" in out
    rows = read_jsonl(tmp_path / "t.jsonl")
    assert rows[-1]["type"] == "summary" and rows[0]["config"]["defence"] == "cost-gate"
    assert (tmp_path / "t.png").is_file()
    assert main(["plot", str(tmp_path / "t.jsonl"), "-o", str(tmp_path / "again.png")]) == 0
    assert (tmp_path / "again.png").is_file()


def test_bad_cli_input_is_one_clear_error(world, tmp_path, capsys):
    assert main(["attack", "--preset", "tiny", "--defence", "magic", "--out", str(tmp_path)]) == 2
    assert "defence='magic' is not one of" in capsys.readouterr().out
    assert main(["attack", "--preset", "tiny", "--flip-ratio", "3", "--steps", "1", "--out", str(tmp_path)]) == 2
    assert "flip_ratio=3.0 is invalid" in capsys.readouterr().out
