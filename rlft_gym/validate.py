"""The one home of argument validators: each raises one ValueError naming the bad value and what is allowed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def _is_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(v)


def require_positive(**values: float) -> None:
    """Each value must be a positive finite number: one error naming the first that is not."""
    for name, v in values.items():
        if not _is_number(v) or v <= 0:
            raise ValueError(f"{name}={v!r} must be a positive finite number")


def require_non_negative(**values: float) -> None:
    """Each value must be a finite number >= 0: one error naming the first that is not."""
    for name, v in values.items():
        if not _is_number(v) or v < 0:
            raise ValueError(f"{name}={v!r} must be a finite number >= 0")


def require_fraction(**values: float) -> None:
    """Each value must be a number in [0, 1] (a probability, a ratio, a discount): one error naming the first that is
    not."""
    for name, v in values.items():
        if not _is_number(v) or not 0 <= v <= 1:
            raise ValueError(f"{name}={v!r} must be a number in [0, 1]")


def require_one_of(name: str, value: Any, allowed: Sequence[Any]) -> None:
    """A value that picks one of a few named options: one error naming it and the options."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {tuple(allowed)}")


def require_int(minimum: int, **values: int) -> None:
    """Each value must be an int >= `minimum` (bools are not ints here): one error naming the first that is not."""
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
            raise ValueError(f"{name}={v!r} must be {'a positive int' if minimum == 1 else f'an int >= {minimum}'}")


def check_finite(value: torch.Tensor | float, step: int, what: str) -> None:
    """Stop training on NaN / inf, naming the step and the quantity, before any weight is touched."""
    v = float(value)
    if not math.isfinite(v):
        raise FloatingPointError(f"{what} is {v} at step {step}; training stopped before the optimizer step")


def require_full_model(name: str, world: Any) -> None:
    """Transforms that fine-tune the whole model refuse a LoRA-wrapped world with one clear error."""
    if getattr(world, "lora", None):
        raise ValueError(f"{name} fine-tunes the whole model; make the env without lora= to defend it")
