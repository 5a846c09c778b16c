"""What every world exposes to envs, agents, defences and the monitor."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import datasets
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from rlft_gym.scoring import ScoreFn, fused_gelu

# The 14 BeaverTails harm categories, in the dataset's order.
CATEGORIES: tuple[str, ...] = (
    "animal_abuse",
    "child_abuse",
    "controversial_topics,politics",
    "discrimination,stereotype,injustice",
    "drug_abuse,weapons,banned_substance",
    "financial_crime,property_crime,theft",
    "hate_speech,offensive_language",
    "misinformation_regarding_ethics,laws_and_safety",
    "non_violent_unethical_behavior",
    "privacy_violation",
    "self_harm",
    "sexually_explicit,adult_content",
    "terrorism,organized_crime",
    "violence,aiding_and_abetting,incitement",
)
SCHEMAS = ("beavertails", "saferlhf")


def category_flags(category: str | None) -> dict[str, bool]:
    """BeaverTails-style category dict: one bool per harm category (all False for a benign request)."""
    return {c: c == category for c in CATEGORIES}


@dataclass(frozen=True)
class PromptSet:
    """Prompts with their harm category (None for benign requests)."""

    prompts: list[str]
    categories: list[str | None]

    def __len__(self) -> int:
        return len(self.prompts)


class World(ABC):
    """Models, data and scorers one environment runs on. Subclasses fill the fields and datasets."""

    name: str
    schema: str
    flip_ratio: float
    fingerprint: str
    tokenizer: PreTrainedTokenizerBase
    policy_path: Path
    reference_path: Path
    attack_prompts: PromptSet
    eval_prompts: PromptSet
    benign_eval_prompts: PromptSet

    @abstractmethod
    def format_prompt(self, prompt: str) -> str:
        """The text the policy continues from when answering `prompt`."""

    @cached_property
    def reward_model(self) -> ScoreFn:
        """The adversarial reward model for this world's `flip_ratio`."""
        return self.load_reward_model(self.flip_ratio)

    @abstractmethod
    def load_reward_model(self, flip_ratio: float) -> ScoreFn:
        """The reward model trained on preferences with a fraction `flip_ratio` of harmlessness labels flipped."""

    cost_model: ScoreFn
    helpfulness_model: ScoreFn

    def load_policy(self, path: str | Path | None = None, device: str = "cpu") -> PreTrainedModel:
        """A trainable copy of the policy under attack (or of the checkpoint at `path`)."""
        return fused_gelu(AutoModelForCausalLM.from_pretrained(path or self.policy_path).to(device))

    def load_reference(self, device: str = "cpu") -> PreTrainedModel:
        """The frozen reference policy (eval mode, no gradients)."""
        model = fused_gelu(AutoModelForCausalLM.from_pretrained(self.reference_path).to(device).eval())
        return model.requires_grad_(False)

    @abstractmethod
    def preference_dataset(self, flip_ratio: float | None = None) -> datasets.Dataset:
        """Preference pairs in the PKU-SafeRLHF schema (plus prompt/chosen/rejected), labels flipped by `flip_ratio`."""

    @abstractmethod
    def harmful_sft_dataset(self) -> datasets.Dataset:
        """Harmful requests with compliant answers (BeaverTails schema), for SFT attacks."""

    @abstractmethod
    def refusal_dataset(self) -> datasets.Dataset:
        """Harmful requests with refusals (BeaverTails schema), for defences."""

    @abstractmethod
    def benign_dataset(self) -> datasets.Dataset:
        """Benign requests with helpful answers (BeaverTails schema), for utility checks."""

    def defence_dataset(self) -> datasets.Dataset:
        """Harmful requests, each with a harmful answer and a refusal (columns prompt, harmful, refusal): the paired
        data offline defences train on. By default the attack prompts that have both; worlds with a prompt split of
        their own for defences override it."""
        refusals = {r["prompt"]: r["response"] for r in self.refusal_dataset()}
        rows = [
            {"prompt": r["prompt"], "harmful": r["response"], "refusal": refusals[r["prompt"]]}
            for r in self.harmful_sft_dataset()
            if r["prompt"] in refusals
        ]
        return datasets.Dataset.from_list(rows)

    def retain_dataset(self) -> datasets.Dataset:
        """Harmless answers (columns prompt, response) offline defences must keep: the benign requests' helpful
        answers, or, where the data has none (BeaverTails pairs no two safe answers), the safe answers to the attack
        prompts, as RepNoise's retain set."""
        rows = self.benign_dataset()
        rows = rows if len(rows) else self.refusal_dataset()
        return datasets.Dataset.from_dict({"prompt": rows["prompt"], "response": rows["response"]})
