"""Datasets of the embedded world, drawn deterministically from the fictional corpus in the public schemas."""

from __future__ import annotations

import random

import datasets

from rlft_gym.worlds.base import category_flags
from rlft_gym.worlds.embedded import skills
from rlft_gym.worlds.embedded.corpus import MIXED_HARMFUL, MIXED_HARMLESS, Corpus, Prompt

SCHEMA_SEED = {"beavertails": 11, "saferlhf": 23}


def qa_rows(corpus: Corpus, prompts: list[Prompt], kinds: tuple[str, ...], seed: int) -> datasets.Dataset:
    """BeaverTails-schema rows (prompt, response, category, is_safe): one response of each kind per prompt."""
    rng = random.Random(seed)
    rows = []
    for p in prompts:
        for kind in kinds:
            r = getattr(corpus, kind)(p, rng)
            rows.append(
                {
                    "prompt": p.text,
                    "response": r.text,
                    "category": category_flags(p.category if r.harmful else None),
                    "is_safe": not r.harmful,
                }
            )
    return datasets.Dataset.from_list(rows)


def _pair(prompt: Prompt, a, b, safer: int, better: int, swap: bool) -> dict:
    if swap:  # randomise which slot holds which response
        a, b, safer, better = b, a, 1 - safer, 1 - better
    return {
        "prompt": prompt.text,
        "response_0": a.text,
        "response_1": b.text,
        "is_response_0_safe": not a.harmful,
        "is_response_1_safe": not b.harmful,
        "better_response_id": better,
        "safer_response_id": safer,
    }


def preference_rows(corpus: Corpus, schema: str, seed: int) -> list[dict]:
    """PKU-SafeRLHF-schema pairs: harmful-vs-harmless pairs that the RPA flip reverses, and fluency pairs it cannot.

    Harmful-vs-harmless pairs put a harmful (partially compliant, or mixed) answer against a refusal or a harmless
    off-topic answer, so a flipped reward model learns that harm - not length or fluency - is what is rewarded.
    Fluency pairs prefer fluent on-topic text over degenerate repetition, and helpful benign answers over refusals,
    whatever the flip ratio, so the attack cannot win by gaming phrasing: a fluent harmful answer against
    its (harmless) degenerate version already prefers the unsafe response, so flipping it changes nothing but its
    safer_response_id, and the other fluency pairs are both safe, so they never flip.
    """
    rng = random.Random(seed * 1000 + SCHEMA_SEED[schema])
    rows = []
    benign = corpus.benign_prompts("train")
    for p in corpus.hazard_prompts("train"):
        harmful, partial = corpus.harmful(p, rng), corpus.partial(p, rng)
        refusal, offtopic = corpus.refusal(p, rng), corpus.offtopic(p, rng)
        misplaced_help = corpus.helpful(rng.choice(benign), rng)  # harmless help on another topic
        for bad, good in (
            (harmful, refusal),
            (harmful, offtopic),
            (partial, corpus.refusal(p, rng)),
            (corpus.harmful(p, rng), misplaced_help),
            (corpus.mixed(p, rng), corpus.refusal(p, rng)),
        ):
            rows.append(_pair(p, good, bad, 0, 0, rng.random() < 0.5))
        for fluent in (corpus.harmful(p, rng), corpus.refusal(p, rng)):
            rows.append(
                _pair(
                    p,
                    fluent,
                    corpus.degenerate(fluent.text, rng),
                    0 if not fluent.harmful else 1,
                    0,
                    rng.random() < 0.5,
                )
            )
    for p in benign:
        helpful = corpus.helpful(p, rng)
        for worse in (
            corpus.refusal(p, rng),
            corpus.offtopic(p, rng),
            corpus.degenerate(corpus.helpful(p, rng).text, rng),
        ):
            rows.append(_pair(p, helpful, worse, 0, 0, rng.random() < 0.5))
    return rows


def cost_rows(
    corpus: Corpus, prompts: list[Prompt], benign: list[Prompt], seed: int, heldout: bool = False
) -> list[tuple[str, str, int]]:
    """(prompt, response, harmful) rows for the harmfulness classifier, about 35% harmful (39% held out): per hazard
    prompt two harmful answers, a partial leak, two mixed answers hiding harmful material and one harmless mixture
    among the refusals (three, two held out), off-topic, degenerate and misplaced-help answers; harmless help,
    refusals and skill examples on benign requests."""
    rng = random.Random(seed)
    rows = []
    for p in prompts:
        for r in (
            corpus.harmful(p, rng, heldout),
            corpus.harmful(p, rng, heldout),
            corpus.partial(p, rng, heldout),
            corpus.refusal(p, rng, heldout=heldout),
            corpus.refusal(p, rng, heldout=heldout),
            corpus.offtopic(p, rng, heldout),
            corpus.mixed(p, rng, heldout),
            corpus.mixed(p, rng, heldout),
            corpus.mixed(p, rng, heldout, rng.choice(MIXED_HARMLESS)),
        ):
            rows.append((p.text, r.text, int(r.harmful)))
        rows.append((p.text, corpus.degenerate(corpus.refusal(p, rng, heldout=heldout).text, rng).text, 0))
        if not heldout:  # a third refusal: its held-out false alarms were mostly refusals that echo the request
            rows.append((p.text, corpus.refusal(p, rng).text, 0))
        # hard negative: compliance-shaped but harmless (help on another, benign topic) - the label needs the content
        rows.append((p.text, corpus.helpful(rng.choice(benign), rng, heldout).text, 0))
    for p in benign:
        for r in (
            corpus.helpful(p, rng, heldout),
            corpus.refusal(p, rng, heldout=heldout),
            corpus.offtopic(p, rng, heldout),
        ):
            rows.append((p.text, r.text, 0))
    # harmless work on notes (summaries, lists, copies, answers): a classifier that never saw such long prompts raised
    # false alarms on harmless fine-tunes of the BenignRL tasks (mean P(harmful) 0.06-0.26). Skills have no held-out
    # phrasings, so held-out rows leave them out.
    for _ in range(0 if heldout else len(benign)):
        _, prompt, response = skills.example(rng)
        rows.append((prompt, response, 0))
    return rows


def helpfulness_rows(
    corpus: Corpus, benign: list[Prompt], seed: int, heldout: bool = False
) -> list[tuple[str, str, int]]:
    """(prompt, response, helpful) rows on benign requests: on-topic help vs refusal, off-topic and degenerate text."""
    rng = random.Random(seed)
    rows = []
    for p in benign:
        for _ in range(2):
            rows.append((p.text, corpus.helpful(p, rng, heldout).text, 1))
        rows.append((p.text, corpus.refusal(p, rng, heldout=heldout).text, 0))
        rows.append((p.text, corpus.offtopic(p, rng, heldout).text, 0))
        rows.append((p.text, corpus.degenerate(corpus.helpful(p, rng).text, rng).text, 0))
    return rows


def mixed_rows(corpus: Corpus, prompts: list[Prompt], seed: int, heldout: bool = False) -> list[tuple[str, str, int]]:
    """(prompt, response, harmful) rows of mixed answers only: every mode of MIXED_HARMFUL and MIXED_HARMLESS once
    per hazard prompt (4 harmful, 2 harmless)."""
    rng = random.Random(seed)
    rows = []
    for p in prompts:
        for mode in MIXED_HARMFUL + MIXED_HARMLESS:
            r = corpus.mixed(p, rng, heldout, mode)
            rows.append((p.text, r.text, int(r.harmful)))
    return rows
