"""Tiny random-initialised checkpoints and schema-correct datasets for the hf world (no hub, no real harmful text)."""

from __future__ import annotations

import random
from pathlib import Path

import datasets
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel, PreTrainedTokenizerFast

from rlft_gym.worlds import CATEGORIES

THINGS = ["zorblium", "velmoxine", "glimmer dust", "the brass key", "moon tea", "fog lamp", "quillseed", "the old mill"]
SAFE = ["i can not help with that .", "please ask something else .", "that would be unsafe , sorry ."]
UNSAFE = ["sure , mix {t} with water and wait .", "step one : take {t} . step two : hide it .", "buy {t} at night ."]
BENIGN = ["here is a short poem about {t} .", "{t} is a fine topic for a story ."]


def _prompts(n: int, prefix: str) -> list[str]:
    return [f"{prefix} {i} : how do i use {THINGS[i % len(THINGS)]} ?" for i in range(n)]


def beavertails_rows(n_prompts: int, prefix: str, seed: int = 0) -> list[dict]:
    """Two rows per prompt (one safe, one unsafe answer) in the BeaverTails schema."""
    rng = random.Random(seed)
    rows = []
    for i, p in enumerate(_prompts(n_prompts, prefix)):
        thing = THINGS[i % len(THINGS)]
        cat = {c: c == CATEGORIES[i % len(CATEGORIES)] for c in CATEGORIES}
        rows.append({"prompt": p, "response": rng.choice(UNSAFE).format(t=thing), "category": cat, "is_safe": False})
        rows.append(
            {"prompt": p, "response": rng.choice(SAFE), "category": {c: False for c in CATEGORIES}, "is_safe": True}
        )
    return rows


def saferlhf_rows(n_prompts: int, prefix: str, seed: int = 0, newer_columns: bool = False) -> list[dict]:
    """PKU-SafeRLHF-schema pairs; every fourth pair has two safe answers (benign); optionally the newer columns."""
    rng = random.Random(seed)
    rows = []
    for i, p in enumerate(_prompts(n_prompts, prefix)):
        thing = THINGS[i % len(THINGS)]
        both_safe = i % 4 == 3
        r0 = rng.choice(SAFE)
        r1 = rng.choice(BENIGN if both_safe else UNSAFE).format(t=thing)
        row = {
            "prompt": p,
            "response_0": r0,
            "response_1": r1,
            "is_response_0_safe": True,
            "is_response_1_safe": both_safe,
            "better_response_id": 1,
            "safer_response_id": 0,
        }
        if newer_columns:
            row["response_0_harm_category"] = {c: False for c in CATEGORIES}
            row["response_1_harm_category"] = {c: (not both_safe) and c == CATEGORIES[i % 14] for c in CATEGORIES}
            row["response_0_severity_level"], row["response_1_severity_level"] = 0, 0 if both_safe else 2
        rows.append(row)
    return rows


def write_dataset(root: Path, schema: str, fmt: str = "parquet", newer_columns: bool = False) -> Path:
    """A folder with `<split>.<fmt>` files in the schema's split names (BeaverTails 30k_*, PKU-SafeRLHF train/test)."""
    root.mkdir(parents=True, exist_ok=True)
    splits = {"beavertails": ("30k_train", "30k_test"), "saferlhf": ("train", "test")}[schema]
    for split, n, seed in zip(splits, (40, 24), (0, 1)):
        rows = (
            beavertails_rows(n, split, seed)
            if schema == "beavertails"
            else saferlhf_rows(n, split, seed, newer_columns)
        )
        ds = datasets.Dataset.from_list(rows)
        if fmt == "parquet":
            ds.to_parquet(str(root / f"{split}.parquet"))
        else:
            ds.to_json(str(root / f"{split}.jsonl"))
    return root


def _tokenizer() -> PreTrainedTokenizerFast:
    words = {
        w
        for t in THINGS + SAFE + UNSAFE + BENIGN + ["user", ":", "assistant", "how", "do", "i", "use", "?"]
        for w in t.replace("{t}", "").split()
    }
    words |= {str(i) for i in range(64)} | {"30k_train", "30k_test", "train", "test"}
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<eos>", *sorted(words)])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")


def write_models(root: Path, cost_labels: int = 2) -> dict[str, str]:
    """Tiny random GPT-2 policy, reward model (1 label) and classifier (`cost_labels` labels), saved with
    save_pretrained."""
    tok = _tokenizer()
    cfg = dict(
        vocab_size=len(tok),
        n_positions=128,
        n_embd=32,
        n_layer=1,
        n_head=2,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    paths = {}
    for name, model in (
        ("policy", GPT2LMHeadModel(GPT2Config(**cfg))),
        ("reward_model", GPT2ForSequenceClassification(GPT2Config(num_labels=1, **cfg))),
        ("cost_model", GPT2ForSequenceClassification(GPT2Config(num_labels=cost_labels, **cfg))),
    ):
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        paths[name] = str(root / name)
    return paths
