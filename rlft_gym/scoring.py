"""Reward and cost functions with one shape, `(prompts, responses) -> floats`, so they plug into envs and TRL alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.activations import GELUTanh, NewGELUActivation

from rlft_gym.templates import PAIR_TEMPLATE

ScoreFn = Callable[[Sequence[str], Sequence[str]], np.ndarray]

OUTPUTS = ("logit", "prob")


class SequenceScorer:
    """Scores (prompt, response) pairs with a sequence classifier in one forward pass per batch.

    `output="logit"` returns one raw logit (a Bradley-Terry reward model: column 0 of 1); `output="prob"` returns
    P(label `column`) in [0, 1]: a sigmoid for one-logit and multi-label checkpoints, else a softmax (column
    defaults to 1, e.g. "harmful"). Texts get the tokenizer's special tokens, as in `rlft_gym.train`.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        output: str = "logit",
        template: str = PAIR_TEMPLATE,
        max_length: int = 256,
        column: int | None = None,
    ) -> None:
        if output not in OUTPUTS:
            raise ValueError(f"output={output!r} is not one of {OUTPUTS}")
        n = model.config.num_labels
        column = (0 if n == 1 else 1) if column is None else column
        if not 0 <= column < n:
            raise ValueError(f"column={column} is out of range for a classifier with num_labels={n}")
        self.model, self.tokenizer, self.output, self.column = model.eval(), tokenizer, output, column
        self.sigmoid = n == 1 or getattr(model.config, "problem_type", None) == "multi_label_classification"
        limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
        self.template, self.max_length = template, min(max_length, limit) if limit else max_length

    @classmethod
    def from_pretrained(cls, path: str | Path, output: str = "logit", device: str = "cpu", **kwargs) -> SequenceScorer:
        """Load a `save_pretrained` sequence classifier and its tokenizer from `path`."""
        model = fused_gelu(AutoModelForSequenceClassification.from_pretrained(path).to(device))
        return cls(model, AutoTokenizer.from_pretrained(path), output, **kwargs)

    def encode(self, prompts: Sequence[str], responses: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenize the formatted pairs, right-padded and right-truncated, on the model's device."""
        texts = [self.template.format(prompt=p, response=r) for p, r in zip(prompts, responses, strict=True)]
        self.tokenizer.padding_side = "right"
        self.tokenizer.truncation_side = "right"  # keep the prompt and the start of an over-long response
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_length)
        device = next(self.model.parameters()).device
        return {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def logits(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """Raw classifier logits (B, num_labels)."""
        return self.model(**self.encode(prompts, responses)).logits.float()

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """Score each pair: a float32 array of shape (len(prompts),)."""
        if len(prompts) == 0:
            return np.zeros(0, dtype=np.float32)
        logits = self.logits(prompts, responses)
        if self.output == "logit":
            scores = logits[:, self.column]
        elif self.sigmoid:
            scores = torch.sigmoid(logits[:, self.column])
        else:
            scores = torch.softmax(logits, -1)[:, self.column]
        return scores.cpu().numpy().astype(np.float32)


def fused_gelu(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with each `gelu_new` activation (GPT-2's tanh GELU, written as five tensor ops) replaced in place by
    PyTorch's fused tanh GELU: the same function (they differ by under 1e-6), 5-9x faster on CPU, where it took a
    third of the embedded world's forward time. The saved config is untouched."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if type(child) is NewGELUActivation:
                setattr(module, name, GELUTanh())
    return model
