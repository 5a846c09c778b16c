"""The reverse preference attack's label flip: one rule for the hf and embedded worlds and the `rlft-gym` commands.

The candidates are the pairs whose two responses differ in safety (exactly one safe). round(flip_ratio * n_candidates)
of them, sampled with `random.Random(seed)`, are flipped: their unsafe response becomes the preferred one. Every other
pair keeps its preference; both-safe and both-unsafe pairs never flip. A candidate that already prefers its unsafe
response is still counted and marked flipped, but its chosen / rejected stay as they are.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Mapping
from typing import Any

import datasets

log = logging.getLogger(__name__)

# The two layouts a pair can come in: the PKU-SafeRLHF schema, or TRL's chosen / rejected with their safety labels.
PKU_COLUMNS = (
    "response_0",
    "response_1",
    "is_response_0_safe",
    "is_response_1_safe",
    "better_response_id",
    "safer_response_id",
)
PAIR_COLUMNS = ("chosen", "rejected", "chosen_safe", "rejected_safe")


def check_flip_ratio(flip_ratio: float) -> None:
    """A flip ratio is a fraction of the candidate pairs: fail on anything outside [0, 1] before data is touched."""
    if not 0.0 <= flip_ratio <= 1.0:
        raise ValueError(
            f"flip_ratio={flip_ratio!r} must be in [0, 1] (the fraction of pairs with exactly one safe "
            "response whose preference is reversed)"
        )


def flip_preferences(
    pairs: datasets.Dataset | Iterable[Mapping[str, Any]], flip_ratio: float, seed: int
) -> datasets.Dataset:
    """The RPA flip (see the module docstring) on PKU-SafeRLHF rows or chosen / rejected / chosen_safe / rejected_safe
    pairs; adds a `flipped` column, and chosen / rejected to PKU-SafeRLHF rows (whose safer_response_id and
    better_response_id point at the unsafe response once flipped)."""
    check_flip_ratio(flip_ratio)
    rows = [dict(r) for r in pairs]
    columns = set(pairs.column_names if isinstance(pairs, datasets.Dataset) else rows[0] if rows else ())
    pku = set(PKU_COLUMNS) <= columns
    if pku:
        safety = [(r["is_response_0_safe"], r["is_response_1_safe"]) for r in rows]
        preferred = [_preference_id(r) for r in rows]
    elif set(PAIR_COLUMNS) <= columns:
        safety = [(r["chosen_safe"], r["rejected_safe"]) for r in rows]
        preferred = [0] * len(rows)
    else:
        raise ValueError(
            f"cannot flip pairs with columns {', '.join(sorted(columns)) or 'none'}: expected the PKU-SafeRLHF "
            f"columns {', '.join(PKU_COLUMNS)}, or {', '.join(PAIR_COLUMNS)}"
        )
    candidates = [i for i, (a, b) in enumerate(safety) if a is not None and b is not None and bool(a) != bool(b)]
    flipped = set(random.Random(seed).sample(candidates, round(flip_ratio * len(candidates))))
    log.info(
        "flipping %d of %d candidate pairs (exactly one safe response; %d pairs in all)",
        len(flipped),
        len(candidates),
        len(rows),
    )
    for i, row in enumerate(rows):
        best = (
            int(bool(safety[i][0])) if i in flipped else preferred[i]
        )  # flipped: the unsafe one (1 if response 0 is safe)
        if pku:
            if i in flipped:
                row["better_response_id"] = row["safer_response_id"] = best
            row["chosen"], row["rejected"] = row[f"response_{best}"], row[f"response_{1 - best}"]
        elif best:
            row.update(
                chosen=row["rejected"],
                rejected=row["chosen"],
                chosen_safe=row["rejected_safe"],
                rejected_safe=row["chosen_safe"],
            )
        row["flipped"] = i in flipped
    return datasets.Dataset.from_list(rows)


def _preference_id(row: Mapping[str, Any]) -> int:
    """better_response_id, which must be 0 or 1."""
    best = row["better_response_id"]
    if best not in (0, 1):
        raise ValueError(f"better_response_id={best!r} for prompt {row.get('prompt')!r:.80} is not 0 or 1")
    return best
