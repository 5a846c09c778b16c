"""Native PPO with a value head (Ziegler et al. 2019; TRL's classic PPOTrainer, which TRL 1.x no longer ships), read
top to bottom: sample one response per attack prompt, score it through the env, shape per-token rewards with a KL
penalty to the reference, estimate advantages with GAE, then run a few epochs of the clipped PPO objective.

Defaults follow TRL's classic `PPOConfig` (0.x), which the RPA paper used: lr 1.41e-5, 4 PPO epochs, cliprange 0.2,
cliprange_value 0.2, vf_coef 0.1, gamma 1, lam 0.95, and the adaptive KL controller (init 0.2, target 6, horizon 10000).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from rlft_gym import generation
from rlft_gym.agent import Agent, Batch, Constraint
from rlft_gym.callbacks import StepReport
from rlft_gym.validate import check_finite, require_fraction, require_int, require_non_negative, require_positive

VALUE_HEAD = "value_head.safetensors"


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `x` over the positions where `mask` is 1."""
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std over the masked positions, zero elsewhere (TRL's `masked_whiten`)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def gae(
    token_rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE advantages and returns (B, T) of right-padded responses (`token_rewards` zero off the mask, values masked
    here), zero off the mask: PPO's credit assignment as a pure function, so it is tested on hand-worked cases.

    delta_t = r_t + gamma V_{t+1} - V_t;  A_t = delta_t + gamma lam A_{t+1};  returns R_t = A_t + V_t.
    """
    values = values * mask
    advantages = torch.zeros_like(values)
    last_gae = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        next_value = values[:, t + 1] if t + 1 < values.shape[1] else torch.zeros_like(last_gae)
        delta = token_rewards[:, t] + gamma * next_value - values[:, t]
        last_gae = delta + gamma * lam * last_gae
        advantages[:, t] = last_gae
    advantages = advantages * mask
    return advantages, advantages + values


def clipped_policy_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, cliprange: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate -min(ratio A, clip(ratio, 1 - eps, 1 + eps) A), ratio = pi / pi_old, averaged over the
    mask, and the fraction of tokens where the clip binds: the policy objective as a pure function, tested by hand."""
    ratio = torch.exp(logp - old_logp)
    pg_losses = -advantages * ratio
    pg_losses_clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.max(pg_losses, pg_losses_clipped), mask)
    return loss, masked_mean((pg_losses_clipped > pg_losses).float(), mask)


def clipped_value_loss(
    vpred: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cliprange_value: float
) -> torch.Tensor:
    """1/2 max((V - R)^2, (clip(V, V_old +- eps_v) - R)^2) over the mask: the value loss of PPO and its cost critic."""
    vpred_clipped = torch.clamp(vpred, old_values - cliprange_value, old_values + cliprange_value)
    return 0.5 * masked_mean(torch.max((vpred - returns) ** 2, (vpred_clipped - returns) ** 2), mask)


class PPO(Agent):
    """Proximal Policy Optimisation with a value head and an adaptive KL penalty on an rlft-gym env.

    With a vector env, each step uses the whole batch: `num_envs` prompts, one response each (`batch_size` is then
    `num_envs`). With a single env, each step uses `batch_size` responses, stepped one by one.
    """

    def __init__(
        self,
        env: gym.Env | gym.vector.VectorEnv,
        policy: str | Path | None = None,
        *,
        learning_rate: float = 1.41e-5,
        batch_size: int = 64,
        ppo_epochs: int = 4,
        mini_batch_size: int = 16,
        gamma: float = 1.0,
        lam: float = 0.95,
        cliprange: float = 0.2,
        cliprange_value: float = 0.2,
        vf_coef: float = 0.1,
        init_kl_coef: float = 0.2,
        adaptive_kl: bool = True,
        target_kl: float = 6.0,
        horizon: int = 10000,
        max_grad_norm: float = 1.0,
        temperature: float = 1.0,
        constraints: Sequence[Constraint] = (),
        seed: int = 0,
        device: str = "cpu",
        mixed_precision: str = "no",
    ) -> None:
        require_positive(
            learning_rate=learning_rate,
            cliprange=cliprange,
            cliprange_value=cliprange_value,
            target_kl=target_kl,
            horizon=horizon,
            max_grad_norm=max_grad_norm,
            temperature=temperature,
        )
        require_non_negative(vf_coef=vf_coef, init_kl_coef=init_kl_coef)
        require_fraction(gamma=gamma, lam=lam)
        require_int(1, ppo_epochs=ppo_epochs, mini_batch_size=mini_batch_size, batch_size=batch_size)
        if isinstance(env.unwrapped, gym.vector.VectorEnv):
            batch_size = env.num_envs
        if batch_size % mini_batch_size:
            raise ValueError(
                f"mini_batch_size={mini_batch_size} does not divide the batch of {batch_size} "
                "(num_envs for a vector env, else batch_size)"
            )
        super().__init__(env, policy, constraints, seed, device, mixed_precision)
        self.learning_rate, self.batch_size, self.ppo_epochs, self.mini_batch_size = (
            learning_rate,
            batch_size,
            ppo_epochs,
            mini_batch_size,
        )
        self.gamma, self.lam, self.cliprange, self.cliprange_value, self.vf_coef = (
            gamma,
            lam,
            cliprange,
            cliprange_value,
            vf_coef,
        )
        self.init_kl_coef, self.adaptive_kl, self.target_kl, self.horizon = (
            init_kl_coef,
            adaptive_kl,
            target_kl,
            horizon,
        )
        self.max_grad_norm, self.temperature = max_grad_norm, temperature
        self.kl_coef = float(init_kl_coef)
        # value head V(s_t): a linear map of the policy's last hidden state, trained with the policy (TRL's ValueHead)
        self.value_head = torch.nn.Linear(self.policy.config.hidden_size, 1).to(self.device)
        trainable = [p for p in self.policy.parameters() if p.requires_grad] + list(self.value_head.parameters())
        self.optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.0)

    def hyperparameters(self) -> dict:
        return {
            k: getattr(self, k)
            for k in (
                "learning_rate",
                "batch_size",
                "ppo_epochs",
                "mini_batch_size",
                "gamma",
                "lam",
                "cliprange",
                "cliprange_value",
                "vf_coef",
                "init_kl_coef",
                "adaptive_kl",
                "target_kl",
                "horizon",
                "max_grad_norm",
                "temperature",
                "seed",
                "mixed_precision",
            )
        }

    def respond(self, prompts: list[str]) -> generation.Rollout:
        """Sample one response per attack prompt from the current policy."""
        return self.sample_groups(prompts, 1, self.temperature)

    def forward(
        self, rollout: generation.Rollout, heads: Sequence[torch.nn.Module] | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Per-token log-probs and each head's outputs (B, T) on the response tokens, from one pass of the policy's
        body; the heads (default: the value head) read the state each response token is chosen in."""
        mask = rollout.attention_mask
        inner = self.policy.get_base_model() if hasattr(self.policy, "get_base_model") else self.policy
        hidden = inner.base_model(
            input_ids=rollout.input_ids, attention_mask=mask, position_ids=generation.positions(mask)
        ).last_hidden_state
        live = rollout.response_mask.bool()
        h = hidden[:, rollout.prompt_length - 1 : -1][live]  # the state each response token is chosen in
        logits = inner.get_output_embeddings()(h).float()
        logp = -torch.nn.functional.cross_entropy(logits, rollout.response_ids[live], reduction="none")
        outputs = [head(h).float().squeeze(-1) for head in (heads or (self.value_head,))]
        zeros = torch.zeros(live.shape, dtype=torch.float32, device=logp.device)
        return tuple(zeros.masked_scatter(live, x) for x in (logp, *outputs))

    def update_kl_coef(self, seq_kl: float) -> None:
        """The adaptive KL controller (Ziegler et al.), if on: e = clip(KL / target - 1, -0.2, 0.2);
        beta *= 1 + e * n / horizon."""
        if self.adaptive_kl:
            proportional_error = float(np.clip(seq_kl / self.target_kl - 1, -0.2, 0.2))
            self.kl_coef *= 1 + proportional_error * self.batch_size / self.horizon

    def train_step(self) -> StepReport:
        t0 = time.perf_counter()
        step = self.num_steps + 1
        # 1. one response for each of `batch_size` attack prompts, scored by the env
        prompt_ids = self.rng.integers(len(self.prompts), size=self.batch_size)
        self.policy.eval()
        rollout, rewards, costs = self.env_feedback(prompt_ids, self.respond)
        check_finite(rewards.sum(), step, "reward")
        mask = rollout.response_mask.float()
        with torch.no_grad(), self.accelerator.autocast():
            old_logp, old_values = self.forward(rollout)
            ref_logp = generation.response_logprobs(self.reference, rollout).float()

        # 2. per-token rewards (Ziegler et al.): r_t = -kl_coef * (log pi_old - log pi_ref), + env reward at the last
        # token
        kl = (old_logp - ref_logp) * mask
        token_rewards = -self.kl_coef * kl
        last = (rollout.lengths - 1).clamp_min(0)
        token_rewards[torch.arange(len(last)), last] += torch.as_tensor(rewards, device=mask.device)

        # 3. GAE: delta_t = r_t + gamma V_{t+1} - V_t;  A_t = delta_t + gamma lam A_{t+1};  returns R_t = A_t + V_t
        advantages, returns = gae(token_rewards, old_values, mask, self.gamma, self.lam)
        advantages = whiten(advantages, mask)

        # 4. `ppo_epochs` passes over shuffled minibatches of the clipped objective
        full_ref = any(c.needs_reference for c in self.constraints)
        self.policy.train()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        losses, value_losses, clipfracs = [], [], []
        for _ in range(self.ppo_epochs):
            for rows in self.rng.permutation(self.batch_size).reshape(-1, self.mini_batch_size):
                mb, idx, m = rollout[rows], torch.as_tensor(rows, device=mask.device), mask[rows]
                with self.accelerator.autocast():
                    logp, vpred = self.forward(mb)
                # L_clip = -min(ratio A, clip(ratio, 1 - eps, 1 + eps) A),  ratio = pi / pi_old
                pg_loss, clipfrac = clipped_policy_loss(logp, old_logp[idx], advantages[idx], m, self.cliprange)
                # L_V = 1/2 max((V - R)^2, (clip(V, V_old +- eps_v) - R)^2)
                vf_loss = clipped_value_loss(vpred, old_values[idx], returns[idx], m, self.cliprange_value)
                batch = Batch(mb, logp, ref_logp[idx] if full_ref else None, rewards[rows], costs[rows])
                extra_losses = [c.loss(self, batch) for c in self.constraints]
                loss = pg_loss + self.vf_coef * vf_loss + sum(x for x in extra_losses if x is not None)
                check_finite(loss.detach(), step, "loss")

                self.optimizer.zero_grad(set_to_none=True)
                self.accelerator.backward(loss)
                self.accelerator.clip_grad_norm_(params, self.max_grad_norm)
                self.optimizer.step()
                self.after_optimizer_step()
                losses.append(float(loss.detach()))
                value_losses.append(float(vf_loss.detach()))
                clipfracs.append(float(clipfrac))

        # 5. adaptive KL controller (Ziegler et al.): e = clip(KL / target - 1, -0.2, 0.2);  beta *= 1 + e * n / horizon
        seq_kl = float(kl.sum(1).mean())  # TRL's objective/kl: summed over the response, averaged over the batch
        self.update_kl_coef(seq_kl)

        return StepReport(
            step=step,
            reward=float(rewards.mean()),
            cost=float(costs.mean()),
            loss=float(np.mean(losses)),
            kl=float(kl.sum() / mask.sum().clamp_min(1)),
            extra={
                "kl_coef": self.kl_coef,
                "seq_kl": seq_kl,
                "value_loss": float(np.mean(value_losses)),
                "clipfrac": float(np.mean(clipfracs)),
                "length": float(mask.sum(1).mean()),
                "step_s": time.perf_counter() - t0,
            },
        )

    def training_state(self) -> dict:
        """The base state plus the adaptive KL coefficient (the value head is saved beside the policy)."""
        return {**super().training_state(), "kl_coef": self.kl_coef}

    def load_training_state(self, state: dict) -> None:
        super().load_training_state(state)
        self.kl_coef = float(state["kl_coef"])

    def write_checkpoint(self, path: Path) -> None:
        """`Agent.write_checkpoint` plus the value head as `value_head.safetensors`."""
        super().write_checkpoint(path)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in self.value_head.state_dict().items()}, path / VALUE_HEAD
        )

    def restore(self, path: Path) -> None:
        """The value head first, then the training state (whose optimizer moments include the head's)."""
        self.value_head.load_state_dict(load_file(path / VALUE_HEAD, device=str(self.device)))
        super().restore(path)
