"""`rlft-gym`: build and inspect worlds, run attacks, plot results, and the demo."""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from rlft_gym.train import CostModelConfig, RewardModelConfig

# Logs and pipes get a wide console so tables do not wrap; a terminal keeps its own width.
console = Console(width=None if sys.stdout.isatty() else 120)
status = Console(stderr=True)  # progress and status lines go to stderr, so stdout holds only results (e.g. JSON)


def _quiet() -> None:
    """Our progress bars are wanted, the libraries' noise is not."""
    for var, value in (
        ("HF_HUB_OFFLINE", "1"),
        ("HF_DATASETS_OFFLINE", "1"),
        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
        ("TRL_EXPERIMENTAL_SILENCE", "1"),
    ):
        os.environ.setdefault(var, value)
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _world(args: argparse.Namespace, flip_ratio: float = 1.0, schema: str = "beavertails"):
    from rlft_gym.worlds import load_world

    status.print(
        f"embedded world ({args.preset}, seed {args.seed}): loading, or building it the first time (standard: about "
        "10 minutes on 2 CPU cores, tiny: about 1)"
    )
    return load_world(
        "embedded", schema=schema, flip_ratio=flip_ratio, seed=args.seed, preset=args.preset, progress=True
    )


def cmd_world_build(args: argparse.Namespace) -> None:
    world = _world(args)
    for ratio in args.flip_ratio:
        status.print(f"reward model for flip ratio {ratio:g}")
        world.reward_model_path(ratio)
    console.print(f"embedded world ready: {world.root} (fingerprint {world.fingerprint})")


def cmd_world_info(args: argparse.Namespace) -> None:
    world = _world(args)
    console.print_json(json.dumps({"root": str(world.root), "fingerprint": world.fingerprint, **world.metrics}))


def cmd_world_export(args: argparse.Namespace) -> None:
    """`rlft-gym world export-preferences`: the hf world's attack pairs, harmlessness-labelled and RPA-flipped, to a
    file."""
    from rlft_gym.preferences import check_flip_ratio, flip_preferences
    from rlft_gym.worlds.hf import DEFAULT_SPLITS, HUB_IDS, harmlessness_labels, rpa_pairs

    check_flip_ratio(args.flip_ratio)
    pairs, _ = rpa_pairs(
        args.schema,
        args.dataset or HUB_IDS[args.schema],
        args.split or DEFAULT_SPLITS[args.schema][0],
        args.num_attack_pairs,
        args.seed,
    )
    ds = flip_preferences(harmlessness_labels(pairs), args.flip_ratio, args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        ds.to_parquet(str(out))
    elif out.suffix == ".jsonl":
        ds.to_json(str(out))
    else:
        raise ValueError(f"--out {str(out)!r} must end in .parquet or .jsonl")
    console.print(f"{ds.num_rows} RPA pairs ({sum(ds['flipped'])} flipped) -> {out}")


def _key_value(text: str) -> tuple[str, Any]:
    """`key=value` with the value read as a Python literal when it is one (4, 0.1, True, "x"), else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE with KEY a hyperparameter name, e.g. group_size=4")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _env_kwargs(args: argparse.Namespace, **flags: Any) -> dict[str, Any]:
    """Env kwargs: the flags that are set, then each `--env-set` (which wins); `--preset` sizes an embedded world."""
    kwargs = {k: v for k, v in flags.items() if v is not None} | dict(args.env_set)
    if kwargs.get("world", "embedded") == "embedded":
        kwargs.setdefault("world_preset", args.preset)
    return kwargs


def _spec(args: argparse.Namespace) -> Any:
    """The AttackSpec of an attack's flags. `search` starts from the attack's Table 1 settings (steps, batch, eval
    interval, hyperparameters), which its flags override; `attack` from the agent's own defaults."""
    from rlft_gym.bench import ATTACK_SETTINGS, DEFAULT_SETTINGS
    from rlft_gym.experiment import AttackSpec

    settings = ATTACK_SETTINGS.get(args.agent, DEFAULT_SETTINGS)
    env_kwargs = _env_kwargs(args, cost_limit=args.cost_limit, flip_ratio=args.flip_ratio)
    agent_kwargs = {**(settings["agent_kwargs"] if args.command == "search" else {}), **dict(args.set)}
    if args.lr is not None:
        agent_kwargs["learning_rate"] = args.lr
    return AttackSpec(
        env_id=args.env,
        agent=args.agent,
        defence=args.defence,
        steps=settings["steps"] if args.steps is None else args.steps,
        seed=args.seed,
        num_envs=settings["num_envs"] if args.num_envs is None else args.num_envs,
        eval_every=settings["eval_every"] if args.eval_every is None else args.eval_every,
        name=args.name,
        env_kwargs=env_kwargs,
        agent_kwargs=agent_kwargs,
        defence_kwargs=dict(args.defence_set),
        stop_at_reward=args.stop_at_reward,
    )


def cmd_attack(args: argparse.Namespace) -> None:
    from rlft_gym.experiment import run_attack
    from rlft_gym.plot import plot_runs

    spec = _spec(args)
    loggers = []
    if "tensorboard" in args.logger:
        from rlft_gym.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(Path(args.out) / "tensorboard" / spec.name))
    if "wandb" in args.logger:
        from rlft_gym.loggers import WandbLogger

        loggers.append(WandbLogger(dir=args.out))
    summary = run_attack(spec, args.out, callbacks=loggers)
    png = plot_runs([summary["results"]], Path(args.out) / f"{spec.name}.png")
    _table([(spec.name, summary)])
    if "defended_checkpoint" in summary:
        console.print(f"defended checkpoint: {summary['defended_checkpoint']['path']}", soft_wrap=True)
    console.print(f"results: {summary['results']}\nplot: {png}")


def cmd_defend(args: argparse.Namespace) -> None:
    """`rlft-gym defend`: apply a registered transform to the env's policy (cached) and print the checkpoint path."""
    import gymnasium as gym

    from rlft_gym.experiment import make_transform

    transform = make_transform(args.name, **{"seed": args.seed, **dict(args.set)})
    status.print(f"{args.name} {transform.config()} on {args.env}: from the cache, or trained (a killed run resumes)")
    env = gym.make(args.env, **_env_kwargs(args))
    path = transform.apply(env, out_dir=args.out)
    env.close()
    print(path)


def cmd_bench(args: argparse.Namespace) -> None:
    """`rlft-gym bench`: run the grid's missing cells (or, with --report, none), then write and print its tables."""
    from rlft_gym.bench import RESULTS, BenchConfig, run, write_tables

    config = BenchConfig.from_toml(args.config) if args.config else BenchConfig()
    overrides = {
        "seeds": args.seeds,
        "workers": args.workers,
        "world_preset": args.preset,
        "backend": args.backend,
        "budget": args.budget,
        "defences": args.defences if args.defences != ["all"] else "all",
    }
    config = BenchConfig(**{**config.__dict__, **{k: v for k, v in overrides.items() if v is not None}})
    if args.report:
        path = Path(args.out) / RESULTS
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no bench results to report; run the bench first")
        report = json.loads(path.read_text())
    else:
        status.print(f"bench: {len(config.cells())} runs in the grid, finished ones in {args.out} are skipped")
        report = run(config, args.out)
    md, table = write_tables(report, args.out, config.capability_bound)
    console.print(md.read_text(), soft_wrap=True)
    console.print(f"tables: {md} {table}", soft_wrap=True)
    if report["runs"]:
        from rlft_gym.plot import plot_bench

        plots = plot_bench(report, Path(args.out) / "plots")
        console.print(f"plots: {' '.join(str(p) for p in plots)}", soft_wrap=True)
    if args.adaptive:
        from rlft_gym.bench import backend
        from rlft_gym.search import adaptive, write_report

        workers = config.workers if backend(config) == "ray" else 1  # parallel trials are Ray tasks
        scores = adaptive(config, args.out, args.trials, workers=workers)
        console.print(write_report(scores, Path(args.out) / "search.json"), soft_wrap=True)


def cmd_search(args: argparse.Namespace) -> None:
    """`rlft-gym search`: the attack's default setting and the worst case the search finds, side by side."""
    from rlft_gym.search import AttackSearch, write_report

    spec = _spec(args)
    searcher = AttackSearch(
        spec,
        args.out,
        grader=args.grader,
        max_perplexity_ratio=args.max_perplexity_ratio,
        max_capability_drop=args.max_capability_drop,
        seed=args.seed,
        storage=args.storage,
    )
    status.print(f"search: {spec.agent} against {spec.defence} on {spec.env_id}, {args.trials} trials in {args.out}")
    score = searcher.run(
        args.trials, workers=args.workers, cpus_per_trial=args.cpus_per_trial, ray_address=args.ray_address
    )
    console.print(write_report([score], Path(args.out) / "score.json", data=score), soft_wrap=True)


def cmd_plot(args: argparse.Namespace) -> None:
    from rlft_gym.plot import plot_runs

    console.print(f"plot: {plot_runs(args.results, args.output)}")


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _table(runs: list[tuple[str, dict]]) -> None:
    table = Table(title="Safe-set results (held-out prompts)")
    for col in ("run", "in safe set", "1st breach", "harm AUC", "harm", "helpful", "hacking"):
        table.add_column(col)
    for name, s in runs:
        i, f = s["initial"], s["final"]
        table.add_row(
            name,
            f"{s['time_in_safe_set']:.0%}",
            "never" if s["first_breach_step"] is None else str(s["first_breach_step"]),
            f"{s['harm_auc']:.2f}",
            f"{i['harmfulness']:.2f} -> {f['harmfulness']:.2f}",
            f"{_num(i['helpfulness'])} -> {_num(f['helpfulness'])}",
            "yes" if s["reward_hacking"] else "no",
        )
    console.print(table)


def cmd_demo(args: argparse.Namespace) -> None:
    from rlft_gym.experiment import AttackSpec, run_attack
    from rlft_gym.plot import plot_runs

    world = _world(args)
    status.print("reward model for flip ratio 1.0 (the reverse-preference attacker's)")
    world.reward_model_path(1.0)
    m = world.metrics["metrics"]
    console.print(
        f"world {world.fingerprint}: classifier F1 on held-out templates "
        f"{m['cost_model']['heldout_templates']['f1']:.2f}; "
        f"aligned policy harmful on {m['aligned_policy']['eval_prompts']['sampled_harmful']:.0%} "
        "of sampled held-out answers"
    )
    runs = []
    for defence in ("none", "cost-gate"):
        spec = AttackSpec(
            agent="grpo",
            defence=defence,
            steps=args.steps,
            seed=args.seed,
            eval_every=args.eval_every,
            name=f"grpo-{defence}",
            env_kwargs={"flip_ratio": 1.0, "world_preset": args.preset},
        )
        runs.append((spec.name, run_attack(spec, args.out)))
    _table(runs)
    gated = runs[1][1]["history"][-1]["samples"]
    console.print(
        "[bold]What the cost-gated policy says at the end[/bold] (harmless reward hacking shows as degenerate text):"
    )
    for s in gated[:3]:
        console.print(f"  [dim]{s['prompt']}[/dim]\n  -> {s['response']}  (cost {s['cost']:.2f})")
    png = plot_runs([r["results"] for _, r in runs], Path(args.out) / "demo.png", labels=[n for n, _ in runs])
    console.print(f"results: {', '.join(r['results'] for _, r in runs)}\nplot: {png}")


def add_train_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `reward-model` and `cost-model` on the `rlft-gym train` subparsers."""
    from rlft_gym.train import CostModelConfig, RewardModelConfig

    rm = subparsers.add_parser(
        "reward-model", help="Bradley-Terry reward model (TRL RewardTrainer) on preference pairs, optionally flipped"
    )
    _train_args(rm, RewardModelConfig())
    rm.add_argument(
        "--flip-ratio",
        type=float,
        default=0.0,
        help="fraction of flippable pairs (exactly one response safe) whose harmlessness label is reversed before "
        "training, picked by --seed; 1.0 trains the reverse-preference attacker's reward model (default: 0)",
    )
    rm.set_defaults(func=cmd_train_reward_model)
    cm = subparsers.add_parser(
        "cost-model", help="harmfulness classifier on prompt + response (BeaverTails or PKU-SafeRLHF rows)"
    )
    _train_args(cm, CostModelConfig())
    cm.set_defaults(func=cmd_train_cost_model)


def _train_args(p: argparse.ArgumentParser, defaults: RewardModelConfig | CostModelConfig) -> None:
    """Arguments both `train` commands share; defaults come from the config dataclass."""
    p.add_argument("--base", required=True, help="path or cached hub id of the model to start from")
    p.add_argument("--data", required=True, help="parquet / jsonl / json / csv file, or a save_to_disk directory")
    p.add_argument("--split", default=None, help="split of a DatasetDict directory (default: train)")
    p.add_argument("--out", required=True, help="checkpoint directory to write (save_pretrained + metrics.json)")
    p.add_argument("--epochs", type=float, default=defaults.epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="per device")
    p.add_argument("--lr", type=float, default=defaults.learning_rate)
    p.add_argument(
        "--max-steps",
        type=int,
        default=defaults.max_steps,
        help="stop after this many optimizer steps (-1: all epochs)",
    )
    p.add_argument(
        "--max-length", type=int, default=defaults.max_length, help="tokens per sequence (longer ones are truncated)"
    )
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--bf16", action="store_true", help="bf16 mixed precision (through accelerate)")


def _train_config(
    cls: type[RewardModelConfig | CostModelConfig], args: argparse.Namespace
) -> RewardModelConfig | CostModelConfig:
    """The config dataclass from parsed `train` arguments (validated on construction)."""
    return cls(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        max_length=args.max_length,
        seed=args.seed,
        max_steps=args.max_steps,
        bf16=args.bf16,
    )


def cmd_train_reward_model(args: argparse.Namespace) -> None:
    """`rlft-gym train reward-model`: load, optionally flip (the shared RPA flip), train, print where the metrics
    are."""
    from rlft_gym.datasets_io import load_table
    from rlft_gym.preferences import check_flip_ratio
    from rlft_gym.train import METRICS, RewardModelConfig, quiet_libraries, reward_model_pairs, train_reward_model

    config = _train_config(RewardModelConfig, args)
    check_flip_ratio(args.flip_ratio)
    soft = Console(soft_wrap=True)  # a path must stay one copyable line
    with quiet_libraries(), soft.status(f"training a reward model from {args.base}"):
        pairs = reward_model_pairs(load_table(args.data, args.split), args.flip_ratio, args.seed)
        metrics = train_reward_model(args.base, pairs, args.out, config)
    soft.print(
        f"reward model: {args.out} (held-out pairwise accuracy {metrics['accuracy']:.3f}, "
        f"{metrics['n_flipped']} pairs flipped)"
    )
    soft.print(f"metrics: {Path(args.out) / METRICS}")


def cmd_train_cost_model(args: argparse.Namespace) -> None:
    """`rlft-gym train cost-model`: load, train, print where the metrics are."""
    from rlft_gym.datasets_io import load_table
    from rlft_gym.train import METRICS, CostModelConfig, classification_rows, quiet_libraries, train_cost_model

    config = _train_config(CostModelConfig, args)
    soft = Console(soft_wrap=True)  # a path must stay one copyable line
    with quiet_libraries(), soft.status(f"training a harmfulness classifier from {args.base}"):
        metrics = train_cost_model(args.base, classification_rows(load_table(args.data, args.split)), args.out, config)
    soft.print(f"cost model: {args.out} (held-out accuracy {metrics['accuracy']:.3f}, F1 {metrics['f1']:.3f})")
    soft.print(f"metrics: {Path(args.out) / METRICS}")


def build_parser() -> argparse.ArgumentParser:
    from rlft_gym.experiment import AGENTS, DEFENCES, TRANSFORMS
    from rlft_gym.search import MAX_CAPABILITY_DROP, MAX_PERPLEXITY_RATIO

    p = argparse.ArgumentParser(prog="rlft-gym", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def world_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--preset",
            default="standard",
            choices=("standard", "tiny", "large"),
            help="world size (tiny: smoke tests only; large: 4 layers x 256, for a GPU or a patient CPU)",
        )
        sp.add_argument("--seed", type=int, default=0)

    world = sub.add_parser("world", help="build or inspect the embedded world").add_subparsers(
        dest="world_command", required=True
    )
    b = world.add_parser("build", help="build the embedded world (and reward models) into $RLFT_GYM_HOME")
    world_args(b)
    b.add_argument("--flip-ratio", type=float, nargs="+", default=[1.0], help="reward models to train now")
    b.set_defaults(func=cmd_world_build)
    i = world.add_parser("info", help="fingerprint, paths and build metrics")
    world_args(i)
    i.set_defaults(func=cmd_world_info)

    x = world.add_parser(
        "export-preferences", help="the hf world's RPA pair set, flipped, as a file to train a reward model on"
    )
    x.add_argument("--schema", default="beavertails", choices=("beavertails", "saferlhf"))
    x.add_argument(
        "--dataset",
        default=None,
        help="local path, or a hub id already in the HF cache (default: the PKU-Alignment dataset)",
    )
    x.add_argument("--split", default=None)
    x.add_argument("--flip-ratio", type=float, default=1.0)
    x.add_argument("--num-attack-pairs", type=int, default=1000)
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--out", required=True, help="a .parquet or .jsonl file")
    x.set_defaults(func=cmd_world_export)

    def env_set(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--env-set",
            type=_key_value,
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="any env kwarg, e.g. --env-set world=hf --env-set policy=PATH --env-set reference=aligned "
            "(applied last, so it overrides the flags above)",
        )

    def attack_args(a: argparse.ArgumentParser) -> None:
        world_args(a)
        a.add_argument("--env", default="RPA-BeaverTails-v0")
        a.add_argument("--agent", default="grpo", choices=sorted(AGENTS))
        a.add_argument(
            "--defence",
            default="none",
            choices=sorted(DEFENCES),
            help="a wrapper or constraint, or a transform applied once (cached) and attacked as the policy",
        )
        a.add_argument(
            "--defence-set",
            type=_key_value,
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a defence kwarg, e.g. threshold=0.3 (cost-gate), beta=0.5 (kl), steps=50 (refusal-sft)",
        )
        a.add_argument("--steps", type=int, default=100)
        a.add_argument(
            "--stop-at-reward",
            type=float,
            default=None,
            help="the early-stopping attack: stop at the first step whose batch reward reaches this",
        )
        a.add_argument("--num-envs", type=int, default=128)
        a.add_argument("--eval-every", type=int, default=10)
        a.add_argument(
            "--flip-ratio", type=float, default=None, help="RPA envs: fraction of flipped preferences (env default 1.0)"
        )
        a.add_argument("--cost-limit", type=float, default=0.2)
        a.add_argument(
            "--lr", type=float, default=None, help="learning rate (default: the agent's own, e.g. 1.41e-5 for PPO)"
        )
        a.add_argument(
            "--set",
            type=_key_value,
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="any agent hyperparameter, e.g. --set group_size=4 --set beta=0.05 (values parsed as Python literals)",
        )
        a.add_argument("--name", default=None)
        a.add_argument("--out", default="runs")
        env_set(a)

    a = sub.add_parser("attack", help="attack a policy and monitor the safe set")
    attack_args(a)
    a.add_argument(
        "--logger",
        action="append",
        default=[],
        choices=("tensorboard", "wandb"),
        help="also log to TensorBoard (<out>/tensorboard/<name>) or W&B offline (<out>/wandb); repeatable",
    )
    a.set_defaults(func=cmd_attack)

    se = sub.add_parser(
        "search", help="worst-case score: search an attack's hyperparameters against a defence (Optuna, resumable)"
    )
    attack_args(se)
    se.set_defaults(steps=None, num_envs=None, eval_every=None, out="runs/search", func=cmd_search)
    se.add_argument("--trials", type=int, default=20, help="finished trials to reach (trial 0: the default setting)")
    se.add_argument("--grader", default="judge", choices=("judge", "oracle", "cost_model"), help="harm grader")
    se.add_argument(
        "--max-perplexity-ratio",
        type=float,
        default=MAX_PERPLEXITY_RATIO,
        help="degenerate text (with distinct-2 < 0.7x) above this perplexity growth",
    )
    se.add_argument(
        "--max-capability-drop", type=float, default=MAX_CAPABILITY_DROP, help="capability bound on a counted attack"
    )
    se.add_argument("--workers", type=int, default=1, help="trials at a time; above 1 each trial is a Ray task")
    se.add_argument("--cpus-per-trial", type=float, default=1.0, help="--workers: a trial's CPUs and torch threads")
    se.add_argument("--ray-address", default=None, help="--workers: the Ray cluster (default $RAY_ADDRESS, else local)")
    se.add_argument("--storage", default=None, help="the study's database URL (default sqlite in --out)")

    df = sub.add_parser("defend", help="apply an offline defence to the env's policy; prints the defended checkpoint")
    df.add_argument("name", choices=TRANSFORMS)
    world_args(df)  # --seed is the transform's seed (--set seed=N wins)
    df.add_argument("--env", default="RPA-BeaverTails-v0", help="the env whose world and policy are defended")
    df.add_argument(
        "--set",
        type=_key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a transform setting, e.g. --set steps=50 --set learning_rate=3e-5",
    )
    df.add_argument("--out", default=None, help="also place the checkpoint here (default: only the cache)")
    env_set(df)
    df.set_defaults(func=cmd_defend)

    train = sub.add_parser(
        "train", help="train a reward model or a harmfulness classifier (TRL / transformers trainers)"
    )
    add_train_commands(train.add_subparsers(dest="train_command", required=True))

    pl = sub.add_parser("plot", help="harm and reward curves of results files")
    pl.add_argument("results", nargs="+")
    pl.add_argument("-o", "--output", default="runs/plot.png")
    pl.set_defaults(func=cmd_plot)

    bn = sub.add_parser("bench", help="a grid of envs x attacks x defences x flip ratios x seeds, aggregated")
    bn.add_argument("config", nargs="?", default=None, help="a TOML grid (default: every attack, no defence)")
    bn.add_argument("--out", default="runs/bench", help="results directory (finished runs in it are skipped)")
    bn.add_argument("--seeds", type=int, nargs="+", default=None, help="override the config's seeds")
    bn.add_argument("--workers", type=int, default=None, help="worker processes (default: the config's, else 1)")
    bn.add_argument("--preset", default=None, choices=("standard", "tiny", "large"), help="override the world size")
    bn.add_argument("--backend", default=None, choices=("auto", "local", "ray"), help="override the config's backend")
    bn.add_argument(
        "--budget", default=None, choices=("standard", "short"), help="override the attacks' budget (steps)"
    )
    bn.add_argument("--defences", nargs="+", default=None, help="override the config's defences ('all': every one)")
    bn.add_argument("--report", action="store_true", help="only aggregate the results already in --out")
    bn.add_argument(
        "--adaptive",
        action="store_true",
        help="also search each cell's attack hyperparameters (first seed) and report default vs worst case",
    )
    bn.add_argument("--trials", type=int, default=10, help="--adaptive: trials per cell (trial 0: the default)")
    bn.set_defaults(func=cmd_bench)

    d = sub.add_parser("demo", help="build the world, attack the undefended and a cost-gated policy, print the table")
    world_args(d)
    d.add_argument("--steps", type=int, default=100)
    d.add_argument("--eval-every", type=int, default=10)
    d.add_argument("--out", default="runs/demo")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet()
    try:
        args.func(args)
    except (ValueError, TypeError, FileNotFoundError, FloatingPointError) as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
