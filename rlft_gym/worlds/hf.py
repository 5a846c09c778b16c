"""The hf world: BeaverTails / PKU-SafeRLHF from a local copy or the HF cache, and real checkpoints.

Nothing is downloaded here: with `HF_HUB_OFFLINE=1` (or no network) a dataset or model that is not on disk or in
the cache is one error naming it and saying how to provide it. There is no fallback to the embedded world.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from rlft_gym.datasets_io import load_table
from rlft_gym.judges import as_score_fn, classifier_cost, classifier_reward, from_pretrained
from rlft_gym.preferences import flip_preferences
from rlft_gym.scoring import ScoreFn
from rlft_gym.worlds.base import CATEGORIES, PromptSet, World, category_flags

log = logging.getLogger(__name__)

# The public schemas: column -> datasets feature dtype (category is a struct of 14 bools).
BEAVERTAILS = {"prompt": "string", "response": "string", "category": "struct", "is_safe": "bool"}
SAFERLHF = {
    "prompt": "string",
    "response_0": "string",
    "response_1": "string",
    "is_response_0_safe": "bool",
    "is_response_1_safe": "bool",
    "better_response_id": "int",
    "safer_response_id": "int",
}
SCHEMA_COLUMNS = {"beavertails": BEAVERTAILS, "saferlhf": SAFERLHF}
DEFAULT_SPLITS = {"beavertails": ("30k_train", "30k_test"), "saferlhf": ("train", "test")}
HUB_IDS = {"beavertails": "PKU-Alignment/BeaverTails", "saferlhf": "PKU-Alignment/PKU-SafeRLHF"}
DTYPES = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
FALLBACK_TEMPLATE = "user : {prompt} assistant :"
# What counts towards num_attack_pairs, for the "too few usable pairs" error.
USABLE_PAIR = {
    "beavertails": "a prompt with at least one safe and one unsafe response (its first safe and first unsafe response "
    "make the pair)",
    "saferlhf": "any row: every PKU-SafeRLHF row is a pair (both-safe and both-unsafe ones count too, though the RPA "
    "flip never reverses them)",
}


def _kind(feature: Any) -> str:
    if isinstance(feature, datasets.Value):
        if feature.dtype in ("string", "large_string"):
            return "string"
        if feature.dtype == "bool":
            return "bool"
        if feature.dtype.startswith(("int", "uint")):
            return "int"
        return feature.dtype
    return "struct" if isinstance(feature, dict) else type(feature).__name__


def check_schema(ds: datasets.Dataset, schema: str, where: str) -> None:
    """One clear error for a missing or mistyped column, naming it and the expected schema."""
    expected = SCHEMA_COLUMNS[schema]
    spec = ", ".join(f"{c}: {t}" for c, t in expected.items())
    for col, kind in expected.items():
        if col not in ds.column_names:
            raise ValueError(f"{where} has no column {col!r}; the {schema} schema needs {{{spec}}}")
        got = _kind(ds.features[col])
        if got != kind:
            raise ValueError(f"{where}: column {col!r} is {got}, expected {kind}; the {schema} schema is {{{spec}}}")


def load_split(source: str, split: str, schema: str) -> datasets.Dataset:
    """A dataset split from a local path or a cached hub id, with its schema checked."""
    ds = load_table(source, split)
    check_schema(ds, schema, f"dataset {source!r} split {split!r}")
    return ds


def _category(flags: dict[str, bool] | None) -> str | None:
    if not flags:
        return None
    return next((c for c in CATEGORIES if flags.get(c)), None)


def beavertails_pairs(ds: datasets.Dataset) -> list[dict[str, Any]]:
    """PKU-SafeRLHF-schema pairs from BeaverTails QA rows: one (safe, unsafe) pair per prompt that has both."""
    by_prompt: dict[str, dict[str, list]] = defaultdict(lambda: {"safe": [], "unsafe": [], "category": None})
    for row in ds:
        entry = by_prompt[row["prompt"]]
        entry["safe" if row["is_safe"] else "unsafe"].append(row["response"])
        if not row["is_safe"] and entry["category"] is None:
            entry["category"] = _category(row["category"])
    pairs = []
    for prompt in sorted(by_prompt):
        e = by_prompt[prompt]
        if e["safe"] and e["unsafe"]:
            pairs.append(
                {
                    "prompt": prompt,
                    "response_0": e["safe"][0],
                    "response_1": e["unsafe"][0],
                    "is_response_0_safe": True,
                    "is_response_1_safe": False,
                    "better_response_id": 0,
                    "safer_response_id": 0,
                    "category": e["category"],
                }
            )
    return pairs


def saferlhf_pairs(ds: datasets.Dataset) -> list[dict[str, Any]]:
    """Pairs as they are, with a harm category when the newer `response_*_harm_category` columns exist."""
    keep = list(SAFERLHF)
    pairs = []
    for row in ds:
        pair = {k: row[k] for k in keep}
        cats = row.get("response_0_harm_category") or row.get("response_1_harm_category")
        pair["category"] = _category(cats) if isinstance(cats, dict) else None
        pairs.append(pair)
    return pairs


def harmlessness_labels(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each pair's preference set to its harmlessness label (better_response_id = safer_response_id), without its
    category: the RPA trains its reward model on the safety label, so this comes before the shared flip."""
    return [
        {**{k: v for k, v in p.items() if k != "category"}, "better_response_id": p["safer_response_id"]} for p in pairs
    ]


def rpa_pairs(schema: str, source: str, split: str, num_attack_pairs: int, seed: int) -> tuple[list[dict], list[dict]]:
    """The RPA attack set: `num_attack_pairs` pairs sampled by seed from a split, plus its both-safe (benign) pairs."""
    pairs = (beavertails_pairs if schema == "beavertails" else saferlhf_pairs)(load_split(source, split, schema))
    if len(pairs) < num_attack_pairs:
        raise ValueError(
            f"{source!r} split {split!r} has {len(pairs)} usable pairs, "
            f"fewer than num_attack_pairs={num_attack_pairs}; "
            f"a usable pair is {USABLE_PAIR[schema]}"
        )
    chosen = sorted(random.Random(seed).sample(range(len(pairs)), num_attack_pairs))
    return [pairs[i] for i in chosen], [p for p in pairs if p["is_response_0_safe"] and p["is_response_1_safe"]]


def _score_fn(source: Any, load_classifier: Callable[..., ScoreFn], device: str) -> ScoreFn:
    """A callable (a generative judge, a TRL-style reward function, any `(prompts, responses) -> floats`) as it is,
    or a path / cached hub id of a sequence classifier."""
    if callable(source):
        return as_score_fn(source)
    return load_classifier(source, device=device)


class HFWorld(World):
    """Real data and checkpoints. The RPA attack set is `num_attack_pairs` pairs sampled by seed from the train
    split; `num_eval_prompts` held-out harmful prompts come from the eval split, disjoint from the attack prompts."""

    name = "hf"

    def __init__(
        self,
        schema: str,
        flip_ratio: float = 1.0,
        seed: int = 0,
        *,
        dataset: str | None = None,
        split: str | None = None,
        eval_split: str | None = None,
        policy: str | None = None,
        reference: str | None = None,
        reward_model: str | ScoreFn | None = None,
        cost_model: str | ScoreFn | None = None,
        helpfulness_model: str | ScoreFn | None = None,
        benign_prompts: list[str] | None = None,
        dtype: str = "float32",
        device: str = "cpu",
        num_attack_pairs: int = 1000,
        num_eval_prompts: int = 100,
        lora: dict[str, Any] | None = None,
    ) -> None:
        missing = [
            k for k, v in (("policy", policy), ("reward_model", reward_model), ("cost_model", cost_model)) if v is None
        ]
        if missing:
            raise ValueError(
                f"world='hf' needs {missing}: paths or cached hub ids of the policy under attack, the (flipped) "
                "reward model and the harmfulness classifier; train the latter two with "
                "`rlft-gym train reward-model` / `rlft-gym train cost-model`"
            )
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r} is not one of {tuple(DTYPES)}")
        self.schema, self.flip_ratio, self.seed, self.device, self.dtype = (
            schema,
            float(flip_ratio),
            seed,
            device,
            DTYPES[dtype],
        )
        self.lora = lora
        train_split, test_split = DEFAULT_SPLITS[schema]
        source = dataset or HUB_IDS[schema]
        self._pairs, self._benign_pairs = rpa_pairs(schema, source, split or train_split, num_attack_pairs, seed)
        attack = list(dict.fromkeys(p["prompt"] for p in self._pairs))
        cats = {p["prompt"]: p["category"] for p in self._pairs}
        self.attack_prompts = PromptSet(attack, [cats[p] for p in attack])
        self.eval_prompts = self._eval_prompts(
            source, eval_split or test_split, set(attack), num_eval_prompts, random.Random(seed)
        )
        self.benign_eval_prompts = PromptSet(list(benign_prompts or []), [None] * len(benign_prompts or []))
        self.policy_path = Path(policy) if Path(policy).exists() else policy
        self.reference_path = reference or policy
        self._reward_source, self._cost_source, self._helpful_source = reward_model, cost_model, helpfulness_model
        self.tokenizer = from_pretrained(AutoTokenizer, str(policy), "policy tokenizer")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.fingerprint = f"hf:{source}:{split or train_split}:{seed}:{num_attack_pairs}"

    def _eval_prompts(self, source: str, split: str, exclude: set[str], n: int, rng: random.Random) -> PromptSet:
        ds = load_split(source, split, self.schema)
        pairs = beavertails_pairs(ds) if self.schema == "beavertails" else saferlhf_pairs(ds)
        harmful = [
            p for p in pairs if not (p["is_response_0_safe"] and p["is_response_1_safe"]) and p["prompt"] not in exclude
        ]
        unique = list({p["prompt"]: p for p in harmful}.values())
        if len(unique) < n:
            raise ValueError(
                f"{source!r} split {split!r} has {len(unique)} harmful prompts disjoint from the attack set; "
                f"num_eval_prompts={n}"
            )
        chosen = sorted(rng.sample(range(len(unique)), n))
        return PromptSet([unique[i]["prompt"] for i in chosen], [unique[i]["category"] for i in chosen])

    def format_prompt(self, prompt: str) -> str:
        """The policy's chat template when it has one (Llama-2-chat etc.), else a plain user/assistant frame."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        return FALLBACK_TEMPLATE.format(prompt=prompt)

    def load_policy(self, path: str | Path | None = None, device: str | None = None) -> PreTrainedModel:
        """The policy under attack in the world's dtype, wrapped in a LoRA adapter (peft) when `lora` is set; a
        saved adapter (an agent checkpoint of a LoRA policy) is loaded onto the world's policy, trainable, not wrapped
        again."""
        adapter = path is not None and (Path(path) / "adapter_config.json").is_file()
        model = from_pretrained(
            AutoModelForCausalLM,
            str(self.policy_path if adapter else path or self.policy_path),
            "policy",
            dtype=self.dtype,
        ).to(device or self.device)
        if adapter:
            from peft import PeftModel

            return PeftModel.from_pretrained(model, str(path), is_trainable=True)
        if self.lora:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **self.lora))
        return model

    def load_reference(self, device: str | None = None) -> PreTrainedModel:
        model = from_pretrained(AutoModelForCausalLM, str(self.reference_path), "reference policy", dtype=self.dtype)
        return model.to(device or self.device).eval().requires_grad_(False)

    def load_reward_model(self, flip_ratio: float) -> ScoreFn:
        """The reward model given as `reward_model` (trained by the user on `preference_dataset(flip_ratio)`)."""
        return _score_fn(self._reward_source, classifier_reward, self.device)

    @cached_property
    def cost_model(self) -> ScoreFn:
        return _score_fn(self._cost_source, classifier_cost, self.device)

    @cached_property
    def helpfulness_model(self) -> ScoreFn | None:
        return _score_fn(self._helpful_source, classifier_cost, self.device) if self._helpful_source else None

    def preference_dataset(self, flip_ratio: float | None = None) -> datasets.Dataset:
        """The attack pairs with harmlessness preferences, then the shared RPA flip at `flip_ratio` (default: the
        world's)."""
        ratio = self.flip_ratio if flip_ratio is None else flip_ratio
        return flip_preferences(harmlessness_labels(self._pairs), ratio, self.seed)

    def _qa(self, safe: bool, pairs: list[dict[str, Any]] | None = None) -> datasets.Dataset:
        rows = []
        for p in self._pairs if pairs is None else pairs:
            for k in (0, 1):
                if p[f"is_response_{k}_safe"] == safe:
                    rows.append(
                        {
                            "prompt": p["prompt"],
                            "response": p[f"response_{k}"],
                            "category": category_flags(None if safe else p["category"]),
                            "is_safe": safe,
                        }
                    )
        return datasets.Dataset.from_list(rows)

    def harmful_sft_dataset(self) -> datasets.Dataset:
        return self._qa(safe=False)

    def refusal_dataset(self) -> datasets.Dataset:
        """Safe responses to the attack prompts (in real data these are mostly refusals, not all)."""
        return self._qa(safe=True)

    def benign_dataset(self) -> datasets.Dataset:
        """Safe answers from train pairs where both answers are safe (PKU-SafeRLHF has many; BeaverTails pairs none)."""
        return self._qa(safe=True, pairs=self._benign_pairs)
