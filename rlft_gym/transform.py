"""Offline defences: a `Transform` turns the env's policy into a defended checkpoint before any attack sees it.

`transform.apply(env)` trains once per (world, transform, config, starting policy) and caches the result under
`$RLFT_GYM_HOME/defended/<name>/<fingerprint>` (published in one rename; a corrupt or partial cache is rebuilt).
While it trains, resume checkpoints (weights, optimizer, step, random state) go to `<that dir>.work/`, so a killed run
picks up from the last one; the work dir is removed once the checkpoint is published. Attack the result with
`gym.make(env_id, policy=str(path))`: the env's default `reference="policy"` makes it its own KL reference.
"""

from __future__ import annotations

import json
import logging
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from rlft_gym import cache
from rlft_gym.training import lm_loss
from rlft_gym.validate import check_finite, require_full_model, require_int, require_positive

log = logging.getLogger(__name__)

RESUME = "resume"  # the work dir's latest resume checkpoint (a save_pretrained model plus STATE)
STATE = "state.pt"


def policy_identity(policy: str | Path) -> dict[str, Any]:
    """What a starting policy is, for cache keys: a cached artifact's fingerprint, else its path with each file's size
    and modification time (so an overwritten checkpoint is a new key), else the hub id as given."""
    path = Path(policy)
    if (path / cache.MANIFEST).is_file():
        return {"fingerprint": json.loads((path / cache.MANIFEST).read_text())["fingerprint"]}
    if path.is_dir():
        stats = {f: f.stat() for f in sorted(path.rglob("*")) if f.is_file()}
        files = {str(f.relative_to(path)): [s.st_size, s.st_mtime_ns] for f, s in stats.items()}
        return {"path": str(path.resolve()), "files": files}
    return {"hub_id": str(policy)}


def checkpoint_fingerprint(checkpoint: str | Path) -> str:
    """The cache fingerprint of a defended checkpoint (`Transform.apply`'s result or a copy of it)."""
    return json.loads((Path(checkpoint) / cache.MANIFEST).read_text())["fingerprint"]


@dataclass(frozen=True)
class Resume:
    """A transform run's resume checkpoint in its work dir: `save` replaces it (never half-written), `load` reads it."""

    work: Path
    every: int

    def save(self, step: int, model: PreTrainedModel, optimizer: torch.optim.Optimizer) -> None:
        """Write the state after `step` optimizer steps in place of the previous one: staged beside it, then moved."""
        with cache.staging(self.work / RESUME) as tmp:
            model.save_pretrained(tmp)
            state = {"step": step, "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()}
            if torch.cuda.is_available():
                state["cuda_rng"] = torch.cuda.get_rng_state_all()
            torch.save(state, tmp / STATE)
            cache.publish(tmp, self.work / RESUME)

    def due(self, step: int, steps: int) -> bool:
        """Whether to save after `step` of `steps` (every `every` steps; never after the last, which is the result)."""
        return step % self.every == 0 and step < steps

    def load(self) -> tuple[Path | None, dict[str, Any] | None]:
        """The latest resume checkpoint's model dir and state, or (None, None) when there is none."""
        if not (self.work / RESUME / STATE).is_file():
            return None, None
        return self.work / RESUME, torch.load(self.work / RESUME / STATE, weights_only=True)

    @staticmethod
    def restore_rng(state: dict[str, Any]) -> None:
        """Put back the random state `save` recorded."""
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])


def optimize(
    name: str,
    world: Any,
    policy: str | Path,
    resume: Resume,
    steps: int,
    learning_rate: float,
    backward_at: Callable[[PreTrainedModel, int], float],
    progress: bool,
    seed: int,
    trainable: Callable[[PreTrainedModel], list[torch.nn.Parameter]] | None = None,
) -> tuple[PreTrainedModel, float, int]:
    """The optimizer loop every transform shares: load `policy` (or the resume checkpoint), then run AdamW (no weight
    decay, gradient norm clipped to 1.0) from the resumed step to `steps`. `backward_at(model, step)` leaves the step's
    gradients on the parameters and returns its loss; `trainable` picks the parameters to update (default: all).
    Returns the model in eval mode, the last loss and the step training started from."""
    checkpoint, state = resume.load()
    model = world.load_policy(checkpoint or policy, world.device)
    model.loss_type = "ForCausalLM"  # the plain next-token loss, named so transformers does not warn about it
    params = list(model.parameters()) if trainable is None else trainable(model)
    if trainable is not None:
        model.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    start = 0
    if state is not None:
        start = int(state["step"])
        optimizer.load_state_dict(state["optimizer"])
        Resume.restore_rng(state)
        log.info("%s: resuming at step %d of %d from %s", name, start, steps, resume.work)
    else:
        torch.manual_seed(seed)
    model.train()
    loss_value = float("nan")
    for step in tqdm(range(start, steps), desc=name, initial=start, total=steps, disable=not progress):
        optimizer.zero_grad(set_to_none=True)
        loss_value = backward_at(model, step)
        check_finite(loss_value, step + 1, f"{name} loss")
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if resume.due(step + 1, steps):
            resume.save(step + 1, model, optimizer)
    return model.eval(), loss_value, start


def draw_rows(rows: Sequence[Any], batch_size: int, seed: int, step: int) -> list[Any]:
    """Step `step`'s batch of `batch_size` rows, drawn from (`seed`, `step`) alone so a resumed run sees the batches
    an uninterrupted one would."""
    draw = np.random.default_rng([seed, step])
    return [rows[i] for i in draw.choice(len(rows), batch_size, replace=len(rows) < batch_size)]


def save_defended(model: PreTrainedModel, world: Any, out: Path) -> None:
    """Write the defended model and the world's tokenizer into `out` (save_pretrained)."""
    model.save_pretrained(out)
    world.tokenizer.save_pretrained(out)


class Transform(ABC):
    """An offline defence: `apply(env)` returns the path of a defended save_pretrained causal LM and tokenizer.

    Subclasses are frozen dataclasses whose fields are the config (part of the cache key), set `name`, and implement
    `train`. The starting policy is the env's (`env.unwrapped.policy_path`), so transforms compose: apply one to an env
    made with `policy=` another's result.
    """

    name: ClassVar[str]

    def config(self) -> dict[str, Any]:
        """The settings that determine the result (the dataclass fields), recorded in the cache manifest."""
        return asdict(self)

    @abstractmethod
    def train(
        self, env: gym.Env | gym.vector.VectorEnv, policy: str | Path, out: Path, resume: Resume, progress: bool
    ) -> dict[str, Any]:
        """Write the defended model and tokenizer into `out` (save_pretrained), continuing from `resume.load()` when it
        finds a checkpoint and saving one whenever `resume.due(step, total)`; return metrics for the manifest."""

    def cache_key(self, env: gym.Env | gym.vector.VectorEnv) -> dict[str, Any]:
        """What the cached result depends on: the world, this transform and its config, and the starting policy."""
        base = env.unwrapped
        return {
            "world": base.world.fingerprint,
            "transform": self.name,
            "config": self.config(),
            "policy": policy_identity(base.policy_path),
        }

    def cache_dir(self, env: gym.Env | gym.vector.VectorEnv) -> Path:
        """Where `apply` caches this transform's result for `env`: `$RLFT_GYM_HOME/defended/<name>/<fingerprint>`."""
        return cache.home() / "defended" / self.name / cache.fingerprint(self.cache_key(env))

    def apply(
        self,
        env: gym.Env | gym.vector.VectorEnv,
        out_dir: str | Path | None = None,
        progress: bool = True,
        save_every: int = 10,
    ) -> Path:
        """The defended checkpoint for `env`'s policy: trained (resuming a killed run, with resume checkpoints every
        `save_every` steps) or taken from the cache; with `out_dir`, a copy placed there, whose path is returned."""
        require_int(1, save_every=save_every)
        if out_dir is not None:
            _check_out_dir(Path(out_dir))
        directory = self.cache_dir(env)
        resume = Resume(directory.with_name(f"{directory.name}.work"), save_every)
        policy = env.unwrapped.policy_path
        cache.ensure(directory, self.cache_key(env), lambda tmp: self.train(env, policy, tmp, resume, progress))
        shutil.rmtree(resume.work, ignore_errors=True)
        if out_dir is None:
            return directory
        out = Path(out_dir)
        with cache.staging(out) as tmp:
            shutil.copytree(directory, tmp, dirs_exist_ok=True)
            cache.publish(tmp, out)
        return out


def _check_out_dir(out: Path) -> None:
    """`out_dir` must be new, empty, or an earlier copy of a defended checkpoint (never someone's other files)."""
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / cache.MANIFEST).is_file())):
        raise ValueError(f"out_dir={str(out)!r} exists and is not a defended checkpoint; give a new or empty directory")


@dataclass(frozen=True)
class SFTTransform(Transform):
    """Extra safety alignment before release: `steps` of supervised fine-tuning on the world's refusals
    (`world.refusal_dataset()`, its safe rows), loss on the response tokens only, as the embedded world is aligned.

    Plain AdamW (no weight decay) at a constant `learning_rate`, gradient norm clipped to 1.0; each step's batch of
    `batch_size` rows is drawn from (`seed`, step) alone, so a resumed run sees the batches an uninterrupted one would.
    """

    name: ClassVar[str] = "refusal-sft"

    steps: int = 100
    learning_rate: float = 1e-4
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        require_int(1, steps=self.steps, batch_size=self.batch_size)
        require_int(0, seed=self.seed)
        require_positive(learning_rate=self.learning_rate)

    def train(
        self, env: gym.Env | gym.vector.VectorEnv, policy: str | Path, out: Path, resume: Resume, progress: bool
    ) -> dict[str, Any]:
        world = env.unwrapped.world
        require_full_model(self.name, world)
        data = world.refusal_dataset()
        rows = [
            (world.format_prompt(p), r) for p, r, ok in zip(data["prompt"], data["response"], data["is_safe"]) if ok
        ]
        if not rows:
            raise ValueError(f"{self.name}: world.refusal_dataset() has no safe rows (is_safe=True) to train on")

        def backward_at(model: PreTrainedModel, step: int) -> float:
            batch = draw_rows(rows, self.batch_size, self.seed, step)
            loss = lm_loss(model, world.tokenizer, [p for p, _ in batch], [r for _, r in batch], response_only=True)
            loss.backward()
            return float(loss.detach())

        model, loss, start = optimize(
            self.name, world, policy, resume, self.steps, self.learning_rate, backward_at, progress, self.seed
        )
        save_defended(model, world, out)
        return {"final_loss": loss, "resumed_from_step": start, "refusal_rows": len(rows), "policy": str(policy)}
