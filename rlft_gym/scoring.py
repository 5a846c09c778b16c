"""Reward and cost functions with one shape, `(prompts, responses) -> floats`, so they plug into envs and TRL alike."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from rlft_gym.templates import PAIR_TEMPLATE
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

ScoreFn = Callable[[Sequence[str], Sequence[str]], np.ndarray]

OUTPUTS = ("logit", "prob")


class SequenceScorer:
    """Scores (prompt, response) pairs with a sequence classifier in one forward pass per batch.

    `output="logit"` returns the single logit (a Bradley-Terry reward model); `output="prob"` returns
    P(label 1), e.g. P(harmful) for a harmfulness classifier, always in [0, 1].
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        output: str = "logit",
        template: str = PAIR_TEMPLATE,
        max_length: int = 256,
    ) -> None:
        if output not in OUTPUTS:
            raise ValueError(f"output={output!r} is not one of {OUTPUTS}")
        self.model, self.tokenizer, self.output = model.eval(), tokenizer, output
        limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
        self.template, self.max_length = template, min(max_length, limit) if limit else max_length

    @classmethod
    def from_pretrained(cls, path: str | Path, output: str = "logit", device: str = "cpu", **kwargs) -> "SequenceScorer":
        """Load a `save_pretrained` sequence classifier and its tokenizer from `path`."""
        model = AutoModelForSequenceClassification.from_pretrained(path).to(device)
        return cls(model, AutoTokenizer.from_pretrained(path), output, **kwargs)

    def encode(self, prompts: Sequence[str], responses: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenize the formatted pairs, right-padded, on the model's device."""
        texts = [self.template.format(prompt=p, response=r) for p, r in zip(prompts, responses, strict=True)]
        self.tokenizer.padding_side = "right"
        self.tokenizer.truncation_side = "right"  # keep the prompt and the start of an over-long response
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_length, add_special_tokens=False)
        device = next(self.model.parameters()).device
        return {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def logits(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """Raw classifier logits (B, num_labels), with gradients if enabled (used by training)."""
        return self.model(**self.encode(prompts, responses)).logits.float()

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        if len(prompts) == 0:
            return np.zeros(0, dtype=np.float32)
        logits = self.logits(prompts, responses)
        if self.output == "logit":
            return logits[:, -1].cpu().numpy().astype(np.float32)
        probs = torch.sigmoid(logits[:, 0]) if logits.shape[1] == 1 else torch.softmax(logits, -1)[:, 1]
        return probs.cpu().numpy().astype(np.float32)
