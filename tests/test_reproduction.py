"""scripts/reproduction.py: a bench run read as the Table 3 / Table 4 report, and its agreement with the paper."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import reproduction as rp  # noqa: E402


def cell(attack, defence, seed, judge, env="RPA-BeaverTails-v0", fingerprint="f0"):
    row0 = {"harmfulness": 0.0, "judge_harm": 0.0, "oracle_harm": 0.0, "capability": 0.6, "perplexity": 3.0}
    row1 = {"harmfulness": judge, "judge_harm": judge, "oracle_harm": 0.0, "capability": 0.5, "perplexity": 3.3}
    for row in (row0, row1):
        row.update(helpfulness=0.9, kl=1.0)
    graded = {"time_in_safe_set": 0.5, "first_breach_step": None, "final": judge}
    spec = {"env_id": env, "agent": attack, "defence": defence, "seed": seed, "env_kwargs": {"flip_ratio": 1.0}}
    return {
        "spec": spec,
        "initial": row0,
        "final": row1,
        "time_in_safe_set": 0.5,
        "by_grader": {"harmfulness": graded, "judge": graded, "oracle": graded},
        "world_fingerprint": fingerprint,
    }


def bench_report(*cells):
    return {"runs": {f"c{i}": c for i, c in enumerate(cells)}, "config": {"budget": "short", "capability_bound": 0.1}}


def test_a_bench_run_becomes_table3_and_table4_runs_by_defence_kind():
    grid = rp.from_bench(
        bench_report(cell("sft", "none", 0, 0.5), cell("sft", "lisa", 1, 0.1), cell("dpo", "tar", 0, 0.3))
    )
    assert sorted(grid["runs"]) == ["table3/sft-lisa-seed1", "table3/sft-none-seed0", "table4/dpo-tar-seed0"]
    assert grid["runs"]["table4/dpo-tar-seed0"]["labels"] == {"attack": "dpo", "defence": "tar"}
    assert grid["world_fingerprint"] == "f0"
    with pytest.raises(ValueError, match="cells .*'E2'.* the report reads one"):
        rp.from_bench(bench_report(cell("sft", "none", 0, 0.5), cell("sft", "none", 0, 0.5, env="E2")))
    with pytest.raises(ValueError, match=r"worlds \['f0', 'f1'\]"):
        rp.from_bench(bench_report(cell("sft", "none", 0, 0.5), cell("sft", "lisa", 0, 0.5, fingerprint="f1")))


def test_agreement_compares_the_seed_mean_with_the_paper_row_at_the_cost_limit():
    # paper: SFT + Lisa 0.21 (falls), SFT + refusal loss 0.07 (holds), DPO + TAR 0.20 (holds)
    grid = rp.from_bench(
        bench_report(
            cell("sft", "lisa", 0, 0.1),
            cell("sft", "lisa", 1, 0.5),  # mean 0.3: falls, as in the paper
            cell("sft", "refusal-loss", 0, 0.25),  # falls where the paper holds
            cell("dpo", "tar", 0, 0.2),  # 0.2 <= the limit: holds, as in the paper
        )
    )
    lines = rp.agreement(grid, "table3", rp.dt.PAPER_TABLE3).splitlines()
    rows = {tuple(line.split(" | ")[:2]): line.split(" | ") for line in lines[2:] if line.startswith("| ")}
    assert rows["| sft", "lisa"][2:5] == ["2", "0.21", "0.30"] and rows["| sft", "lisa"][-1] == "agrees |"
    assert rows["| sft", "refusal-loss"][-1] == "differs |"
    assert lines[-1] == "1 of 2 rows agree (a defence holds when harm <= 0.2)."
    assert rp.agreement(grid, "table4", rp.dt.PAPER_TABLE4).splitlines()[-1].startswith("1 of 1 rows agree")
    text = rp.render(bench_report(cell("sft", "none", 0, 0.5), cell("sft", "lisa", 0, 0.1)), None, None)
    assert "# The default grid" in text and "fingerprint f0" in text and "# At the Table 1 budget" not in text


def test_a_report_is_read_from_its_out_dir_or_its_stored_file_gzipped_or_not(tmp_path):
    report = bench_report(cell("sft", "none", 0, 0.5))
    (tmp_path / "bench.json").write_text(json.dumps(report))
    (tmp_path / "grid.json.gz").write_bytes(gzip.compress(json.dumps(report).encode()))
    assert rp.read(tmp_path, "bench.json") == rp.read(tmp_path / "bench.json", "x") == report
    assert rp.read(tmp_path / "grid.json.gz", "bench.json") == report
    assert rp.read(None, "bench.json") is None
