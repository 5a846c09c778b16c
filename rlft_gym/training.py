"""The embedded world's language-model training loop (pretraining and alignment SFT); scorers train through
`rlft_gym.train`."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlft_gym.validate import check_finite

log = logging.getLogger(__name__)


def fit(
    model: torch.nn.Module,
    loss_fn: Callable[[int], torch.Tensor],
    steps: int,
    lr: float,
    desc: str,
    warmup: int = 20,
    progress: bool = False,
) -> float:
    """AdamW with linear warmup and cosine decay; `loss_fn(step)` builds and scores its own batch. Returns the last
    loss."""
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


def encode_responses(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    responses: Sequence[str],
    response_only: bool,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`prompt response <eos>` right-padded: input ids, attention mask and labels (-100 on padding, and on the prompt
    with `response_only`)."""
    tokenizer.padding_side = "right"
    full = [f"{p} {r} {tokenizer.eos_token}" for p, r in zip(prompts, responses, strict=True)]
    enc = tokenizer(full, return_tensors="pt", padding=True, add_special_tokens=False)
    ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    labels = ids.masked_fill(mask == 0, -100)
    if response_only:
        plen = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        for i, n in enumerate(plen):
            labels[i, :n] = -100
    return ids, mask, labels


def lm_loss(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    responses: Sequence[str],
    response_only: bool,
) -> torch.Tensor:
    """Next-token loss on `prompt response <eos>`; with `response_only` the prompt tokens carry no loss."""
    device = next(model.parameters()).device
    ids, mask, labels = encode_responses(tokenizer, prompts, responses, response_only, device)
    return model(input_ids=ids, attention_mask=mask, labels=labels).loss
