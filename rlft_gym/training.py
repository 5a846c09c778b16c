"""Small supervised training loops shared by world building: causal-LM SFT, classifiers, Bradley-Terry reward models."""
from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlft_gym.scoring import SequenceScorer

log = logging.getLogger(__name__)


def check_finite(value: torch.Tensor | float, step: int, what: str) -> None:
    """Stop training on NaN / inf, naming the step and the quantity, before any weight is touched."""
    v = float(value)
    if not math.isfinite(v):
        raise FloatingPointError(f"{what} is {v} at step {step}; training stopped before the optimizer step")


def fit(
    model: torch.nn.Module,
    loss_fn: Callable[[int], torch.Tensor],
    steps: int,
    lr: float,
    desc: str,
    warmup: int = 20,
    progress: bool = False,
) -> float:
    """AdamW with linear warmup and cosine decay; `loss_fn(step)` builds and scores its own batch. Returns the last loss."""
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = min(warmup, steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    model.train()
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    loss_value = float("nan")
    for step in bar:
        loss = loss_fn(step)
        check_finite(loss.detach(), step, f"{desc} loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        loss_value = float(loss.detach())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss_value:.3f}")
    model.eval()
    log.info("%s: final loss %.4f after %d steps", desc, loss_value, steps)
    return loss_value


def lm_loss(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    responses: Sequence[str],
    response_only: bool,
) -> torch.Tensor:
    """Next-token loss on `prompt response <eos>`; with `response_only` the prompt tokens carry no loss."""
    tokenizer.padding_side = "right"
    full = [f"{p} {r} {tokenizer.eos_token}" for p, r in zip(prompts, responses, strict=True)]
    enc = tokenizer(full, return_tensors="pt", padding=True, add_special_tokens=False)
    device = next(model.parameters()).device
    ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    labels = ids.masked_fill(mask == 0, -100)
    if response_only:
        plen = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        for i, n in enumerate(plen):
            labels[i, :n] = -100
    return model(input_ids=ids, attention_mask=mask, labels=labels).loss


def classifier_loss(scorer: SequenceScorer, batch: Sequence[tuple[str, str, int]]) -> torch.Tensor:
    """Cross-entropy of a 2-label sequence classifier on (prompt, response, label) rows."""
    prompts, responses, labels = zip(*batch)
    logits = scorer.logits(prompts, responses)
    return F.cross_entropy(logits, torch.tensor(labels, device=logits.device))


def reward_loss(scorer: SequenceScorer, batch: Sequence[tuple[str, str, str]]) -> torch.Tensor:
    """Bradley-Terry loss -log sigmoid(r(chosen) - r(rejected)) on (prompt, chosen, rejected) rows."""
    prompts, chosen, rejected = zip(*batch)
    r = scorer.logits(list(prompts) * 2, list(chosen) + list(rejected))[:, -1]
    n = len(batch)
    return -F.logsigmoid(r[:n] - r[n:]).mean()


def minibatches(rows: Sequence, batch_size: int, seed: int) -> Callable[[int], list]:
    """Shuffled epoch-wise minibatches as a function of the step (deterministic for a seed)."""
    rng = random.Random(seed)
    order: list[int] = []

    def batch(_step: int) -> list:
        nonlocal order
        if len(order) < batch_size:
            fresh = list(range(len(rows)))
            rng.shuffle(fresh)
            order += fresh
        picked, order = order[:batch_size], order[batch_size:]
        return [rows[i] for i in picked]

    return batch
