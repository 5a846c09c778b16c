"""Defences from the CLI (tiny world): `rlft-gym defend` and `attack --defence NAME --defence-set k=v`, each kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlft_gym import cache
from rlft_gym.baselines import KLConstraint
from rlft_gym.cli import main
from rlft_gym.experiment import DEFENCES
from rlft_gym.results import read_jsonl
from rlft_gym.transform import checkpoint_fingerprint

DEFEND = ["defend", "refusal-sft", "--preset", "tiny", "--seed", "21", "--set", "steps=2", "--set", "batch_size=4"]
ATTACK = ["attack", "--preset", "tiny", "--steps", "1", "--num-envs", "4", "--eval-every", "1", "--set", "group_size=2"]


def test_defend_prints_the_checkpoint_path(world, tmp_path, capsys):
    assert main(DEFEND) == 0
    path = Path(capsys.readouterr().out.strip())  # stdout holds only the path
    assert path.parent.name == "refusal-sft" and checkpoint_fingerprint(path) == path.name
    config = json.loads((path / cache.MANIFEST).read_text())["config"]["config"]
    assert config == {"steps": 2, "learning_rate": 1e-4, "batch_size": 4, "seed": 21}
    assert main([*DEFEND, "--out", str(tmp_path / "ckpt")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "ckpt")
    assert checkpoint_fingerprint(tmp_path / "ckpt") == path.name


def test_defend_bad_input_is_one_clear_error(world, capsys):
    assert main([*DEFEND, "--set", "stepz=3"]) == 2
    allowed = "allowed: ['steps', 'learning_rate', 'batch_size', 'seed']"
    assert f"unknown kwarg(s) ['stepz'] for defence='refusal-sft'; {allowed}" in capsys.readouterr().out
    assert main([*DEFEND, "--set", "steps=0"]) == 2 and "steps=0 must be a positive int" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["defend", "cost-gate"])
    assert exit_info.value.code == 2 and "invalid choice: 'cost-gate'" in capsys.readouterr().err


def test_attack_on_a_transform_records_the_defended_checkpoint(world, tmp_path, capsys):
    assert main(DEFEND) == 0
    defended = capsys.readouterr().out.strip()
    assert (
        main(
            [
                *ATTACK,
                "--defence",
                "refusal-sft",
                "--defence-set",
                "steps=2",
                "--defence-set",
                "batch_size=4",
                "--defence-set",
                "seed=21",
                "--name",
                "t",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert f"defended checkpoint: {defended}" in capsys.readouterr().out
    rows = read_jsonl(tmp_path / "t.jsonl")
    config = rows[0]["config"]
    assert config["defence"] == "refusal-sft" and config["defence_kwargs"] == {"steps": 2, "batch_size": 4, "seed": 21}
    assert config["defended_checkpoint"] == {"path": defended, "fingerprint": Path(defended).name}
    assert rows[1]["step"] == 0 and rows[1]["kl"] == 0.0  # the attacked checkpoint is its own reference
    assert (tmp_path / "t.png").is_file()


def test_defence_kwargs_reach_a_constraint(world, tmp_path, monkeypatch):
    made = []

    def kl(beta: float = 0.1) -> KLConstraint:
        made.append(KLConstraint(beta))
        return made[-1]

    monkeypatch.setitem(DEFENCES, "kl", ("constraint", kl))
    assert main([*ATTACK, "--defence", "kl", "--defence-set", "beta=0.5", "--name", "k", "--out", str(tmp_path)]) == 0
    assert [c.beta for c in made] == [0.5]
    assert read_jsonl(tmp_path / "k.jsonl")[0]["config"]["defence_kwargs"] == {"beta": 0.5}


def test_bad_defence_kwargs_are_one_clear_error(capsys, tmp_path):
    out = ["--out", str(tmp_path)]
    assert main([*ATTACK, "--defence", "cost-gate", "--defence-set", "treshold=0.3", *out]) == 2
    allowed = "allowed: ['threshold', 'floor', 'margin']"
    assert f"unknown kwarg(s) ['treshold'] for defence='cost-gate'; {allowed}" in capsys.readouterr().out
    assert main([*ATTACK, "--defence-set", "beta=1", *out]) == 2
    assert "unknown kwarg(s) ['beta'] for defence='none'; allowed: []" in capsys.readouterr().out
    assert main([*ATTACK, "--agent", "best-of-n", "--defence", "kl", *out]) == 2
    assert "defence='kl' is a constraint (a loss term) and agent='best-of-n' trains nothing" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())
