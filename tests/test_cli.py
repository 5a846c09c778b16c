"""The CLI as a user runs it (tiny world)."""

from __future__ import annotations

import json

import pytest
from hf_fixtures import write_dataset, write_models

from rlft_gym import agents
from rlft_gym.cli import main
from rlft_gym.experiment import AGENTS
from rlft_gym.results import read_jsonl


def test_world_info(world, capsys):
    assert main(["world", "info", "--preset", "tiny"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fingerprint"] == world.fingerprint


def test_attack_and_plot(world, tmp_path, capsys):
    code = main(
        [
            "attack",
            "--preset",
            "tiny",
            "--steps",
            "2",
            "--num-envs",
            "8",
            "--eval-every",
            "1",
            "--defence",
            "cost-gate",
            "--name",
            "t",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "in safe set" in out and "plot:" in out
    rows = read_jsonl(tmp_path / "t.jsonl")
    assert rows[-1]["type"] == "summary" and rows[0]["config"]["defence"] == "cost-gate"
    assert (tmp_path / "t.png").is_file()
    assert main(["plot", str(tmp_path / "t.jsonl"), "-o", str(tmp_path / "again.png")]) == 0
    assert (tmp_path / "again.png").is_file()


def test_bad_cli_input_is_one_clear_error(world, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["attack", "--preset", "tiny", "--defence", "magic", "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and "invalid choice: 'magic'" in capsys.readouterr().err
    assert main(["attack", "--preset", "tiny", "--set", "group_size=0", "--steps", "1", "--out", str(tmp_path)]) == 2
    assert "group_size=0 must be an int >= 2" in capsys.readouterr().out
    assert main(["attack", "--preset", "tiny", "--flip-ratio", "3", "--steps", "1", "--out", str(tmp_path)]) == 2
    assert "flip_ratio=3.0 is invalid" in capsys.readouterr().out
    assert main(["attack", "--preset", "tiny", "--env-set", "flip_raito=0.5", "--out", str(tmp_path)]) == 2
    assert "unknown kwarg(s) ['flip_raito']" in capsys.readouterr().out


def test_table_shows_a_breach_at_step_zero(capsys):
    from rlft_gym.cli import _table
    from rlft_gym.monitor import safe_set_summary

    row = {"harmfulness": 0.5, "helpfulness": None, "eval_reward": 0.0, "distinct_2": 0.5, "perplexity": 2.0}
    _table([("r", safe_set_summary([{**row, "step": 0}, {**row, "step": 10}], cost_limit=0.2))])
    out = capsys.readouterr().out
    assert "never" not in out and "n/a" in out and "0%" in out


def test_attack_with_ppo(world, tmp_path):
    assert (
        main(
            [
                "attack",
                "--preset",
                "tiny",
                "--agent",
                "ppo",
                "--steps",
                "1",
                "--num-envs",
                "16",
                "--eval-every",
                "1",
                "--set",
                "mini_batch_size=8",
                "--name",
                "p",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    config = read_jsonl(tmp_path / "p.jsonl")[0]["config"]
    assert config["agent"] == "ppo" and config["init_kl_coef"] == 0.2 and config["mini_batch_size"] == 8
    assert config["learning_rate"] == 1.41e-5  # the agent's own default when --lr is not given


def test_every_registered_attack_is_offered():
    assert {"best-of-n", "expert-grpo"} <= set(AGENTS) and all(hasattr(agents, cls) for cls in AGENTS.values())


@pytest.mark.parametrize("agent, hparam", [("best-of-n", "n=2"), ("expert-grpo", "group_size=2")])
def test_attack_with_each_new_agent(world, tmp_path, agent, hparam):
    assert (
        main(
            [
                "attack",
                "--preset",
                "tiny",
                "--agent",
                agent,
                "--set",
                hparam,
                "--steps",
                "1",
                "--num-envs",
                "4",
                "--eval-every",
                "1",
                "--name",
                agent,
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    rows = read_jsonl(tmp_path / f"{agent}.jsonl")
    assert rows[0]["config"]["agent"] == agent and [r["step"] for r in rows if r["type"] == "eval"] == [0, 1]
    assert rows[-1]["type"] == "summary" and (tmp_path / f"{agent}.png").is_file()


def test_attack_on_the_hf_world_through_env_set(tmp_path):
    models, data = write_models(tmp_path / "models"), write_dataset(tmp_path / "bt", "beavertails")
    env = {
        "world": "hf",
        "dataset": str(data),
        "policy": models["policy"],
        "reward_model": models["reward_model"],
        "cost_model": models["cost_model"],
        "num_attack_pairs": 16,
        "num_eval_prompts": 6,
        "max_new_tokens": 8,
    }
    env_set = [arg for k, v in env.items() for arg in ("--env-set", f"{k}={v}")]
    assert (
        main(
            [
                "attack",
                "--steps",
                "2",
                "--num-envs",
                "4",
                "--eval-every",
                "1",
                "--set",
                "group_size=2",
                "--name",
                "hf",
                "--out",
                str(tmp_path / "runs"),
                *env_set,
            ]
        )
        == 0
    )
    rows = read_jsonl(tmp_path / "runs" / "hf.jsonl")
    assert rows[0]["world"] == "hf" and rows[0]["config"]["env_kwargs"] == {"cost_limit": 0.2, **env}  # no world_preset
    assert [r["step"] for r in rows if r["type"] == "eval"] == [0, 1, 2] and rows[-1]["type"] == "summary"
    assert (tmp_path / "runs" / "hf.png").is_file()
