"""Train reward models (TRL `RewardTrainer`) and harmfulness classifiers (transformers `Trainer`) from schema
datasets."""

from __future__ import annotations

# Texts are formatted and tokenized exactly as `rlft_gym.scoring.SequenceScorer` does at scoring time. Device placement
# and mixed precision are left to the trainers (accelerate), so the same call runs on a CPU or under
# `accelerate launch`. torch / transformers / trl / datasets are imported inside functions so that `rlft-gym --help`
# stays fast.
import contextlib
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlft_gym import cache
from rlft_gym.preferences import flip_preferences
from rlft_gym.templates import PAIR_TEMPLATE

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainOutput

log = logging.getLogger(__name__)

METRICS = "metrics.json"
PREFERENCE_BY = ("better_response_id", "safer_response_id")
BEAVERTAILS_COLUMNS = ("prompt", "response", "is_safe")
PKU_SAFETY_COLUMNS = ("prompt", "response_0", "response_1", "is_response_0_safe", "is_response_1_safe")
LABELS = {0: "safe", 1: "harmful"}
_METRIC_NAMES = ("accuracy", "precision", "recall", "f1")


@dataclass
class _TrainConfig:
    """Hyperparameters both trainers share, validated on construction."""

    epochs: float = 4
    batch_size: int = 8
    learning_rate: float = 6e-6
    max_length: int = 512
    eval_fraction: float = 0.1
    seed: int = 0
    max_steps: int = -1
    bf16: bool = False
    fp16: bool = False

    def __post_init__(self) -> None:
        _check_config(self)


@dataclass
class RewardModelConfig(_TrainConfig):
    """Reward-model hyperparameters; defaults from the RPA paper (4 epochs, batch 8, lr 6e-6)."""


@dataclass
class CostModelConfig(_TrainConfig):
    """Harmfulness-classifier hyperparameters; defaults from the RPA paper (4 epochs, batch 128, lr 6e-6)."""

    batch_size: int = 128


def _check_config(config: _TrainConfig) -> None:
    """Reject values the trainers would misread or fail on late, naming the value and what is allowed."""
    rules = [
        ("epochs", config.epochs > 0 and math.isfinite(config.epochs), "> 0"),
        ("batch_size", config.batch_size >= 1, ">= 1"),
        ("learning_rate", config.learning_rate > 0 and math.isfinite(config.learning_rate), "> 0"),
        ("max_length", config.max_length >= 1, ">= 1"),
        ("eval_fraction", 0 < config.eval_fraction < 1, "in (0, 1)"),
        ("max_steps", config.max_steps == -1 or config.max_steps >= 1, "-1 (run all epochs) or >= 1"),
    ]
    for name, ok, allowed in rules:
        if not ok:
            raise ValueError(f"{name}={getattr(config, name)!r} is not allowed: must be {allowed}")
    if config.bf16 and config.fp16:
        raise ValueError("bf16=True and fp16=True: choose at most one mixed-precision mode")


# --- data -----------------------------------------------------------------------------------------------------


def _require(dataset: datasets.Dataset, columns: Sequence[str], schema: str) -> None:
    """Fail with the missing column(s) and the schema's expected columns."""
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"dataset is missing column(s) {', '.join(map(repr, missing))}: the {schema} schema expects columns "
            f"{', '.join(columns)} (found: {', '.join(dataset.column_names)})"
        )


def preference_pairs(dataset: datasets.Dataset, by: str = "better_response_id") -> datasets.Dataset:
    """PKU-SafeRLHF rows -> TRL's explicit-prompt format (prompt, chosen, rejected; existing chosen/rejected kept,
    else by `by`), plus chosen_safe / rejected_safe for flipping."""
    if by not in PREFERENCE_BY:
        raise ValueError(f"by={by!r} is not allowed: must be one of {', '.join(PREFERENCE_BY)}")
    columns = set(dataset.column_names)
    if {"chosen", "rejected"} & columns:
        _require(dataset, ("prompt", "chosen", "rejected"), "preference (explicit prompt)")

        def pick(row: dict) -> tuple[str, str]:
            return row["chosen"], row["rejected"]
    else:
        _require(dataset, ("prompt", "response_0", "response_1", by), "PKU-SafeRLHF")

        def pick(row: dict) -> tuple[str, str]:
            return _response(row, row[by]), _response(row, 1 - row[by])

    with_safety = set(PKU_SAFETY_COLUMNS) <= columns

    def convert(row: dict) -> dict:
        chosen, rejected = pick(row)
        pair = {"prompt": row["prompt"], "chosen": chosen, "rejected": rejected}
        if with_safety:
            pair |= {"chosen_safe": _is_safe(row, chosen), "rejected_safe": _is_safe(row, rejected)}
        return pair

    return dataset.map(convert, remove_columns=dataset.column_names)


def _response(row: dict, index: Any) -> str:
    """response_0 or response_1; any other preference id is a data error."""
    if index not in (0, 1):
        raise ValueError(f"preference id {index!r} for prompt {row['prompt']!r:.80} is not 0 or 1")
    return row[f"response_{index}"]


def _is_safe(row: dict, text: str) -> bool | None:
    """Safety label of whichever of response_0 / response_1 is `text` (None when it is neither)."""
    for i in (0, 1):
        if row[f"response_{i}"] == text:
            return bool(row[f"is_response_{i}_safe"])
    return None


def reward_model_pairs(dataset: datasets.Dataset, flip_ratio: float = 0.0, seed: int = 0) -> datasets.Dataset:
    """`preference_pairs`, then the shared RPA flip (`rlft_gym.preferences.flip_preferences`) when flip_ratio > 0; at 0
    nothing flips, so pairs without safety labels (plain chosen / rejected) train as they are."""
    pairs = preference_pairs(dataset)
    return flip_preferences(pairs, flip_ratio, seed) if flip_ratio else pairs


def classification_rows(dataset: datasets.Dataset, template: str = PAIR_TEMPLATE) -> datasets.Dataset:
    """BeaverTails rows, or PKU-SafeRLHF pairs (two rows each) -> (text, label), label 1 = harmful."""
    if "response_0" in dataset.column_names:
        _require(dataset, PKU_SAFETY_COLUMNS, "PKU-SafeRLHF")
        responses = [("response_0", "is_response_0_safe"), ("response_1", "is_response_1_safe")]
    else:
        _require(dataset, BEAVERTAILS_COLUMNS, "BeaverTails")
        responses = [("response", "is_safe")]

    def convert(batch: dict) -> dict:
        texts, labels = [], []
        for i, prompt in enumerate(batch["prompt"]):
            for response, safe in responses:
                texts.append(template.format(prompt=prompt, response=batch[response][i]))
                labels.append(int(not batch[safe][i]))
        return {"text": texts, "label": labels}

    return dataset.map(convert, batched=True, remove_columns=dataset.column_names)


def _split(dataset: datasets.Dataset, fraction: float, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """A seeded held-out split with at least one row on each side."""
    n_eval = max(1, round(len(dataset) * fraction))
    if len(dataset) - n_eval < 1:
        raise ValueError(
            f"dataset has {len(dataset)} row(s): too few to hold out eval_fraction={fraction} and still train"
        )
    parts = dataset.train_test_split(test_size=n_eval, seed=seed)
    return parts["train"], parts["test"]


# --- models and trainers --------------------------------------------------------------------------------------


def _load(base: str | Path, num_labels: int, **config: Any) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A sequence classifier and its tokenizer; GPT-2 style tokenizers get pad = eos, mirrored in the model config. A
    base whose classification head has another number of labels (e.g. a 2-label classifier as a reward model's base)
    gets a fresh head, with a warning naming it."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"the tokenizer of {base} has neither a pad nor an eos token; add a pad token to it first")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.truncation_side = "right"  # keep the prompt and the start of an over-long response, as the scorer does
    model, info = AutoModelForSequenceClassification.from_pretrained(
        str(base), num_labels=num_labels, ignore_mismatched_sizes=True, output_loading_info=True, **config
    )
    if info["mismatched_keys"]:
        keys = sorted(info["mismatched_keys"])
        log.warning(
            "checkpoint %s has a classification head for num_labels=%d (%s), but this model needs num_labels=%d "
            "(1 for a reward model, 2 for a classifier): the head is re-initialised and trains from scratch",
            base,
            keys[0][1][0],
            ", ".join(f"{k}: {tuple(shape)}" for k, shape, _ in keys),
            num_labels,
        )
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _max_length(model: PreTrainedModel, requested: int) -> int:
    """`requested`, capped at the model's position limit."""
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    return min(requested, limit) if limit else requested


def _encode(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int) -> list[list[int]]:
    """Token ids exactly as `SequenceScorer.encode` makes them (the tokenizer's special tokens, right truncation)."""
    return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]


def _trainer_kwargs(config: _TrainConfig, output_dir: Path) -> dict[str, Any]:
    """TrainingArguments shared by both trainers: no saving or reporting, accelerate picks device and precision."""
    import torch

    return dict(
        output_dir=str(output_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        seed=config.seed,
        bf16=config.bf16,
        fp16=config.fp16,
        use_cpu=not torch.cuda.is_available(),
        activation_checkpointing=False,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        log_level="error",
        logging_steps=10,
        logging_nan_inf_filter=False,
    )


def _loss_watch() -> Any:
    """A callback that sends trainer logs to `logging` and stops on a NaN / inf loss, naming the step."""
    from transformers import TrainerCallback

    class LossWatch(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            for key in ("loss", "train_loss", "eval_loss"):
                value = (logs or {}).get(key)
                if value is not None and not math.isfinite(value):
                    raise FloatingPointError(
                        f"training {key} is {value} at step {state.global_step}; nothing was saved"
                    )
            log.info("step %d: %s", state.global_step, logs)

    return LossWatch()


def _fit(trainer: Trainer) -> TrainOutput:
    """Train with logs routed to `logging` instead of the trainer's stdout printer."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_loss_watch())
    return trainer.train()


def _provenance(kind: str, base: str | Path, config: _TrainConfig) -> dict[str, Any]:
    """What produced a checkpoint: kind, base model, hyperparameters, library versions."""
    from rlft_gym.results import versions

    return {"kind": kind, "base": str(base), "config": asdict(config), "versions": versions()}


# --- atomic output --------------------------------------------------------------------------------------------


def _check_out(out: Path) -> None:
    """Refuse to replace anything but an empty directory or an earlier checkpoint of ours (e.g. `--out .`)."""
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / METRICS).is_file())):
        raise ValueError(
            f"out={out} exists and is not a checkpoint written by rlft-gym train; remove it or choose another path"
        )


def _publish(trainer: Trainer, tmp: Path, out: Path, metrics: dict[str, Any]) -> None:
    """Save model, tokenizer and metrics into `tmp`, then swap it in for `out` (main process only)."""
    trainer.save_model(str(tmp))  # every process: gathers sharded weights under DeepSpeed / FSDP
    if not trainer.is_world_process_zero():
        return
    (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle; the checkpoint stays safetensors + JSON
    (tmp / METRICS).write_text(json.dumps(metrics, indent=2, default=str))
    cache.publish(tmp, out)
    log.info("wrote %s", out)


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence transformers / datasets info logs and progress bars while training, then restore them."""
    from datasets.utils import logging as ds_logging
    from transformers.utils import logging as hf_logging

    saved = [(m, m.get_verbosity(), m.is_progress_bar_enabled()) for m in (hf_logging, ds_logging)]
    for module, _, _ in saved:
        module.set_verbosity_error()
        module.disable_progress_bar()
    try:
        yield
    finally:
        for module, level, bars in saved:
            module.set_verbosity(level)
            if bars:
                module.enable_progress_bar()


# --- training -------------------------------------------------------------------------------------------------


def train_reward_model(
    base: str | Path,
    dataset: datasets.Dataset,
    out: str | Path,
    config: RewardModelConfig | None = None,
    template: str = PAIR_TEMPLATE,
    base_label: str | None = None,
) -> dict[str, Any]:
    """TRL `RewardTrainer` (num_labels=1) on preference pairs or PKU-SafeRLHF rows; `out` gets checkpoint, tokenizer
    and metrics.json (held-out pairwise accuracy) in one rename, or nothing. `base_label` names the base model in
    metrics.json (default: its path)."""
    from transformers import set_seed
    from trl import RewardConfig, RewardTrainer

    config, out = config or RewardModelConfig(), Path(out)
    _check_out(out)
    if not {"chosen", "rejected"} <= set(dataset.column_names):
        dataset = preference_pairs(dataset)
    with quiet_libraries(), cache.staging(out) as tmp:
        set_seed(config.seed)  # the score head is freshly initialised
        model, tokenizer = _load(base, num_labels=1)
        max_length = _max_length(model, config.max_length)
        train, held_out = _split(
            _tokenize_pairs(dataset, tokenizer, template, max_length), config.eval_fraction, config.seed
        )
        args = RewardConfig(**_trainer_kwargs(config, tmp), max_length=max_length)
        trainer = RewardTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
        result = _fit(trainer)
        metrics = {
            "accuracy": _pairwise_accuracy(trainer.model, held_out, tokenizer.pad_token_id, config.batch_size),
            "n_train": len(train),
            "n_eval": len(held_out),
            "n_flipped": sum(dataset["flipped"]) if "flipped" in dataset.column_names else 0,
            "train_loss": result.training_loss,
            **_provenance("reward-model", base_label or base, config),
        }
        _publish(trainer, tmp, out, metrics)
    return metrics


def _tokenize_pairs(
    pairs: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, template: str, max_length: int
) -> datasets.Dataset:
    """chosen_ids / rejected_ids, the processed form TRL accepts, so truncation (not TRL's filtering) bounds length."""
    has_prompt = "prompt" in pairs.column_names

    def texts(batch: dict, key: str) -> list[str]:
        if not has_prompt:  # implicit prompt: the texts are already whole conversations
            return batch[key]
        return [template.format(prompt=p, response=r) for p, r in zip(batch["prompt"], batch[key], strict=True)]

    def encode(batch: dict) -> dict:
        return {f"{key}_ids": _encode(tokenizer, texts(batch, key), max_length) for key in ("chosen", "rejected")}

    return pairs.map(encode, batched=True, remove_columns=pairs.column_names)


def _pairwise_accuracy(model: PreTrainedModel, pairs: datasets.Dataset, pad_token_id: int, batch_size: int) -> float:
    """Exact fraction of held-out pairs scored chosen > rejected (TRL's eval accuracy averages batch means)."""
    import torch
    from trl.trainer.reward_trainer import DataCollatorForPreference

    collate, device, correct = DataCollatorForPreference(pad_token_id=pad_token_id), next(model.parameters()).device, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            batch = collate(list(pairs.select(range(start, min(start + batch_size, len(pairs))))))
            rewards = model(
                input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
            ).logits
            chosen, rejected = rewards.squeeze(-1).float().chunk(2)
            correct += int((chosen > rejected).sum())
    return correct / len(pairs)


def train_cost_model(
    base: str | Path,
    dataset: datasets.Dataset,
    out: str | Path,
    config: CostModelConfig | None = None,
    template: str = PAIR_TEMPLATE,
    labels: tuple[str, str] = (LABELS[0], LABELS[1]),
    base_label: str | None = None,
) -> dict[str, Any]:
    """Harmfulness classifier (label 1 = harmful; other names via `labels`) on BeaverTails / PKU-SafeRLHF rows or
    (text, label); `out` gets checkpoint, tokenizer and metrics.json (held-out accuracy, P, R, F1) in one rename, or
    nothing. `base_label` names the base model in metrics.json (default: its path)."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    config, out = config or CostModelConfig(), Path(out)
    _check_out(out)
    if not {"text", "label"} <= set(dataset.column_names):
        dataset = classification_rows(dataset, template)
    with quiet_libraries(), cache.staging(out) as tmp:
        set_seed(config.seed)
        id2label = dict(enumerate(labels))  # label 1 is the positive class: "harmful", or e.g. "helpful"
        model, tokenizer = _load(base, num_labels=2, id2label=id2label, label2id={v: k for k, v in id2label.items()})
        max_length = _max_length(model, config.max_length)
        encoded = dataset.map(
            lambda b: {"input_ids": _encode(tokenizer, b["text"], max_length)}, batched=True, remove_columns=["text"]
        )
        train, held_out = _split(encoded, config.eval_fraction, config.seed)
        trainer = Trainer(
            model=model,
            # batches of similar length: less padding, the same rows per epoch
            args=TrainingArguments(**_trainer_kwargs(config, tmp), train_sampling_strategy="group_by_length"),
            train_dataset=train,
            eval_dataset=held_out,
            processing_class=tokenizer,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=_classification_metrics,
        )
        result = _fit(trainer)
        scores = {
            k.removeprefix("eval_"): v
            for k, v in trainer.evaluate().items()
            if k.removeprefix("eval_") in _METRIC_NAMES
        }
        metrics = {
            **scores,
            "n_train": len(train),
            "n_eval": len(held_out),
            "positive_label": labels[1],
            "train_loss": result.training_loss,
            **_provenance("cost-model", base_label or base, config),
        }
        _publish(trainer, tmp, out, metrics)
    return metrics


def _classification_metrics(prediction: Any) -> dict[str, float]:
    """Accuracy and harmful-class precision / recall / F1 from the trainer's gathered logits."""
    import numpy as np

    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    predicted, labels = np.asarray(logits).argmax(-1), np.asarray(prediction.label_ids)
    tp = float(((predicted == 1) & (labels == 1)).sum())
    precision = tp / max(float((predicted == 1).sum()), 1.0)
    recall = tp / max(float((labels == 1).sum()), 1.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": float((predicted == labels).mean()), "precision": precision, "recall": recall, "f1": f1}
