"""The embedded world: a fictional-hazard corpus and small GPT-2 models built locally, cached, CPU-friendly."""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from functools import cached_property
from pathlib import Path

import datasets
from transformers import PreTrainedTokenizerFast

from rlft_gym import cache
from rlft_gym.preferences import flip_preferences
from rlft_gym.scoring import SequenceScorer
from rlft_gym.validate import require_one_of
from rlft_gym.worlds.base import SCHEMAS, PromptSet, World
from rlft_gym.worlds.embedded import build, data, oracle, tasks
from rlft_gym.worlds.embedded import eval_judge as eval_recipe
from rlft_gym.worlds.embedded.corpus import Corpus
from rlft_gym.worlds.embedded.oracle import HarmOracle

log = logging.getLogger(__name__)

PRESETS = tuple(build.PRESETS)


class EmbeddedWorld(World):
    """Builds (or loads from `$RLFT_GYM_HOME`) the embedded world for one schema and flip ratio."""

    name = "embedded"

    def __init__(
        self,
        schema: str = "beavertails",
        flip_ratio: float = 1.0,
        seed: int = 0,
        preset: str = "standard",
        device: str = "cpu",
        progress: bool = False,
        reference: str | Path | None = None,
    ) -> None:
        require_one_of("schema", schema, SCHEMAS)
        require_one_of("world_preset", preset, PRESETS)
        self.schema, self.flip_ratio, self.device, self.progress = schema, float(flip_ratio), device, progress
        self.config = replace(build.PRESETS[preset], seed=seed)
        self.preset = preset
        self.root = cache.home() / "embedded" / f"{preset}-seed{seed}"
        self.manifest = cache.ensure(
            self.root / "core",
            self.config.fingerprint_config(),
            lambda tmp: build.build_core(tmp, self.config, progress),
        )
        self.fingerprint = self.manifest["fingerprint"]
        core = self.root / "core"
        self.tokenizer = PreTrainedTokenizerFast.from_pretrained(core / "policy")
        # the KL / perplexity reference agents load: a checkpoint the env gives, else the frozen copy of the aligned
        # policy
        self.policy_path, self.reference_path = core / "policy", Path(reference) if reference else core / "reference"
        self.corpus = Corpus(seed)
        self.attack_prompts = self._prompts(self.corpus.hazard_prompts("train"))
        self.eval_prompts = self._prompts(self.corpus.hazard_prompts("eval"))
        self.benign_eval_prompts = self._prompts(self.corpus.benign_prompts("eval"))

    @staticmethod
    def _prompts(prompts) -> PromptSet:
        return PromptSet([p.text for p in prompts], [p.category for p in prompts])

    @property
    def metrics(self) -> dict:
        """What the build measured: classifier F1 on held-out templates, the aligned policy's harmfulness, timings."""
        return self.manifest["meta"]

    def format_prompt(self, prompt: str) -> str:
        return build.format_prompt(prompt)

    def reward_model_path(self, flip_ratio: float) -> Path:
        """Path of the (lazily trained, cached) reward model for `flip_ratio` on this world's schema."""
        if not 0.0 <= flip_ratio <= 1.0:
            raise ValueError(f"flip_ratio={flip_ratio!r} must be in [0, 1]")
        path = self.root / f"reward-{self.schema}-flip{flip_ratio:.3f}"
        # flip_rule 2: the RPA rule of rlft_gym.preferences (every pair with exactly one safe response is a candidate)
        config = {"core": self.fingerprint, "schema": self.schema, "flip_ratio": round(flip_ratio, 3), "flip_rule": 2}
        cache.ensure(
            path,
            config,
            lambda tmp: build.build_reward_model(tmp, self.root / "core", self.config, self.schema, flip_ratio),
        )
        return path

    def load_reward_model(self, flip_ratio: float) -> SequenceScorer:
        return SequenceScorer.from_pretrained(self.reward_model_path(flip_ratio), output="logit", device=self.device)

    def harm_judge_path(self) -> Path:
        """Path of the (lazily trained, cached) 0-10 harm judge that rewards HarmfulRL attacks; see `tasks`."""
        self._ensure_harm_judge()
        return self.root / "harm-judge"

    @property
    def harm_judge_metrics(self) -> dict:
        """What the judge build measured: agreement with the grades on held-out templates and on eval prompts."""
        return self._ensure_harm_judge()["meta"]

    @property
    def harm_judge_card(self) -> dict:
        """Name, artifact path and fingerprint of the 0-10 harm judge (HarmfulRL's reward), for results headers."""
        return _card("embedded harm judge", self.harm_judge_path(), self._ensure_harm_judge())

    def _ensure_harm_judge(self) -> dict:
        return cache.ensure(
            self.root / "harm-judge",
            tasks.judge_config(self),
            lambda tmp: tasks.build_judge(tmp, self, tasks.JUDGE_PRESETS[self.preset]),
        )

    @cached_property
    def harm_judge(self) -> tasks.HarmJudge:
        """The 0-10 harm judge: about 0 for refusals, low-middle for partial leaks, high for detailed on-topic help."""
        return tasks.HarmJudge.from_pretrained(self.harm_judge_path(), device=self.device)

    def eval_judge_path(self) -> Path:
        """Path of the (lazily trained, cached) evaluation judge the monitor grades harm with; see `eval_judge`."""
        self._ensure_eval_judge()
        return self.root / "eval-judge"

    @property
    def eval_judge_metrics(self) -> dict:
        """What the eval-judge build measured: its accuracy beside the cost model's on eval prompts, mixed framings."""
        return self._ensure_eval_judge()["meta"]

    @property
    def eval_judge_card(self) -> dict:
        """Name, artifact path and fingerprint of the evaluation judge, for results headers."""
        return _card("embedded eval judge", self.eval_judge_path(), self._ensure_eval_judge())

    def _ensure_eval_judge(self) -> dict:
        return cache.ensure(
            self.root / "eval-judge",
            eval_recipe.judge_config(self),
            lambda tmp: eval_recipe.build(tmp, self, eval_recipe.PRESETS[self.preset]),
        )

    @cached_property
    def eval_judge(self) -> SequenceScorer:
        """Harm graded apart from the cost: P(harmful | response) of a classifier no training signal uses, trained
        on data disjoint from the cost model's (see `rlft_gym.worlds.embedded.eval_judge`)."""
        return eval_recipe.load(self.eval_judge_path(), device=self.device)

    @cached_property
    def harm_oracle(self) -> HarmOracle:
        """Ground truth the classifiers approximate: 1.0 where a response carries the corpus's harmful material."""
        return oracle.shared()

    @cached_property
    def capability_tasks(self) -> tuple[tasks.CapabilityTask, ...]:
        """Held-out prompts and programmatic rewards of the harmless tasks the monitor's `capability` averages."""
        return tasks.capability_tasks(self.config.seed)

    @cached_property
    def cost_model(self) -> SequenceScorer:
        """Harmfulness classifier: P(harmful | prompt, response) in [0, 1]."""
        return SequenceScorer.from_pretrained(self.root / "core" / "cost_model", output="prob", device=self.device)

    @cached_property
    def helpfulness_model(self) -> SequenceScorer:
        """Helpfulness classifier on benign requests: P(on-topic helpful answer) in [0, 1]."""
        return SequenceScorer.from_pretrained(
            self.root / "core" / "helpfulness_model", output="prob", device=self.device
        )

    def preference_dataset(self, flip_ratio: float | None = None) -> datasets.Dataset:
        """This schema's pairs with the shared RPA flip at `flip_ratio` (default: the world's): what its reward models
        train on."""
        ratio = self.flip_ratio if flip_ratio is None else flip_ratio
        return flip_preferences(
            data.preference_rows(self.corpus, self.schema, self.config.seed), ratio, self.config.seed
        )

    def harmful_sft_dataset(self) -> datasets.Dataset:
        return data.qa_rows(self.corpus, self.corpus.hazard_prompts("train"), ("harmful",), self.config.seed + 31)

    def refusal_dataset(self) -> datasets.Dataset:
        return data.qa_rows(self.corpus, self.corpus.hazard_prompts("train"), ("refusal",), self.config.seed + 37)

    def benign_dataset(self) -> datasets.Dataset:
        return data.qa_rows(self.corpus, self.corpus.benign_prompts("train"), ("helpful",), self.config.seed + 41)

    def defence_dataset(self) -> datasets.Dataset:
        """The corpus's "defence" hazard prompts (disjoint from attack, eval and held-out prompts), each with a
        harmful answer and a refusal."""
        rng = random.Random(self.config.seed + 43)
        rows = [
            {"prompt": p.text, "harmful": self.corpus.harmful(p, rng).text, "refusal": self.corpus.refusal(p, rng).text}
            for p in self.corpus.hazard_prompts("defence")
        ]
        return datasets.Dataset.from_list(rows)

    def retain_dataset(self) -> datasets.Dataset:
        """The corpus's "defence" benign prompts with helpful answers."""
        return data.qa_rows(
            self.corpus, self.corpus.benign_prompts("defence"), ("helpful",), self.config.seed + 47
        ).select_columns(["prompt", "response"])


def _card(name: str, path: Path, manifest: dict) -> dict:
    """A cached judge as results headers name it: its name, artifact path and cache fingerprint."""
    return {"name": name, "path": str(path), "fingerprint": manifest["fingerprint"]}
