"""Token-level RPA envs (`RPA-BeaverTails-Tokens-v0`, `RPA-SafeRLHF-Tokens-v0`): one action per token, so SB3 and
any discrete-action algorithm run on the attack unchanged.

An episode answers one attack prompt. The observation is a fixed-length int64 vector of token ids,
`max_prompt_tokens + max_new_tokens` long: the tokenized `world.format_prompt(prompt)` **left-padded** into the first
`max_prompt_tokens` slots (the longest prompt of the set fills them), then the response tokens emitted so far from slot
`max_prompt_tokens` on, the unused slots after them holding the pad id. The action is the next token id. The episode
terminates on EOS or after `max_new_tokens` tokens; then the response, decoded with the world tokenizer (special tokens
skipped), gets the reward model's reward and `info["cost"]` from the harmfulness classifier - the same scorers as the
text env. Earlier steps have reward 0 and cost 0.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlft_gym.envs.rpa import RPAConfig, RPAEnv
from rlft_gym.worlds.base import category_flags

TOKEN_ENV_IDS_BY_SCHEMA = {"beavertails": "RPA-BeaverTails-Tokens-v0", "saferlhf": "RPA-SafeRLHF-Tokens-v0"}


class RPATokenEnv(gym.Env[np.ndarray, np.int64]):
    """The RPA CMDP one token at a time: `Box(int64)` token-id observation, `Discrete(vocab)` action."""

    metadata: dict[str, Any] = {"render_modes": ["ansi"]}

    def __init__(self, schema: str = "beavertails", **kwargs: Any) -> None:
        env_id = TOKEN_ENV_IDS_BY_SCHEMA.get(schema, f"token-level RPA env with schema {schema!r}")
        config = RPAConfig.from_kwargs(env_id, kwargs, schema=schema)
        if config.horizon != 1:
            raise ValueError(
                f"horizon={config.horizon!r} is invalid for {env_id}; expected 1 "
                "(an episode is one response, token by token)"
            )
        self.text_env = RPAEnv(schema, **kwargs)
        self.config, self.world, self.prompts = config, self.text_env.world, self.text_env.prompts
        self.cost_limit, self.max_new_tokens = self.text_env.cost_limit, config.max_new_tokens
        self.policy_path, self.render_mode = self.text_env.policy_path, config.render_mode
        tok = self.world.tokenizer
        if tok.eos_token_id is None:
            raise ValueError(f"{env_id} needs a tokenizer with an eos token (the action that ends a response)")
        self.eos_id = tok.eos_token_id
        self.pad_id = tok.eos_token_id if tok.pad_token_id is None else tok.pad_token_id
        encoded = tok([self.world.format_prompt(p) for p in self.prompts.prompts], add_special_tokens=False)[
            "input_ids"
        ]
        self.max_prompt_tokens = max(map(len, encoded))
        self._prompt_tokens = np.full((len(encoded), self.max_prompt_tokens), self.pad_id, dtype=np.int64)
        for row, ids in zip(self._prompt_tokens, encoded):
            row[self.max_prompt_tokens - len(ids) :] = ids
        vocab = len(tok)
        self.observation_space = spaces.Box(
            0, vocab - 1, shape=(self.max_prompt_tokens + self.max_new_tokens,), dtype=np.int64
        )
        self.action_space = spaces.Discrete(vocab)
        self._obs = np.full(self.observation_space.shape, self.pad_id, dtype=np.int64)
        self._prompt_id, self._emitted, self._done = 0, 0, True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode on a random attack prompt, or on `options={"prompt_id": i}`."""
        super().reset(seed=seed)
        options = dict(options or {})
        if "prompt_id" not in options:
            options["prompt_id"] = int(self.np_random.integers(len(self.prompts)))
        _, info = self.text_env.reset(options=options)  # validates the options as the text env does
        self._prompt_id, self._emitted, self._done = info["prompt_id"], 0, False
        self._obs[:] = self.pad_id
        self._obs[: self.max_prompt_tokens] = self._prompt_tokens[self._prompt_id]
        return self._obs.copy(), info

    def step(self, action: int | np.integer) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Append one token; on EOS or the `max_new_tokens`-th token, score the decoded response."""
        if self._done:
            raise RuntimeError("the episode is over (or was never started): call reset() first")
        if not self.action_space.contains(action):
            raise ValueError(f"action={action!r} must be a token id: an int in [0, {self.action_space.n})")
        token = int(action)
        self._obs[self.max_prompt_tokens + self._emitted] = token
        self._emitted += 1
        pid = self._prompt_id
        info: dict[str, Any] = {
            "prompt_id": pid,
            "category": category_flags(self.prompts.categories[pid]),
            "cost": 0.0,
            "raw_reward": 0.0,
        }
        if token != self.eos_id and self._emitted < self.max_new_tokens:
            return self._obs.copy(), 0.0, False, False, info
        self._done = True
        response = self.response
        rewards, costs = self.text_env.score([pid], [response])
        info.update(cost=float(costs[0]), raw_reward=float(rewards[0]), response=response)
        return self._obs.copy(), float(rewards[0]), True, False, info

    @property
    def response(self) -> str:
        """The response emitted so far, decoded with special tokens skipped."""
        ids = self._obs[self.max_prompt_tokens : self.max_prompt_tokens + self._emitted]
        return self.world.tokenizer.decode(ids.tolist(), skip_special_tokens=True)

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return f"prompt: {self.prompts.prompts[self._prompt_id]}\nresponse: {self.response}"

    def close(self) -> None:
        self.text_env.close()
