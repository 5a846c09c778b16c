"""Batched, KV-cached sampling and response log-probabilities: the hot loop every agent and the monitor share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class Rollout:
    """A batch of prompts and sampled responses, laid out as [left-padded prompt | right-padded response]."""

    input_ids: torch.Tensor  # (B, P + T)
    attention_mask: torch.Tensor  # (B, P + T)
    prompt_length: int  # P: responses start at this column
    response_mask: torch.Tensor  # (B, T): 1 on response tokens, including the closing EOS
    texts: list[str]  # decoded responses, special tokens removed, whitespace as the tokenizer decodes it

    def __getitem__(self, rows: slice | Sequence[int] | np.ndarray) -> Rollout:
        """The rollout restricted to a slice of its rows, or to the rows at the given indices (e.g. a shuffled
        minibatch)."""
        if isinstance(rows, slice):
            return Rollout(
                self.input_ids[rows],
                self.attention_mask[rows],
                self.prompt_length,
                self.response_mask[rows],
                self.texts[rows],
            )
        index = torch.as_tensor(np.asarray(rows), dtype=torch.long, device=self.input_ids.device)
        return Rollout(
            self.input_ids[index],
            self.attention_mask[index],
            self.prompt_length,
            self.response_mask[index],
            [self.texts[i] for i in index.tolist()],
        )

    @property
    def response_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_length :]

    @property
    def lengths(self) -> torch.Tensor:
        return self.response_mask.sum(1)


def encode_prompts(
    tokenizer: PreTrainedTokenizerBase, prompts: list[str], device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize formatted prompts, left-padded so every row's last token is the one generation continues from."""
    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


def rollout_from_ids(
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    response_ids: list[list[int]],
    texts: list[str],
    device: torch.device | str,
) -> Rollout:
    """A `Rollout` of given responses (token ids, e.g. TRL's completions or an expert's answers) to formatted prompts,
    laid out as `sample` lays out its own: left-padded prompts, right-padded responses."""
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts, device)
    response = torch.full(
        (len(response_ids), max(map(len, response_ids))),
        tokenizer.pad_token_id,
        dtype=prompt_ids.dtype,
        device=prompt_ids.device,
    )
    mask = torch.zeros_like(response)
    for row, ids in enumerate(response_ids):
        response[row, : len(ids)] = torch.as_tensor(ids, dtype=prompt_ids.dtype)
        mask[row, : len(ids)] = 1
    return Rollout(
        torch.cat([prompt_ids, response], 1), torch.cat([prompt_mask, mask], 1), prompt_ids.shape[1], mask, texts
    )


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding (GPT-2 style absolute positions)."""
    return (attention_mask.cumsum(-1) - 1).clamp_min(0)


def draw(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row from softmax(logits / T) by inverse-CDF sampling (one uniform per row; on CPU about
    10x cheaper than `torch.multinomial` for vocabularies of a few thousand)."""
    cdf = torch.softmax(logits.float() / temperature, -1).cumsum_(-1)
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_max_(cdf.shape[1] - 1)


@torch.no_grad()
def sample(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    max_new_tokens: int,
    temperature: float = 1.0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
    num_samples: int = 1,
) -> Rollout:
    """Sample `num_samples` responses per formatted prompt with a KV cache (rows grouped by prompt, as a GRPO
    group); each prompt is prefilled once and its cache shared by its samples; rows stop independently at EOS."""
    device = next(model.parameters()).device
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts, device)
    out = model(
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        position_ids=positions(prompt_mask),
        use_cache=True,
        logits_to_keep=1,
    )
    cache, logits = out.cache, out.logits[:, -1]
    if num_samples > 1:
        cache.batch_repeat_interleave(num_samples)
        logits = logits.repeat_interleave(num_samples, 0)
        prompt_ids, prompt_mask = (
            prompt_ids.repeat_interleave(num_samples, 0),
            prompt_mask.repeat_interleave(num_samples, 0),
        )
    batch, prompt_length = prompt_ids.shape
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    mask = prompt_mask
    next_pos = positions(mask)[:, -1:] + 1
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    tokens, alive = [], []
    for _ in range(max_new_tokens):
        tok = logits.argmax(-1) if greedy else draw(logits, temperature, generator)
        tok = torch.where(done, torch.full_like(tok, pad), tok)
        tokens.append(tok)
        alive.append(~done)
        done = done | (tok == eos)
        if bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        out = model(input_ids=tok.unsqueeze(1), attention_mask=mask, position_ids=next_pos, cache=cache, use_cache=True)
        cache, logits = out.cache, out.logits[:, -1]
        next_pos = next_pos + 1
    response = torch.stack(tokens, 1)
    response_mask = torch.stack(alive, 1).long()
    texts = tokenizer.batch_decode(response.masked_fill(response_mask == 0, pad), skip_special_tokens=True)
    return Rollout(
        input_ids=torch.cat([prompt_ids, response], 1),
        attention_mask=torch.cat([prompt_mask, response_mask], 1),
        prompt_length=prompt_length,
        response_mask=response_mask,
        texts=texts,
    )


def response_logprobs(model: PreTrainedModel, rollout: Rollout) -> torch.Tensor:
    """Per-token log-probabilities (B, T) of the rollout's response tokens under `model` (grad flows if enabled).

    The LM head runs only on live response positions (packed), so neither it nor its backward touch prompt or
    padding positions. Assumes the usual `base_model` + `get_output_embeddings()` causal-LM layout (GPT-2, Llama,
    Qwen, ...), with no extra logit transform after the head.
    """
    mask = rollout.attention_mask
    inner = (
        model.get_base_model() if hasattr(model, "get_base_model") else model
    )  # a peft model's LoRA layers live inside
    hidden = inner.base_model(
        input_ids=rollout.input_ids, attention_mask=mask, position_ids=positions(mask)
    ).last_hidden_state
    live = rollout.response_mask.bool()
    h = hidden[:, rollout.prompt_length - 1 : -1][live]
    logits = inner.get_output_embeddings()(h).float()
    packed = -F.cross_entropy(logits, rollout.response_ids[live], reduction="none")
    return torch.zeros(live.shape, dtype=packed.dtype, device=packed.device).masked_scatter(live, packed)
