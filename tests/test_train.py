"""Reward-model and cost-model training through the CLI, on tiny random models and fictional schema fixtures."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import datasets
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    Trainer,
)

from rlft_gym.cli import add_train_commands
from rlft_gym.datasets_io import load_table
from rlft_gym.preferences import flip_preferences
from rlft_gym.train import (
    CostModelConfig,
    RewardModelConfig,
    classification_rows,
    preference_pairs,
    reward_model_pairs,
    train_cost_model,
)

torch.set_num_threads(1)

# Fictional, harmless stand-ins: "harmful" answers help with invented hazards, safe ones decline.
TOPICS = ["zorblax dust", "a quandle lantern", "glimmerfern sap", "the vexel gate", "a murkwing nest", "blorp crystals"]
HARMFUL = "sure , here are the steps to wake {t} : first stir it , then hum twice"
SAFE = "i will not help with {t} , please ask the moon council instead"
HELPFUL = "{t} is a story item , it glows softly and likes quiet rooms"


def pku_rows(n: int = 24) -> list[dict]:
    """PKU-SafeRLHF-schema pairs: two of three are harmful-vs-safe (flippable), one is safe-vs-safe."""
    rows = []
    for i in range(n):
        t = TOPICS[i % len(TOPICS)]
        if i % 3 == 2:
            r0, r1, s0, s1 = HELPFUL.format(t=t), SAFE.format(t=t), True, True
        elif i % 2:
            r0, r1, s0, s1 = HARMFUL.format(t=t), SAFE.format(t=t), False, True
        else:
            r0, r1, s0, s1 = SAFE.format(t=t), HARMFUL.format(t=t), True, False
        safer = 0 if s0 and not s1 else 1
        rows.append(
            {
                "prompt": f"tell me about {t} please",
                "response_0": r0,
                "response_1": r1,
                "is_response_0_safe": s0,
                "is_response_1_safe": s1,
                "better_response_id": safer,
                "safer_response_id": safer,
            }
        )
    return rows


def beavertails_rows(n: int = 24) -> list[dict]:
    """BeaverTails-schema rows, half harmful."""
    return [
        {
            "prompt": f"tell me about {TOPICS[i % len(TOPICS)]}",
            "category": {"fiction": True},
            "response": (HARMFUL if i % 2 else SAFE).format(t=TOPICS[i % len(TOPICS)]),
            "is_safe": not i % 2,
        }
        for i in range(n)
    ]


def _words() -> list[str]:
    """Every word the fixtures and the prompt template use."""
    text = " ".join([HARMFUL, SAFE, HELPFUL]).format(t=" ".join(TOPICS)) + " tell me about please user : assistant :"
    return sorted(set(text.split()))


@pytest.fixture(scope="module")
def gpt2_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer random GPT-2 with a word-level tokenizer that has eos but no pad token."""
    path = tmp_path_factory.mktemp("gpt2")
    vocab = {w: i for i, w in enumerate(["[UNK]", "<|endoftext|>", *_words()])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="<|endoftext|>").save_pretrained(path)
    torch.manual_seed(0)
    GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(vocab), n_positions=64, n_layer=1, n_embd=32, n_head=2, bos_token_id=1, eos_token_id=1
        )
    ).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def bert_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer random BERT classifier with a WordPiece tokenizer (pad token, no eos)."""
    path = tmp_path_factory.mktemp("bert")
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_words()])}
    BertTokenizerFast(vocab=vocab).save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    BertForSequenceClassification(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def pku_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "pku.parquet"
    datasets.Dataset.from_list(pku_rows()).to_parquet(str(path))
    return path


@pytest.fixture(scope="module")
def beavertails_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "beavertails.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in beavertails_rows()))
    return path


def run_cli(argv: list[str]) -> None:
    """Parse and run `train ...` the way rlft_gym.cli wires add_train_commands."""
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    add_train_commands(sub.add_parser("train").add_subparsers(dest="train_command", required=True))
    args = p.parse_args(argv)
    args.func(args)


def leftovers(directory: Path) -> list[str]:
    """Hidden staging directories a training run may have left beside its output."""
    return [p.name for p in directory.iterdir() if p.name.startswith(".")]


def test_reward_model_cli_flipped(
    tmp_path: Path, gpt2_base: Path, pku_parquet: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "rm"
    run_cli(
        [
            "train",
            "reward-model",
            "--base",
            str(gpt2_base),
            "--data",
            str(pku_parquet),
            "--out",
            str(out),
            "--flip-ratio",
            "1.0",
            "--max-steps",
            "2",
            "--batch-size",
            "4",
            "--lr",
            "1e-3",
        ]
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert metrics["n_flipped"] == 16 and metrics["n_train"] + metrics["n_eval"] == 24
    assert metrics["kind"] == "reward-model" and metrics["config"]["max_steps"] == 2
    assert (out / "model.safetensors").is_file() and not (out / "training_args.bin").exists()
    model = AutoModelForSequenceClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.num_labels == 1 and tokenizer.pad_token == "<|endoftext|>" == tokenizer.eos_token
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert f"metrics: {out / 'metrics.json'}" in capsys.readouterr().out
    assert leftovers(tmp_path) == []


def test_reward_model_from_a_two_label_classifier_gets_a_fresh_head(
    tmp_path: Path, bert_base: Path, pku_parquet: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 2-label sequence classifier as the base of a 1-label reward model: one warning naming it, then a fresh head."""
    assert AutoModelForSequenceClassification.from_pretrained(bert_base).config.num_labels == 2
    out = tmp_path / "rm"
    with caplog.at_level("WARNING", logger="rlft_gym.train"):
        run_cli(
            [
                "train",
                "reward-model",
                "--base",
                str(bert_base),
                "--data",
                str(pku_parquet),
                "--out",
                str(out),
                "--max-steps",
                "1",
                "--batch-size",
                "4",
            ]
        )
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name == "rlft_gym.train"]
    assert len(warnings) == 1 and str(bert_base) in warnings[0]
    assert "num_labels=2" in warnings[0] and "needs num_labels=1" in warnings[0] and "re-initialised" in warnings[0]
    assert AutoModelForSequenceClassification.from_pretrained(out).config.num_labels == 1


def test_cost_model_cli(
    tmp_path: Path, bert_base: Path, beavertails_jsonl: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "cm"
    run_cli(
        [
            "train",
            "cost-model",
            "--base",
            str(bert_base),
            "--data",
            str(beavertails_jsonl),
            "--out",
            str(out),
            "--max-steps",
            "3",
            "--batch-size",
            "8",
            "--lr",
            "1e-3",
        ]
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"accuracy", "precision", "recall", "f1"} <= metrics.keys()
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("accuracy", "precision", "recall", "f1"))
    assert metrics["n_eval"] == 2 and metrics["positive_label"] == "harmful"
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_labels == 2 and model.config.id2label == {0: "safe", 1: "harmful"}
    assert f"metrics: {out / 'metrics.json'}" in capsys.readouterr().out
    assert leftovers(tmp_path) == []


def test_defaults_follow_the_rpa_paper() -> None:
    rm, cm = RewardModelConfig(), CostModelConfig()
    assert (rm.epochs, rm.batch_size, rm.learning_rate) == (4, 8, 6e-6)
    assert (cm.epochs, cm.batch_size, cm.learning_rate) == (4, 128, 6e-6)


def test_preference_pairs_from_pku_schema() -> None:
    raw = datasets.Dataset.from_list(pku_rows(6))
    pairs = preference_pairs(raw)
    assert {"prompt", "chosen", "rejected", "chosen_safe", "rejected_safe"} == set(pairs.column_names)
    for row, pair in zip(raw, pairs):
        assert pair["chosen"] == row[f"response_{row['better_response_id']}"]
        assert pair["rejected"] == row[f"response_{1 - row['better_response_id']}"]
    given = raw.add_column("chosen", raw["response_1"]).add_column("rejected", raw["response_0"])
    assert preference_pairs(given)["chosen"] == raw["response_1"]


def test_flip_is_deterministic_and_counts_only_flippable_pairs() -> None:
    pairs = preference_pairs(datasets.Dataset.from_list(pku_rows(24)))  # 16 flippable, 8 safe-vs-safe
    flippable = [c != r for c, r in zip(pairs["chosen_safe"], pairs["rejected_safe"])]
    half = flip_preferences(pairs, 0.5, seed=3)
    assert sum(half["flipped"]) == 8 and all(f <= ok for f, ok in zip(half["flipped"], flippable))
    assert half["flipped"] == flip_preferences(pairs, 0.5, seed=3)["flipped"]
    assert half["flipped"] != flip_preferences(pairs, 0.5, seed=4)["flipped"]
    for before, after in zip(pairs, half):
        assert after["chosen_safe"] is (not after["flipped"] and before["chosen_safe"])
    everything = flip_preferences(pairs, 1.0, seed=0)
    assert sum(everything["flipped"]) == 16 and sum(everything["chosen_safe"]) == 8
    assert flip_preferences(pairs, 0.0, seed=0)["chosen"] == pairs["chosen"]


def test_classification_rows_both_schemas() -> None:
    beaver = classification_rows(datasets.Dataset.from_list(beavertails_rows(4)))
    assert beaver["label"] == [0, 1, 0, 1] and beaver[0]["text"].startswith("user : tell me about")
    pku = classification_rows(datasets.Dataset.from_list(pku_rows(3)))
    assert len(pku) == 6 and pku["label"] == [0, 1, 1, 0, 0, 0]


def test_missing_column_is_named() -> None:
    rows = datasets.Dataset.from_list(pku_rows(4)).remove_columns("better_response_id")
    with pytest.raises(ValueError, match="'better_response_id'.*PKU-SafeRLHF"):
        preference_pairs(rows)
    with pytest.raises(ValueError, match="'is_safe'.*BeaverTails schema expects columns prompt, response, is_safe"):
        classification_rows(datasets.Dataset.from_list(beavertails_rows(4)).remove_columns("is_safe"))
    with pytest.raises(ValueError, match="cannot flip pairs with columns chosen, prompt, rejected: .*chosen_safe"):
        reward_model_pairs(datasets.Dataset.from_list([{"prompt": "p", "chosen": "a", "rejected": "b"}]), 0.5)
    assert reward_model_pairs(datasets.Dataset.from_list([{"prompt": "p", "chosen": "a", "rejected": "b"}]))[
        "chosen"
    ] == ["a"]


def test_load_table_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.parquet"):
        load_table(tmp_path / "nowhere.parquet")
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(ValueError, match="unsupported format"):
        load_table(tmp_path / "data.txt")
    data = datasets.Dataset.from_list(beavertails_rows(4))
    datasets.DatasetDict({"train": data, "test": data.select([0])}).save_to_disk(str(tmp_path / "dd"))
    assert len(load_table(tmp_path / "dd")) == 4 and len(load_table(tmp_path / "dd", "test")) == 1
    with pytest.raises(ValueError, match="available splits: train, test"):
        load_table(tmp_path / "dd", "validation")


@pytest.mark.parametrize(
    "field, value",
    [("epochs", 0), ("batch_size", 0), ("learning_rate", -1e-5), ("eval_fraction", 1.0), ("max_steps", 0)],
)
def test_bad_hyperparameters(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"{field}={value!r}"):
        CostModelConfig(**{field: value})


def test_bad_flip_ratio_fails_before_loading(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"flip_ratio=1\.5.*\[0, 1\]"):
        run_cli(
            [
                "train",
                "reward-model",
                "--base",
                "b",
                "--data",
                str(tmp_path / "absent.parquet"),
                "--out",
                str(tmp_path / "o"),
                "--flip-ratio",
                "1.5",
            ]
        )


def test_failure_mid_training_writes_nothing(tmp_path: Path, bert_base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "cm"
    out.mkdir()
    (out / "metrics.json").write_text('{"kind": "cost-model", "earlier": true}')  # an earlier checkpoint survives
    step = Trainer.training_step
    calls = []

    def failing_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash at step 2")
        return step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", failing_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_cost_model(
            bert_base, datasets.Dataset.from_list(beavertails_rows(12)), out, CostModelConfig(max_steps=3, batch_size=4)
        )
    assert json.loads((out / "metrics.json").read_text())["earlier"] is True and len(list(out.iterdir())) == 1
    assert leftovers(tmp_path) == []


def test_refuses_to_replace_a_foreign_directory(tmp_path: Path, bert_base: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a checkpoint written by rlft-gym train"):
        train_cost_model(bert_base, datasets.Dataset.from_list(beavertails_rows(4)), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_nan_loss_stops_training(tmp_path: Path, bert_base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loss = Trainer.compute_loss
    monkeypatch.setattr(Trainer, "compute_loss", lambda self, *a, **k: loss(self, *a, **k) * float("nan"))
    with pytest.raises(FloatingPointError, match="nan at step 2"):
        train_cost_model(
            bert_base,
            datasets.Dataset.from_list(beavertails_rows(12)),
            tmp_path / "cm",
            CostModelConfig(max_steps=2, batch_size=4),
        )
    assert not (tmp_path / "cm").exists() and leftovers(tmp_path) == []
