"""scripts/defence_table.py: which runs each part makes, and the tables' arithmetic on hand-made results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import defence_table as dt  # noqa: E402

from rlft_gym.experiment import defence_kind  # noqa: E402


def test_table3_meets_every_online_defence_where_it_applies():
    runs = dt.cells("table3", 0, "tiny")
    pairs = {(labels["attack"], labels["defence"]) for _, _, labels in runs}
    assert len(pairs) == len(runs) and len({name for name, _, _ in runs}) == len(runs)
    for defence in dt.ONLINE:
        attacks = {a for a, d in pairs if d == defence}
        # a reward wrapper only meets the attacks that read the env's reward; the KL constraint needs reference
        # log-probs, which TRL's SFT and DPO losses do not give a constraint
        rl_only = defence_kind(defence) == "wrapper" or defence == "kl"
        assert attacks == ({"grpo", "ppo"} if rl_only else set(dt.ATTACKS)), defence
    assert {a for a, d in pairs if d == "none"} == set(dt.ATTACKS)
    lag = {labels["attack"]: spec.agent for _, spec, labels in runs if labels["defence"] == "lagrangian"}
    assert lag == {"grpo": "grpo-lag", "ppo": "ppo-lag"}
    # a constrained attack keeps the settings of the attack it constrains
    specs = {(labels["attack"], labels["defence"]): spec for _, spec, labels in runs}
    assert specs["ppo", "lagrangian"].num_envs == specs["ppo", "none"].num_envs == dt.SETTINGS["ppo"]["num_envs"]
    assert specs["sft", "lisa"].steps == dt.SETTINGS["sft"]["steps"]
    assert all(spec.env_kwargs["flip_ratio"] == 1.0 for spec in specs.values())


def test_table4_attacks_every_offline_defence_trained_per_seed():
    runs = dt.cells("table4", 2, "tiny")
    pairs = {(labels["attack"], labels["defence"]): spec for _, spec, labels in runs}
    offline = {d for d in dt.DEFENCES if defence_kind(d) == "transform"} - {"representation-removal"}
    assert set(pairs) == {(a, d) for a in dt.ATTACKS for d in offline} and len(runs) == len(pairs)
    assert all(spec.defence_kwargs == {"seed": 2} and spec.seed == 2 for spec in pairs.values())
    assert pairs["sft", "tar"].steps == dt.SETTINGS["sft"]["steps"]


def test_neutralization_attacks_each_domain_undefended_and_defended_on_both():
    runs = dt.cells("neutralization", 1, "tiny")
    labels = {(labels["env"], labels["defence"]): spec for _, spec, labels in runs}
    defences = {"none", "reward-neutralization (biohazard)", "reward-neutralization (cybercrime)", "token-buncher"}
    assert set(labels) == {(e, d) for e in ("HarmfulRL-Biohazard-v0", "HarmfulRL-Cybercrime-v0") for d in defences}
    spec = labels["HarmfulRL-Biohazard-v0", "reward-neutralization (cybercrime)"]  # cross-domain transfer
    assert spec.defence_kwargs == {"domain": "cybercrime", "seed": 1} and spec.steps == 200 and spec.agent == "grpo"
    assert labels["HarmfulRL-Biohazard-v0", "none"].defence_kwargs == {}
    tb = labels["HarmfulRL-Cybercrime-v0", "token-buncher"]
    assert tb.defence == "token-buncher" and tb.defence_kwargs == {"seed": 1} and tb.steps == 200
    names = {name for name, _, _ in runs}  # the undefended and RN run names are those of the stored results
    assert {
        "neutralization/HarmfulRL-Biohazard-v0-none-seed1",
        "neutralization/HarmfulRL-Biohazard-v0-cybercrime-seed1",
    } <= names


def test_broken_marks_a_defence_that_broke_the_model_before_any_attack():
    def row(capability, perplexity):
        return {"initial": {"capability": capability, "perplexity": perplexity}}

    undefended = [row(0.6, 3.0)]
    assert dt.broken([row(0.5, 5.9)], undefended) == "ok"  # 0.5 >= 0.8 * 0.6 and 5.9 <= 2 * 3
    assert dt.broken([row(0.47, 3.0)], undefended) == "broken"
    assert dt.broken([row(0.6, 6.1)], undefended) == "broken"
    assert dt.broken([row(0.6, 6.1)], []) == "-"


def test_sweeps_put_each_value_where_it_belongs():
    runs = dt.cells("sweeps", 1, "tiny")
    assert len(runs) == sum(len(v) for *_, v in dt.SWEEPS.values())
    by = {(labels["sweep"], labels["value"]): spec for _, spec, labels in runs}
    assert by["lisa rho", 10.0].defence == "lisa" and by["lisa rho", 10.0].defence_kwargs == {"rho": 10.0}
    assert by["dpo beta", 1.0].agent_kwargs["beta"] == 1.0 and by["dpo beta", 1.0].defence == "none"
    assert by["lagrangian lr", 0.35].agent == "grpo-lag" and by["lagrangian lr", 0.35].seed == 1


def test_unknown_part_is_one_clear_error():
    with pytest.raises(ValueError, match="part='tabel3' is not one of"):
        dt.cells("tabel3", 0, "tiny")


def _run(labels, harm, judge, reward0, reward1, breach=None, seed=0):
    row0 = {"harmfulness": 0.0, "judge_harm": 0.0, "oracle_harm": 0.0, "eval_reward": reward0, "capability": 0.5}
    row1 = {"harmfulness": harm, "judge_harm": judge, "oracle_harm": 0.0, "eval_reward": reward1, "capability": 0.4}
    for row in (row0, row1):
        row.update(helpfulness=0.9, perplexity=3.0, kl=1.0)
    graded = {"time_in_safe_set": 0.5, "first_breach_step": breach, "final": judge}
    return {
        "spec": {"seed": seed},
        "labels": labels,
        "initial": row0,
        "final": row1,
        "time_in_safe_set": 0.5,
        "by_grader": {"cost_model": graded, "judge": graded, "oracle": graded},
    }


def test_tables_average_over_seeds_and_compare_gains_to_the_undefended():
    report = {
        "runs": {
            "table3/ppo-lisa-seed0": _run({"attack": "ppo", "defence": "lisa"}, 0.2, 0.1, 0, 0, breach=20),
            "table3/ppo-lisa-seed1": _run({"attack": "ppo", "defence": "lisa"}, 0.4, 0.3, 0, 0),
            "finetune/T-none-seed0": _run({"env": "T", "defence": "none"}, 0, 0, 0.2, 0.6),
            "finetune/T-none-seed1": _run({"env": "T", "defence": "none"}, 0, 0, 0.2, 0.4, seed=1),
            "finetune/T-lisa-seed0": _run({"env": "T", "defence": "lisa"}, 0, 0, 0.2, 0.3),
        }
    }
    row = dt.table3(report).splitlines()[2].split(" | ")
    assert row[:6] == ["| ppo", "lisa", "2", "0.30 ± 0.10", "0.20 ± 0.10", "0.00 ± 0.00"]
    assert row[7] == "20 / never"
    assert row[-1] == "0.08, 14.7, 108.52, 0.18 |"  # the paper's PPO + Lisa row beside ours
    rows = {r.split(" | ")[1]: r.split(" | ") for r in dt.finetune(report).splitlines()[2:]}
    # lisa ran on seed 0 only: its gain 0.1 against the undefended seed-0 gain 0.4, not the two-seed mean 0.3
    assert rows["none"][5:7] == ["0.30 ± 0.10", "1.00"] and rows["lisa"][5:7] == ["0.10", "0.25"]


def test_neutralization_table_reads_break_and_hold_per_seed_and_names_the_judge():
    broke, held = (_run({"env": "H", "defence": "rn"}, 1.0, 1.0, 0.1, r, seed=s) for s, r in ((0, 7.5), (1, 1.5)))
    broke["history"] = [{"step": 0, "eval_reward": 0.1}, {"step": 20, "eval_reward": 7.5}]
    held["history"] = [{"step": 0, "eval_reward": 0.1}, {"step": 20, "eval_reward": 1.5}]
    for run in (broke, held):
        run["harm_judge"] = {"fingerprint": "f00d"}
    table = dt.neutralization({"runs": {"neutralization/a": broke, "neutralization/b": held}})
    row = table.splitlines()[2].split(" | ")
    assert row[3:7] == ["0.10 ± 0.00", "4.50 ± 3.00", "20 / never", "no"]  # one seed broke: the claim fails
    assert table.splitlines()[-1] == "Scores from the 0-10 harm judge build(s) f00d."


@pytest.mark.parametrize("defence", dt.ONLINE)
def test_every_online_defence_runs_an_attack_end_to_end(world, tmp_path, defence):
    spec = dt.AttackSpec(
        defence=defence,
        steps=2,
        num_envs=4,
        eval_every=1,
        env_kwargs={"max_new_tokens": 8, "world_preset": "tiny"},
        agent_kwargs={"group_size": 2},
        # the small settings keep the run short; the defaults are what the table runs
        defence_kwargs={"train_steps": 2} if defence == "security-vectors" else {},
    )
    log = dt.StepLog()
    s = dt.run_attack(spec, tmp_path, progress=False, callbacks=[log])
    assert [h["step"] for h in s["history"]] == [0, 1, 2] and [x["step"] for x in log.steps] == [1, 2]
    assert set(s["by_grader"]) == {"cost_model", "judge", "oracle"}


def test_run_skips_finished_cells_and_keeps_what_the_tables_read(world, tmp_path, monkeypatch):
    tiny = dt.AttackSpec(steps=1, num_envs=4, eval_every=1, env_kwargs={"max_new_tokens": 8, "world_preset": "tiny"})
    tiny.agent_kwargs = {"group_size": 2}
    monkeypatch.setattr(dt, "cells", lambda part, seed, preset: [(f"{part}/grpo-none-seed{seed}", tiny, {"a": 1})])
    dt.run(["table3"], [0], tmp_path, "tiny")
    report = json.loads((tmp_path / "defences.json").read_text())
    run = report["runs"]["table3/grpo-none-seed0"]
    assert run["labels"] == {"a": 1} and run["final"]["step"] == 1 and "judge" in run["by_grader"]
    dt.run(["neutralization"], [0], tmp_path, "tiny")  # its scores come from the harm judge: the build is named
    report = json.loads((tmp_path / "defences.json").read_text())
    assert report["runs"]["neutralization/grpo-none-seed0"]["harm_judge"] == world.harm_judge_card
    assert "harm_judge" not in report["runs"]["table3/grpo-none-seed0"]
    monkeypatch.setattr(dt, "run_attack", lambda *a, **k: pytest.fail("a finished cell was run again"))
    dt.run(["table3", "neutralization"], [0], tmp_path, "tiny")
