"""Security Vectors (Zhou et al. 2023): a frozen harmful adapter absorbs the attack, and is removed to evaluate.

1. Before the attack (`setup`), a LoRA adapter on every linear layer of the transformer blocks, W x + (alpha / r)
   B A x with B = 0 at the start, is trained alone (the policy frozen) on the world's harmful request/answer pairs
   (`world.harmful_sft_dataset()`, completion-only next-token loss): the security vector. The combined model then
   already fits harmful data.
2. During the attack the adapter stays active and frozen and only the policy's own weights train, so harmful
   samples bring the combined model little loss (SFT) or little new to learn, and the base weights little gradient.
3. At evaluation it is removed: the safe-set monitor measures the base model (`evaluation()`, the adapter off).

The adapter lives in forward hooks on the policy's linear layers, not in its modules: the policy keeps its class,
`Agent.save` writes the base weights alone (a checkpoint is the defended model, adapter removed), the adapter is
no parameter of the policy (so no agent's optimizer or gradient clipping sees it), and it acts the same in native
and TRL-backed agents. Its weights are the constraint's state (`state_dict`), so `Agent.load` restores the adapter
the run was trained with (setup trains one again, against the loaded policy, and loading replaces it). A policy that
is itself a peft LoRA model is refused (the attack would then train adapters, not the base).

Defaults (ours, for the embedded world): rank 8, alpha 16, 200 steps of AdamW at lr 3e-3 on batches of 8, seeded by
`seed` (about 10 s on one CPU thread): in the standard world the combined model's harmful-answer loss is 0.68, the
aligned policy's 1.50 (100 steps at lr 1e-3 reach only 0.93).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from transformers.pytorch_utils import Conv1D

from rlft_gym.agent import Agent, Constraint
from rlft_gym.baselines.vaccine import transformer_blocks
from rlft_gym.training import lm_loss
from rlft_gym.validate import require_int, require_positive


def linear_dims(module: torch.nn.Module) -> tuple[int, int] | None:
    """(in, out) features of a linear layer (torch Linear or GPT-2's Conv1D, whose weight is (in, out)); None
    otherwise."""
    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, Conv1D):
        return module.weight.shape[0], module.weight.shape[1]
    return None


class SecurityVectors(Constraint):
    """A harmful LoRA adapter trained at setup, active and frozen while the attack trains the base, off at
    evaluation."""

    def __init__(
        self,
        rank: int = 8,
        alpha: float = 16.0,
        train_steps: int = 200,
        learning_rate: float = 3e-3,
        batch_size: int = 8,
        seed: int = 0,
    ) -> None:
        require_int(1, rank=rank, train_steps=train_steps, batch_size=batch_size)
        require_int(0, seed=seed)
        require_positive(alpha=alpha, learning_rate=learning_rate)
        self.rank, self.alpha, self.train_steps = rank, float(alpha), train_steps
        self.learning_rate, self.batch_size, self.seed = float(learning_rate), batch_size, seed
        self.adapter: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # layer name -> (A (r, in), B (out, r))
        self.active = True
        self.hooks: list[torch.utils.hooks.RemovableHandle] = []

    def setup(self, agent: Agent) -> None:
        """Attach the adapter to the policy's block linears and train it on harmful data, then freeze it."""
        if hasattr(agent.policy, "get_base_model"):
            raise ValueError(
                "SecurityVectors trains the policy's own weights under a frozen harmful adapter, but this policy is a "
                "peft LoRA model (only its adapters train); make the env without lora="
            )
        gen = torch.Generator().manual_seed(self.seed)
        device = next(agent.policy.parameters()).device
        for i, block in enumerate(transformer_blocks(agent.policy)):
            for name, module in block.named_modules():
                if (dims := linear_dims(module)) is None:
                    continue
                a = torch.empty(self.rank, dims[0]).uniform_(-1, 1, generator=gen) / math.sqrt(dims[0])
                b = torch.zeros(dims[1], self.rank)
                self.adapter[f"{i}.{name}"] = (a.to(device).requires_grad_(), b.to(device).requires_grad_())
                self.hooks.append(module.register_forward_hook(self._hook(*self.adapter[f"{i}.{name}"])))
        self.fit_adapter(agent)
        for a, b in self.adapter.values():
            a.requires_grad_(False)
            b.requires_grad_(False)

    def _hook(self, a: torch.Tensor, b: torch.Tensor) -> Any:
        """A forward hook adding (alpha / r) B A x to a linear layer's output while the adapter is active."""
        scale = self.alpha / self.rank

        def hook(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
            if not self.active:
                return output
            return output + (scale * (inputs[0].to(a.dtype) @ a.T) @ b.T).to(output.dtype)

        return hook

    def fit_adapter(self, agent: Agent) -> float:
        """Fit the adapter alone to the world's harmful answers (completion-only loss); returns the last loss."""
        rows = agent.world.harmful_sft_dataset()
        prompts = [agent.world.format_prompt(p) for p in rows["prompt"]]
        responses = list(rows["response"])
        params = [t for pair in self.adapter.values() for t in pair]
        optimizer = torch.optim.AdamW(params, lr=self.learning_rate, weight_decay=0.0)
        rng = np.random.default_rng(self.seed)
        was_training = agent.policy.training
        agent.policy.train()
        loss = torch.tensor(float("nan"))
        for _ in range(self.train_steps):
            idx = rng.choice(len(prompts), size=min(self.batch_size, len(prompts)), replace=False)
            loss = lm_loss(
                agent.policy,
                agent.tokenizer,
                [prompts[i] for i in idx],
                [responses[i] for i in idx],
                response_only=True,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward(inputs=params)  # the adapter alone: no gradient reaches the policy's weights
            optimizer.step()
        agent.policy.train(was_training)
        return float(loss.detach())

    @contextlib.contextmanager
    def evaluation(self, agent: Agent) -> Iterator[None]:
        """The adapter off: the monitor measures the base model, as the defended model is deployed."""
        self.active = False
        try:
            yield
        finally:
            self.active = True

    def state_dict(self) -> dict[str, Any]:
        return {"adapter": {name: [a, b] for name, (a, b) in self.adapter.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state["adapter"]
        shapes = {name: [tuple(t.shape) for t in pair] for name, pair in self.adapter.items()}
        if {name: [tuple(t.shape) for t in pair] for name, pair in saved.items()} != shapes:
            raise ValueError(
                "the checkpoint's security-vector adapter does not fit this policy (other layers, rank or sizes); "
                f"build SecurityVectors with the saved settings (rank={self.rank})"
            )
        for name, (a, b) in self.adapter.items():
            a.copy_(saved[name][0])
            b.copy_(saved[name][1])
