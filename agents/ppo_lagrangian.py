"""PPO-Lagrangian as Safe RLHF (Dai et al. 2024) runs it, read top to bottom: PPO with a second critic for the cost, a
KL penalty that lowers the reward and raises the cost, GAE for each, and the policy trained on the combined advantage
A = (A_r - lambda A_c) / (1 + lambda), with lambda learned on log-lambda.

Each step, as Safe RLHF's `rl_step`: the step's costs join a window of the last `episode_cost_window_size` episode
costs, lambda takes one SGD step on the loss -(J_c - b) exp(log lambda) (J_c the window's mean; then
log lambda <= log lambda_max; from step `lambda_update_delay_steps` on), then the policy and both critics train with the
new lambda. Safe RLHF updates
lambda once per PPO update; at its defaults (one update iteration over one minibatch per rollout) that is once per
rollout, which is what we do whatever `ppo_epochs` and `mini_batch_size` are. The log-lambda update is written here
rather than with `rlft_gym.lagrange.Lagrange`, which learns lambda itself: the parameterisation is Safe RLHF's own.

Defaults, from Safe RLHF's PPO-Lag script: lambda_init 1.0, lambda_lr 0.1, lambda_max 5.0, no delay, window 128, and a
fixed KL coefficient 0.01 (`init_kl_coef=0.01, adaptive_kl=False`). Their threshold 0.0 is in the cost model's logit
units (> 0 means unsafe); our cost is P(harmful) in [0, 1], whose limit is the env's b, so `cost_limit` defaults to
`env.unwrapped.cost_limit`. The cost critic is a second linear head on the policy's last hidden state, like PPO's value
head, trained with its own clipped value loss (weight `vf_coef`, as the reward critic's); Safe RLHF trains separate
critic models at lr 5e-6 beside an actor at 1e-5, here one optimizer at PPO's lr (1.41e-5) trains the policy and both
heads. As our PPO and OmniSafe (Safe RLHF leaves them raw), A_r and A_c are each whitened before they are combined;
the rewards and costs are not clipped (Safe RLHF clips scores to +-50, beyond our scorers' range). PPO's other defaults
are kept. Every report's `extra` holds `LagrangeMultiplier` (the lambda this step used), `cost_limit` and
`episode_cost` (J_c).
"""

from __future__ import annotations

import math
import time
from collections import deque
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from rlft_gym import generation
from rlft_gym.agent import Batch
from rlft_gym.agents.grpo_lagrangian import lagrangian_advantages
from rlft_gym.agents.ppo import PPO, clipped_policy_loss, clipped_value_loss, gae, whiten
from rlft_gym.callbacks import StepReport
from rlft_gym.validate import check_finite, require_int, require_non_negative, require_positive

COST_HEAD = "cost_head.safetensors"


class PPOLagrangian(PPO):
    """PPO with a cost critic and a learned multiplier on the cost advantage (Safe RLHF's PPO-Lag); see the module
    docstring for the defaults and their sources."""

    def __init__(
        self,
        env: gym.Env | gym.vector.VectorEnv,
        policy: str | Path | None = None,
        *,
        cost_limit: float | None = None,
        lambda_init: float = 1.0,
        lambda_lr: float = 0.1,
        lambda_max: float | None = 5.0,
        lambda_update_delay_steps: int = 0,
        episode_cost_window_size: int = 128,
        init_kl_coef: float = 0.01,
        adaptive_kl: bool = False,
        **ppo_kwargs: Any,
    ) -> None:
        cost_limit = getattr(env.unwrapped, "cost_limit", None) if cost_limit is None else cost_limit
        require_non_negative(cost_limit=cost_limit)
        require_positive(lambda_init=lambda_init, lambda_lr=lambda_lr)
        if lambda_max is not None:
            require_positive(lambda_max=lambda_max)
        require_int(0, lambda_update_delay_steps=lambda_update_delay_steps)
        require_int(1, episode_cost_window_size=episode_cost_window_size)
        super().__init__(env, policy, init_kl_coef=init_kl_coef, adaptive_kl=adaptive_kl, **ppo_kwargs)
        self.cost_limit, self.lambda_init, self.lambda_lr, self.lambda_max = (
            float(cost_limit),
            lambda_init,
            lambda_lr,
            lambda_max,
        )
        self.lambda_update_delay_steps, self.episode_cost_window_size = (
            lambda_update_delay_steps,
            episode_cost_window_size,
        )
        # the cost critic V_c(s_t): a second linear head on the policy's last hidden state, in the same optimizer
        self.cost_head = torch.nn.Linear(self.policy.config.hidden_size, 1).to(self.device)
        self.optimizer.add_param_group({"params": list(self.cost_head.parameters())})
        # lambda = exp(log_lambda), learned by SGD (Safe RLHF's parameterisation), and the window J_c averages
        self.log_lambda = torch.nn.Parameter(torch.tensor(math.log(lambda_init)))
        self.log_lambda_optimizer = torch.optim.SGD([self.log_lambda], lr=lambda_lr)
        self.episode_costs: deque[float] = deque(maxlen=episode_cost_window_size)

    def hyperparameters(self) -> dict[str, Any]:
        return {
            **super().hyperparameters(),
            **{
                k: getattr(self, k)
                for k in (
                    "cost_limit",
                    "lambda_init",
                    "lambda_lr",
                    "lambda_max",
                    "lambda_update_delay_steps",
                    "episode_cost_window_size",
                )
            },
        }

    @property
    def multiplier(self) -> float:
        """lambda = exp(log lambda)."""
        return float(self.log_lambda.detach().exp())

    def train_step(self) -> StepReport:
        t0 = time.perf_counter()
        step = self.num_steps + 1
        # 1. one response for each of `batch_size` attack prompts, scored by the env
        prompt_ids = self.rng.integers(len(self.prompts), size=self.batch_size)
        self.policy.eval()
        rollout, rewards, costs = self.env_feedback(prompt_ids, self.respond)
        check_finite(rewards.sum(), step, "reward")
        check_finite(costs.sum(), step, "cost")
        mask = rollout.response_mask.float()
        with torch.no_grad(), self.accelerator.autocast():
            old_logp, old_values, old_cost_values = self.forward(rollout, (self.value_head, self.cost_head))
            ref_logp = generation.response_logprobs(self.reference, rollout).float()

        # 2. the multiplier first: J_c = mean of the last `episode_cost_window_size` episode costs;
        # one SGD step on -(J_c - b) exp(log lambda), then log lambda <= log lambda_max
        self.episode_costs.extend(costs.tolist())
        episode_cost = float(np.mean(self.episode_costs))
        if self.num_steps >= self.lambda_update_delay_steps:
            lambda_loss = -(episode_cost - self.cost_limit) * self.log_lambda.exp()
            self.log_lambda_optimizer.zero_grad()
            lambda_loss.backward()
            self.log_lambda_optimizer.step()
            if self.lambda_max is not None:
                with torch.no_grad():
                    self.log_lambda.clamp_(max=math.log(self.lambda_max))
        multiplier = self.multiplier

        # 3. per-token reward and cost (Safe RLHF): r_t = -beta KL_t, c_t = +beta KL_t, each plus the env's score at
        # the last token, KL_t = log pi_old - log pi_ref
        kl = (old_logp - ref_logp) * mask
        rows, last = torch.arange(len(rollout.lengths)), (rollout.lengths - 1).clamp_min(0)
        token_rewards, token_costs = -self.kl_coef * kl, self.kl_coef * kl
        token_rewards[rows, last] += torch.as_tensor(rewards, device=mask.device)
        token_costs[rows, last] += torch.as_tensor(costs, device=mask.device)

        # 4. GAE with each critic, A_r and A_c whitened, then combined: A = (A_r - lambda A_c) / (1 + lambda)
        reward_advantages, returns = gae(token_rewards, old_values, mask, self.gamma, self.lam)
        cost_advantages, cost_returns = gae(token_costs, old_cost_values, mask, self.gamma, self.lam)
        advantages = lagrangian_advantages(whiten(reward_advantages, mask), whiten(cost_advantages, mask), multiplier)

        # 5. `ppo_epochs` passes over shuffled minibatches of the clipped objective and both critics' losses
        full_ref = any(c.needs_reference for c in self.constraints)
        self.policy.train()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        losses, value_losses, cost_value_losses, clipfracs = [], [], [], []
        for _ in range(self.ppo_epochs):
            for mb_rows in self.rng.permutation(self.batch_size).reshape(-1, self.mini_batch_size):
                mb, idx, m = rollout[mb_rows], torch.as_tensor(mb_rows, device=mask.device), mask[mb_rows]
                with self.accelerator.autocast():
                    logp, vpred, cpred = self.forward(mb, (self.value_head, self.cost_head))
                # L_clip = -min(ratio A, clip(ratio, 1 - eps, 1 + eps) A),  ratio = pi / pi_old
                pg_loss, clipfrac = clipped_policy_loss(logp, old_logp[idx], advantages[idx], m, self.cliprange)
                # L_V and L_Vc = 1/2 max((V - R)^2, (clip(V, V_old +- eps_v) - R)^2), each critic on its own returns
                vf_loss = clipped_value_loss(vpred, old_values[idx], returns[idx], m, self.cliprange_value)
                cost_vf_loss = clipped_value_loss(
                    cpred, old_cost_values[idx], cost_returns[idx], m, self.cliprange_value
                )
                batch = Batch(mb, logp, ref_logp[idx] if full_ref else None, rewards[mb_rows], costs[mb_rows])
                extra_losses = [c.loss(self, batch) for c in self.constraints]
                loss = pg_loss + self.vf_coef * (vf_loss + cost_vf_loss) + sum(x for x in extra_losses if x is not None)
                check_finite(loss.detach(), step, "loss")

                self.optimizer.zero_grad(set_to_none=True)
                self.accelerator.backward(loss)
                self.accelerator.clip_grad_norm_(params, self.max_grad_norm)
                self.optimizer.step()
                self.after_optimizer_step()
                losses.append(float(loss.detach()))
                value_losses.append(float(vf_loss.detach()))
                cost_value_losses.append(float(cost_vf_loss.detach()))
                clipfracs.append(float(clipfrac))

        # 6. the adaptive KL controller if on (off by default, as in Safe RLHF): beta *= 1 + e * n / horizon
        seq_kl = float(kl.sum(1).mean())
        self.update_kl_coef(seq_kl)

        return StepReport(
            step=step,
            reward=float(rewards.mean()),
            cost=float(costs.mean()),
            loss=float(np.mean(losses)),
            kl=float(kl.sum() / mask.sum().clamp_min(1)),
            extra={
                "LagrangeMultiplier": multiplier,
                "cost_limit": self.cost_limit,
                "episode_cost": episode_cost,
                "kl_coef": self.kl_coef,
                "seq_kl": seq_kl,
                "value_loss": float(np.mean(value_losses)),
                "cost_value_loss": float(np.mean(cost_value_losses)),
                "clipfrac": float(np.mean(clipfracs)),
                "length": float(mask.sum(1).mean()),
                "step_s": time.perf_counter() - t0,
            },
        )

    def training_state(self) -> dict[str, Any]:
        """PPO's state plus log lambda, its optimizer and the episode-cost window (the cost head is saved beside)."""
        return {
            **super().training_state(),
            "log_lambda": self.log_lambda.detach().clone(),
            "log_lambda_optimizer": self.log_lambda_optimizer.state_dict(),
            "episode_costs": list(self.episode_costs),
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        super().load_training_state(state)
        with torch.no_grad():
            self.log_lambda.copy_(state["log_lambda"])
        self.log_lambda_optimizer.load_state_dict(state["log_lambda_optimizer"])
        self.episode_costs = deque((float(c) for c in state["episode_costs"]), maxlen=self.episode_cost_window_size)

    def write_checkpoint(self, path: Path) -> None:
        """`PPO.write_checkpoint` plus the cost head as `cost_head.safetensors`."""
        super().write_checkpoint(path)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.cost_head.state_dict().items()}, path / COST_HEAD)

    def restore(self, path: Path) -> None:
        """The cost head first, then PPO's restore (value head, then the training state with both heads' moments)."""
        self.cost_head.load_state_dict(load_file(path / COST_HEAD, device=str(self.device)))
        super().restore(path)
