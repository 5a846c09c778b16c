"""The performance suite's figures on one machine, and docs/PERFORMANCE.md generated from them (not part of CI; run
it on an idle machine).

Measured in one run, each as a ratio against a reference doing the same work on the same machine:
- the native GRPO step on the `--preset` world (16 prompts x 8 samples x 32 new tokens) against its FLOP floor:
  `torch.utils.flop_counter` counts one step's FLOPs, and the floor is that count at the best rate of a dense fp32
  matmul measured in the same run; the step's time split into sampling, env scoring and the update;
- our sampler (`rlft_gym.generation.sample`) against transformers' `model.generate` on the same 128 sequences;
- the benchmark tests (`tests/benchmarks`, tiny world): GRPO against TRL's GRPOTrainer, the vector env against bare
  forwards (pytest-benchmark's JSON, read back);
- a tiny bench grid on 1 and on 2 local workers (wall time ratio);
- the world build's own timings, as recorded when the world was built.

Usage:
    OMP_NUM_THREADS=1 python scripts/performance.py --out runs/performance > docs/PERFORMANCE.md
    python scripts/performance.py --report --out runs/performance   # render a measured performance.json again
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

import rlft_gym
from rlft_gym import bench, generation
from rlft_gym.agents import GRPO
from rlft_gym.results import versions
from rlft_gym.worlds import load_world

ROOT = Path(__file__).parents[1]
NUM_PROMPTS, GROUP_SIZE, MAX_NEW_TOKENS = 16, 8, 32
FLOOR_TARGET, TRL_TARGET = 2.5, 3.0  # step within 2.5x its FLOP floor; at least 3x faster than TRL's GRPOTrainer


def matmul_rate(n: int = 1024, reps: int = 10) -> float:
    """FLOP/s of a dense fp32 n x n matmul on this process's torch threads (median of `reps`)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def grpo_step(preset: str, steps: int) -> dict[str, Any]:
    """One GRPO step's FLOPs, its median time over `steps` timed steps (after 2 warm-up steps) and the split."""
    venv = rlft_gym.make_vec(
        "RPA-BeaverTails-v0", num_envs=NUM_PROMPTS * GROUP_SIZE, world_preset=preset, max_new_tokens=MAX_NEW_TOKENS
    )
    agent = GRPO(venv, group_size=GROUP_SIZE, seed=0)
    respond, respond_s = agent.respond, []

    def timed_respond(prompts: list[str]) -> generation.Rollout:
        t0 = time.perf_counter()
        out = respond(prompts)
        respond_s.append(time.perf_counter() - t0)
        return out

    agent.respond = timed_respond
    for _ in range(2):
        agent.train_step()
    with FlopCounterMode(display=False) as counter:
        agent.train_step()
    flops = counter.get_total_flops()
    sample_flops = []

    def counted_respond(prompts: list[str]) -> generation.Rollout:
        with FlopCounterMode(display=False) as inner:
            out = respond(prompts)
        sample_flops.append(inner.get_total_flops())
        return out

    agent.respond = counted_respond
    agent.train_step()
    agent.respond = timed_respond
    respond_s.clear()
    reports = [agent.train_step() for _ in range(steps)]
    step_s = [r.extra["step_s"] for r in reports]
    sample_s = [r.extra["sample_s"] for r in reports]  # sampling + the env's scoring
    return {
        "flops": flops,
        "sampling_flops": sample_flops[0],
        "step_s": statistics.median(step_s),
        "sampling_s": statistics.median(respond_s),
        "scoring_s": statistics.median(s - r for s, r in zip(sample_s, respond_s, strict=True)),
        "update_s": statistics.median(t - s for t, s in zip(step_s, sample_s, strict=True)),
        "steps_s": step_s,
    }


def sampler_vs_generate(preset: str, rounds: int) -> dict[str, Any]:
    """Our sampler against `model.generate` (sampling at temperature 1, no top-k / top-p, 32 new tokens at most,
    EOS ends a row) on 16 prompts x 8 samples; alternating rounds, medians."""
    world = load_world("embedded", preset=preset)
    policy, tok = world.load_policy().eval(), world.tokenizer
    prompts = [world.format_prompt(p) for p in list(world.attack_prompts.prompts)[:NUM_PROMPTS]]
    repeated = [p for p in prompts for _ in range(GROUP_SIZE)]
    left = copy.deepcopy(tok)
    left.padding_side = "left"
    enc = left(repeated, return_tensors="pt", padding=True)

    @torch.no_grad()
    def ours() -> int:
        return int(generation.sample(policy, tok, prompts, MAX_NEW_TOKENS, num_samples=GROUP_SIZE).response_mask.sum())

    @torch.no_grad()
    def hf() -> int:
        out = policy.generate(
            **enc,
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_new_tokens=MAX_NEW_TOKENS,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        return int((out[:, enc["input_ids"].shape[1] :] != tok.pad_token_id).sum())

    ours(), hf()
    t_ours, t_hf, n_ours, n_hf = [], [], [], []
    for _ in range(rounds):
        for fn, acc, n in ((ours, t_ours, n_ours), (hf, t_hf, n_hf)):
            t0 = time.perf_counter()
            n.append(fn())
            acc.append(time.perf_counter() - t0)
    return {
        "ours_s": statistics.median(t_ours),
        "generate_s": statistics.median(t_hf),
        "ours_tokens": statistics.median(n_ours),
        "generate_tokens": statistics.median(n_hf),
    }


def benchmark_tests(out: Path) -> dict[str, Any]:
    """`tests/benchmarks` (perf-marked tests included) with pytest-benchmark's JSON; each test's extra_info."""
    path = out / "benchmarks.json"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/benchmarks", "-m", "perf or not perf"]
    proc = subprocess.run([*cmd, f"--benchmark-json={path}"], cwd=ROOT, capture_output=True, text=True)
    results = {b["name"]: b["extra_info"] for b in json.loads(path.read_text())["benchmarks"]} if path.is_file() else {}
    return {"returncode": proc.returncode, "tail": proc.stdout[-600:], "results": results}


def grid_workers(out: Path) -> dict[str, Any]:
    """Wall time of one tiny-world grid (GRPO and PPO x 2 seeds, 30 steps each) on 1 and on 2 local workers, after
    an untimed one-cell grid that builds (or loads) the world and reward model every cell needs."""
    config = dict(attacks=["grpo", "ppo"], seeds=[0, 1], world_preset="tiny", backend="local")
    config["attack_settings"] = {a: {"steps": 30, "num_envs": 32, "eval_every": 30} for a in ("grpo", "ppo")}
    warm = {**config, "attacks": ["grpo"], "seeds": [0], "attack_settings": {"grpo": config["attack_settings"]["grpo"]}}
    bench.run(bench.BenchConfig(workers=1, cpus_per_cell=1, **warm), out / "warm-up", progress=False)  # untimed
    walls = {}
    for workers in (1, 2):
        where = out / f"grid-{workers}"
        shutil.rmtree(where, ignore_errors=True)
        t0 = time.perf_counter()
        bench.run(bench.BenchConfig(workers=workers, cpus_per_cell=1, **config), where, progress=False)
        walls[workers] = time.perf_counter() - t0
    return {"cells": 4, "wall_s": walls, "speedup": walls[1] / walls[2]}


def world_build(preset: str) -> dict[str, Any]:
    """The build's own timings (seconds per stage) from the world's manifest, as recorded when it was built."""
    world = load_world("embedded", preset=preset)
    manifest = json.loads((Path(world.policy_path).parent / "manifest.json").read_text())
    model = {k: manifest["config"][k] for k in ("n_layer", "n_embd")}
    return {"timings_s": manifest["meta"]["timings_s"], "fingerprint": world.fingerprint, **model}


def render(r: dict[str, Any]) -> str:
    g, s, grid, build = r["grpo_step"], r["sampler"], r["grid"], r["world_build"]
    floor = g["flops"] / r["matmul_flops_per_s"]
    bench_results = r["benchmarks"]["results"]
    trl = bench_results.get("test_grpo_step_vs_trl", {})
    env = bench_results.get("test_vector_step_overhead", {})
    lines = [
        "# Performance",
        "",
        f"Generated by `scripts/performance.py` on {r['date']} ({r['machine']}; torch threads {r['threads']}; "
        f"world preset `{r['preset']}`, fingerprint {build['fingerprint']}). Every figure is a ratio measured in one "
        "run against a reference doing the same work on the same machine.",
        "",
        "| measure | ours | reference | ratio | target |",
        "|---|---|---|---|---|",
        f"| GRPO step ({NUM_PROMPTS} prompts x {GROUP_SIZE} samples x {MAX_NEW_TOKENS} tokens) vs its FLOP floor "
        f"({g['flops'] / 1e9:.1f} GFLOP at {r['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s) | {g['step_s']:.3f} s | "
        f"{floor:.3f} s | {g['step_s'] / floor:.1f}x | <= {FLOOR_TARGET}x |",
        f"| our sampler vs `model.generate` (128 sequences, {MAX_NEW_TOKENS} tokens) | {s['ours_s']:.3f} s | "
        f"{s['generate_s']:.3f} s | {s['generate_s'] / s['ours_s']:.2f}x faster | - |",
    ]
    if trl:
        lines.append(
            f"| GRPO step vs TRL GRPOTrainer (tiny world, 4 x 8 x 32) | {trl['ours_seconds_per_step']:.3f} s | "
            f"{trl['trl_seconds_per_step']:.3f} s | {trl['ratio']:.2f}x faster | >= {TRL_TARGET}x |"
        )
    if env:
        lines.append(
            f"| vector env step vs bare reward + cost forwards (64 pairs) | {env['ours_s'] * 1e3:.1f} ms | "
            f"{env['bare_forward_s'] * 1e3:.1f} ms | {env['ratio']:.3f}x | <= {env['target']}x |"
        )
    lines += [
        f"| bench grid ({grid['cells']} tiny cells) on 2 workers vs 1 | {grid['wall_s']['2']:.1f} s | "
        f"{grid['wall_s']['1']:.1f} s | {grid['speedup']:.2f}x speed-up (1-worker wall / 2-worker wall) | - |",
        "",
        "## Where the GRPO step's time goes",
        "",
        "| phase | seconds (median) | share | FLOPs |",
        "|---|---|---|---|",
        f"| sampling (prefill once per prompt, KV cache, {MAX_NEW_TOKENS} decode steps) | {g['sampling_s']:.3f} | "
        f"{g['sampling_s'] / g['step_s']:.0%} | {g['sampling_flops'] / 1e9:.2f} G |",
        f"| env scoring (reward and cost models, bookkeeping) | {g['scoring_s']:.3f} | "
        f"{g['scoring_s'] / g['step_s']:.0%} | - |",
        f"| update (policy and reference log-probs, backward, clip, AdamW) | {g['update_s']:.3f} | "
        f"{g['update_s'] / g['step_s']:.0%} | - |",
        f"| whole step | {g['step_s']:.3f} | 100% | {g['flops'] / 1e9:.2f} G |",
        "",
        f"At the floor's rate the sampling FLOPs alone would take {g['sampling_flops'] / r['matmul_flops_per_s']:.3f} s"
        f" against {g['sampling_s']:.3f} s measured: decoding runs {MAX_NEW_TOKENS} sequential forwards of a batch of "
        f"128 single tokens through a {build['n_layer']}-layer, {build['n_embd']}-wide model, whose matmuls are far "
        "too small to reach the dense "
        "matmul rate, so per-op overhead (Python, dispatch, cache updates) sets the time, not arithmetic.",
        "",
        "## World build (recorded at build time)",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.0f} |" for k, v in build["timings_s"].items()],
        f"| total (core) | {sum(build['timings_s'].values()):.0f} |",
        "",
        f"Benchmark tests: exit code {r['benchmarks']['returncode']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in r["versions"].items()),
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="standard")
    p.add_argument("--steps", type=int, default=8, help="timed GRPO steps")
    p.add_argument("--rounds", type=int, default=8, help="timed rounds of sampler vs generate")
    p.add_argument("--out", type=Path, default=Path("runs/performance"))
    p.add_argument("--report", action="store_true", help="render --out's performance.json, measure nothing")
    args = p.parse_args()
    path = args.out / "performance.json"
    if not args.report:
        args.out.mkdir(parents=True, exist_ok=True)
        rate = matmul_rate()  # measured around the GRPO steps, the best kept (the machine's speed drifts)
        result = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{os.cpu_count()} CPUs, {'CUDA' if torch.cuda.is_available() else 'no GPU'}",
            "threads": torch.get_num_threads(),
            "preset": args.preset,
            "versions": versions(),
            "grpo_step": grpo_step(args.preset, args.steps),
            "sampler": sampler_vs_generate(args.preset, args.rounds),
            "matmul_flops_per_s": max(rate, matmul_rate()),
            "world_build": world_build(args.preset),
        }
        with tempfile.TemporaryDirectory() as tmp:
            result["grid"] = grid_workers(Path(tmp))
        result["benchmarks"] = benchmark_tests(args.out)
        path.write_text(json.dumps(result, indent=1))
    print(render(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
