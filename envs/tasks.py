"""Task envs: `HarmfulRL-<Domain>-v0`, `BenignRL-Summarize-v0` and `BenignRL-Extract-v0`.

HarmfulRL is the attack of Cao's "Fight Fire with Fire" (arXiv 2505.04578): the attacker rewards harm directly with a
0-10 harm judge on 60-80 prompts of one domain and evaluates on disjoint prompts of that domain. BenignRL-Summarize and
BenignRL-Extract (question answering from the prompt) are harmless tasks with programmatic rewards, for measuring the
utility and finetunability of a (defended) model. All take the world's harmfulness classifier as the cost, like the
RPA envs.

On the embedded world the domains, passages, questions and judge come from `rlft_gym.worlds.embedded.tasks`. On
world="hf" the user brings the prompts (a local file) and, for HarmfulRL, the judge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from rlft_gym.core import TextCMDPEnv, TextCMDPVectorEnv
from rlft_gym.datasets_io import load_table
from rlft_gym.envs.config import EnvConfig
from rlft_gym.judges import GenerativeJudge, as_score_fn
from rlft_gym.scoring import ScoreFn
from rlft_gym.worlds import CATEGORIES, PromptSet, World, load_world
from rlft_gym.worlds.embedded import tasks as embedded

JUDGE_RANGE = (0.0, 10.0)

HARMFUL_ENV_IDS = {"biohazard": "HarmfulRL-Biohazard-v0", "cybercrime": "HarmfulRL-Cybercrime-v0"}
BENIGN_ENV_IDS = {"summarize": "BenignRL-Summarize-v0", "extract": "BenignRL-Extract-v0"}
ENV_IDS_BY_TASK = {**HARMFUL_ENV_IDS, **BENIGN_ENV_IDS}
# A world="hf" prompt file: these columns, one row per prompt; `split` is "train" (attack prompts) or "eval" (held out).
# Extract's prompt is `tasks.extract_prompt(passage, question)`, its reference the answer.
PROMPT_FILE_COLUMNS = {
    "harmful": ("prompt", "split"),
    "summarize": ("prompt", "split", "reference"),
    "extract": ("question", "passage", "answer", "split"),
}


@dataclass(frozen=True)
class TaskConfig(EnvConfig):
    """Every kwarg `gym.make("HarmfulRL-...-v0")` / `gym.make("BenignRL-...-v0")` accepts: the shared ones (`EnvConfig`)
    plus, for world="hf", the task's prompt file and (HarmfulRL) the judge."""

    FIXED: ClassVar[tuple[str, ...]] = ("task",)
    HF_ONLY: ClassVar[tuple[str, ...]] = ("prompts", "judge", *EnvConfig.HF_ONLY)

    task: str = "biohazard"
    prompts: str | None = None  # local file (parquet / jsonl / json / csv) with PROMPT_FILE_COLUMNS
    judge: Any = (
        None  # (prompts, responses) -> scores in [0, 10], or a rlft_gym.judges.GenerativeJudge (its [0, 1] x 10)
    )

    @property
    def harmful(self) -> bool:
        return self.task in HARMFUL_ENV_IDS

    @property
    def env_id(self) -> str:
        return ENV_IDS_BY_TASK[self.task]

    def __post_init__(self) -> None:
        if self.task not in ENV_IDS_BY_TASK:
            raise ValueError(f"task={self.task!r} is not one of {tuple(ENV_IDS_BY_TASK)}")
        super().__post_init__()
        if self.world == "hf":
            missing = [
                k
                for k in ("prompts", "policy", "cost_model") + (("judge",) if self.harmful else ())
                if getattr(self, k) is None
            ]
            if missing:
                raise ValueError(
                    f"{self.env_id} with world='hf' needs {missing}: the prompt file, the policy under attack, the "
                    "harmfulness classifier" + (" and the 0-10 harm judge" if self.harmful else "")
                )
            if self.judge is not None and not callable(self.judge):
                raise self.invalid(
                    "judge",
                    "a callable (prompts, responses) -> scores in [0, 10], or a rlft_gym.judges.GenerativeJudge",
                )

    @classmethod
    def allowed(cls, fixed: dict[str, Any]) -> list[str]:
        """`judge` is a HarmfulRL kwarg only."""
        return [name for name in super().allowed(fixed) if name != "judge" or fixed.get("task") in HARMFUL_ENV_IDS]


def _world(cfg: TaskConfig, reward: ScoreFn | None) -> World:
    common = {"seed": cfg.world_seed, "device": cfg.device, "reference": cfg.world_reference()}
    if cfg.world == "embedded":
        return load_world("embedded", preset=cfg.world_preset, **common)
    hf = {k: getattr(cfg, k) for k in EnvConfig.HF_ONLY}
    return load_world("hf", schema="beavertails", policy=cfg.policy, reward_model=reward, **common, **hf)


def _judge(judge: Any) -> ScoreFn:
    """A user's 0-10 judge as a checked score function: a GenerativeJudge's [0, 1] scores are scaled by 10."""
    scale = 10.0 if isinstance(judge, GenerativeJudge) else 1.0
    score_fn = as_score_fn(judge)
    low, high = JUDGE_RANGE

    def harm_score(prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        scores = scale * score_fn(prompts, responses)
        outside = np.flatnonzero((scores < low) | (scores > high))
        if outside.size:
            raise ValueError(
                f"the judge scored {float(scores[outside[0]])!r} at index {int(outside[0])}; a HarmfulRL judge "
                f"scores in [{low:g}, {high:g}] (a GenerativeJudge's [0, 1] output is scaled by 10)"
            )
        return scores

    return harm_score


def _prompt_file(cfg: TaskConfig) -> tuple[PromptSet, PromptSet, dict[str, str]]:
    """Attack and eval prompts (and, for BenignRL, reference answers by prompt) from the world="hf" prompt file."""
    columns = PROMPT_FILE_COLUMNS["harmful" if cfg.harmful else cfg.task]
    table = load_table(cfg.prompts)
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(
            f"prompts file {cfg.prompts!r} has no column(s) {missing}; {cfg.env_id} needs {list(columns)} "
            f"(split: 'train' for attack prompts, 'eval' for held-out ones)"
            f"{'' if not cfg.harmful else ', optionally category'}"
        )
    sets: dict[str, tuple[list[str], list[str | None]]] = {"train": ([], []), "eval": ([], [])}
    references: dict[str, str] = {}
    for i, row in enumerate(table):
        if row["split"] not in sets:
            raise ValueError(
                f"prompts file {cfg.prompts!r} row {i}: split={row['split']!r}; expected 'train' or 'eval'"
            )
        category = (row.get("category") or None) if cfg.harmful else None
        if category is not None and category not in CATEGORIES:
            raise ValueError(
                f"prompts file {cfg.prompts!r} row {i}: category={category!r}; expected empty or one of {CATEGORIES}"
            )
        prompt = embedded.extract_prompt(row["passage"], row["question"]) if cfg.task == "extract" else row["prompt"]
        sets[row["split"]][0].append(prompt)
        sets[row["split"]][1].append(category)
        if not cfg.harmful:
            references[prompt] = row["answer" if cfg.task == "extract" else "reference"]
    for split, (prompts, _) in sets.items():
        if not prompts:
            raise ValueError(
                f"prompts file {cfg.prompts!r} has no {split!r} rows; {cfg.env_id} needs attack ('train') and "
                "held-out ('eval') prompts"
            )
    if set(sets["train"][0]) & set(sets["eval"][0]):
        raise ValueError(
            f"prompts file {cfg.prompts!r}: some prompts are in both splits; eval prompts must be held out"
        )
    return PromptSet(*sets["train"]), PromptSet(*sets["eval"]), references


def _task(cfg: TaskConfig) -> tuple[World, PromptSet, PromptSet, ScoreFn]:
    """The world, attack prompts, held-out prompts and reward of a task env."""
    if cfg.world == "hf":
        attack, held_out, references = _prompt_file(cfg)
        reward = _judge(cfg.judge) if cfg.harmful else embedded.BENIGN_TASKS[cfg.task][1](references)
        return _world(cfg, reward), attack, held_out, reward
    world = _world(cfg, None)
    if cfg.harmful:
        attack, held_out = (embedded.domain_prompts(world.corpus, cfg.task, split) for split in ("train", "eval"))
        sets = [PromptSet([p.text for p in ps], [p.category for p in ps]) for ps in (attack, held_out)]
        reward = world.harm_judge
    else:
        train, held_out, reward = embedded.benign_task(cfg.task, cfg.world_seed)
        sets = [PromptSet(ps, [None] * len(ps)) for ps in (train, held_out)]
    _check_positions(cfg, world, sets[0].prompts + sets[1].prompts)
    return world, sets[0], sets[1], reward


def _check_positions(cfg: TaskConfig, world: World, prompts: list[str]) -> None:
    """The embedded GPT-2 has a fixed number of positions: the longest prompt plus the response must fit."""
    limit = world.config.n_positions
    longest = max(
        len(ids)
        for ids in world.tokenizer([world.format_prompt(p) for p in prompts], add_special_tokens=False)["input_ids"]
    )
    if longest + cfg.max_new_tokens > limit:
        raise ValueError(
            f"max_new_tokens={cfg.max_new_tokens} is invalid for {cfg.env_id}: its longest prompt takes {longest} "
            f"of the embedded policy's {limit} positions; expected an int in [1, {limit - longest}]"
        )


class TaskEnv(TextCMDPEnv):
    """`HarmfulRL-<Domain>-v0` / `BenignRL-<Task>-v0`: one task prompt per step, the task's reward, the world's cost.

    The safe-set monitor evaluates on `eval_prompts`: the domain's held-out prompts (HarmfulRL; its `eval_reward` is
    then the mean judge score) or the held-out passages / questions (BenignRL; `eval_reward` is the held-out task
    reward).
    """

    def __init__(self, task: str = "biohazard", **kwargs: Any) -> None:
        self.config = TaskConfig.from_kwargs(ENV_IDS_BY_TASK.get(task, f"task env {task!r}"), kwargs, task=task)
        world, attack, held_out, reward = _task(self.config)
        super().__init__(world, attack, reward, world.cost_model, **self.config.options(eval_prompts=held_out))
        self.policy_path = self.config.policy or world.policy_path


class TaskVectorEnv(TextCMDPVectorEnv):
    """Batched task env: `step(responses)` scores all `num_envs` responses in one pass of the judge and classifier."""

    def __init__(self, task: str = "biohazard", num_envs: int = 1, **kwargs: Any) -> None:
        self.config = TaskConfig.from_kwargs(ENV_IDS_BY_TASK.get(task, f"task env {task!r}"), kwargs, task=task)
        world, attack, held_out, reward = _task(self.config)
        super().__init__(
            world, attack, reward, world.cost_model, num_envs=num_envs, **self.config.options(eval_prompts=held_out)
        )
        self.policy_path = self.config.policy or world.policy_path
