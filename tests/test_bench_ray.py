"""`rlft-gym bench` on Ray: the backend keys and their checks, which backend "auto" picks, the one error without Ray,
cpus_per_cell as torch threads, the hf grid of docs/scale.md, and a tiny grid end to end as Ray tasks on a local
two-CPU cluster, resumed after a lost record."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
from test_bench import TINY_GRID

from rlft_gym import bench
from rlft_gym.bench import BenchConfig
from rlft_gym.cli import build_parser


@pytest.fixture(scope="module")
def ray_cluster():
    """A fresh local Ray cluster of 2 CPUs (not one that may run on this machine), shut down after the module."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_backend_keys_are_checked_and_auto_picks_ray_only_when_asked(tmp_path, monkeypatch):
    for kwargs, match in [
        ({"backend": "slurm"}, "backend='slurm' is not one of"),
        ({"cpus_per_cell": 0}, "cpus_per_cell=0 must be a positive"),
        ({"gpus_per_cell": -1}, "gpus_per_cell=-1 must be a finite number >= 0"),
        ({"gpus_per_cell": 1.5}, "gpus_per_cell=1.5 must be below 1"),
        ({"ray_address": "head:6379", "backend": "local"}, "names a Ray cluster but backend='local'"),
        ({"env_kwargs": {"flip_ratio": 0.5}}, r"\[env\] has \['flip_ratio'\], which the grid sets"),
    ]:
        with pytest.raises(ValueError, match=match):
            BenchConfig(**kwargs)
    path = tmp_path / "grid.toml"
    path.write_text(
        TINY_GRID.replace("[grid]", "[grid]\nbackend = 'ray'\ncpus_per_cell = 2\ngpus_per_cell = 0.5")
        + "\n[env]\nworld = 'hf'\npolicy = 'my/policy'\n"
    )
    config = BenchConfig.from_toml(path)
    assert (config.backend, config.cpus_per_cell, config.gpus_per_cell) == ("ray", 2, 0.5)
    spec = dict(config.cells())["RPA-BeaverTails-v0-grpo-none-flip1-seed0"]
    assert spec.env_kwargs == {"flip_ratio": 1.0, "world": "hf", "policy": "my/policy"}  # no preset on the hf world
    assert bench.threads_per_cell(config, "ray") == 2 and bench.threads_per_cell(BenchConfig(), "ray") == 1

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert bench.backend(BenchConfig(ray_address="head:6379")) == "ray"
    assert bench.backend(BenchConfig(backend="local")) == "local"
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    assert bench.backend(BenchConfig(backend="local")) == "local"
    if bench._installed("ray"):
        assert bench.backend(BenchConfig()) == "ray"
    monkeypatch.setitem(sys.modules, "ray", None)  # Ray not installed: auto stays local whatever $RAY_ADDRESS says
    assert bench.backend(BenchConfig()) == "local"
    with pytest.raises(ImportError, match=r"pip install rlft-gym\[ray\]"):
        bench.run(BenchConfig(backend="ray", attacks=["grpo"], seeds=[0]), tmp_path / "out", progress=False)
    assert build_parser().parse_args(["bench", "--backend", "ray"]).backend == "ray"


def test_the_local_backend_gives_each_cell_cpus_per_cell_threads(tmp_path):
    config = BenchConfig(attacks=["grpo"], seeds=[0], backend="local", cpus_per_cell=3)
    seen = []

    def runner(spec, out, threads):
        seen.append(threads)
        return {"spec": {"name": spec.name}}

    report = bench.run(config, tmp_path, progress=False, runner=runner)
    assert seen == [3] and len(report["runs"]) == 1


def test_the_hf_grid_of_docs_scale_builds_and_hf_records_aggregate_without_a_judge(tmp_path):
    doc = (Path(__file__).parents[1] / "docs" / "scale.md").read_text()
    (block,) = re.findall(r"```toml\n(.*?)```", doc, flags=re.S)
    (tmp_path / "hf.toml").write_text(block)
    config = BenchConfig.from_toml(tmp_path / "hf.toml")
    cells = dict(config.cells())
    assert len(cells) == 2 * 3 * 3 and (config.cpus_per_cell, config.gpus_per_cell) == (4, 1)
    spec = cells["RPA-BeaverTails-v0-trl-grpo-lisa-flip1-seed2"]
    assert spec.env_kwargs["world"] == "hf" and "world_preset" not in spec.env_kwargs and spec.num_envs == 64
    final = {"judge_harm": None, "oracle_harm": None, "harmfulness": 0.4, "capability": None}
    run = {"spec": {"env_id": "E", "agent": "grpo", "defence": "none", "env_kwargs": {"flip_ratio": 1.0}}}
    run |= {"initial": {"capability": None}, "final": final, "by_grader": {"cost_model": {"time_in_safe_set": 0.5}}}
    agg = bench.aggregate({"runs": {"a": run}}, capability_bound=0.1)  # the hf world has no judge, no oracle
    assert agg["worst_case"] == [] and "| E | grpo | none | 1 | 1 | - | - | 0.40 | - | - |" in bench.markdown(agg)


def test_a_tiny_grid_as_ray_tasks_lands_in_bench_json_and_a_rerun_runs_only_what_is_missing(
    world, ray_cluster, tmp_path
):
    path = tmp_path / "grid.toml"
    path.write_text(TINY_GRID.replace("seeds = [0, 1]", "seeds = [0]\nbackend = 'ray'"))
    config = BenchConfig.from_toml(path)
    assert bench.backend(BenchConfig()) == "ray"  # auto: Ray is initialised in this process
    names = [n for n, _ in config.cells()]
    report = bench.run(config, tmp_path / "out", progress=False)
    saved = json.loads((tmp_path / "out" / bench.RESULTS).read_text())
    assert sorted(saved["runs"]) == sorted(report["runs"]) == sorted(names) and len(names) == 2
    for name, r in saved["runs"].items():
        assert r["spec"]["name"] == name and (tmp_path / "out" / "runs" / f"{name}.jsonl").is_file()
        assert 0.0 <= r["final"]["judge_harm"] <= 1.0
    assert ray_cluster.is_initialized()  # the bench leaves a cluster it did not start running

    lost, kept = names
    del saved["runs"][lost]
    (tmp_path / "out" / bench.RESULTS).write_text(json.dumps(saved))

    def stub(spec, out, threads):  # a closure: Ray ships it by value to its worker
        import os

        return {"spec": {"name": spec.name}, "pid": os.getpid(), "home": os.environ.get("RLFT_GYM_HOME")}

    again = bench.run(config, tmp_path / "out", progress=False, runner=stub)
    assert sorted(again["runs"]) == sorted(names) and again["runs"][kept] == saved["runs"][kept]
    assert again["runs"][lost]["pid"] != os.getpid() and again["runs"][lost]["home"] == os.environ["RLFT_GYM_HOME"]
    assert json.loads((tmp_path / "out" / bench.RESULTS).read_text())["runs"] == again["runs"]

    def boom(spec, out, threads):
        raise AssertionError(f"{spec.name} ran again")

    assert bench.run(config, tmp_path / "out", progress=False, runner=boom)["runs"] == again["runs"]


def test_search_trials_run_as_ray_tasks_two_at_a_time_and_share_one_study(world, ray_cluster, tmp_path):
    """Distributed trials: three trials of a tiny GRPO search on the 2-CPU cluster, each a Ray task loading the
    shared SQLite study; trial 0 is the default setting and every trial's run is on disk."""
    from test_search import tiny_spec

    from rlft_gym.search import AttackSearch, Param

    space = {"learning_rate": Param("log", 1e-5, 1e-3), "temperature": Param("float", 0.7, 1.3)}
    searcher = AttackSearch(tiny_spec(steps=1, eval_every=1), tmp_path / "s", space=space)
    score = searcher.run(3, progress=False, workers=2)
    trials = searcher.study().trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3 and score["budget"] == {"trials": 3, "steps": 3}
    assert trials[0].params == searcher.defaults and score["default"]["trial"] == 0
    assert len({t.params["learning_rate"] for t in trials}) == 3  # the workers' samplers do not repeat each other
    assert len(list((tmp_path / "s" / "trials").glob("trial*.jsonl"))) == 3
    assert ray_cluster.is_initialized()  # a cluster the search did not start stays up
