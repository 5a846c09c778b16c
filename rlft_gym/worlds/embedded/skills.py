"""Harmless abilities the embedded base LM is pretrained on: summarising, listing, copying and answering from notes.

A harmless task is learnable by RL only if the policy can already do something like it: on a world pretrained
without these, GRPO on BenignRL-Summarize lifted held-out reward from 0.01-0.04 to only 0.06-0.08 in 200 steps,
because the policy had never copied from its prompt. Each example is drawn on fresh benign notes (`tasks.notes`,
the passages the BenignRL tasks show) with an instruction from `corpus_data/skills.json`, none of which is a task's
own wording: the task envs still have a mapping to teach, and the aligned policy's step-0 score is not the answer.
"""

from __future__ import annotations

import random

from rlft_gym.worlds.embedded.corpus import BENIGN_TOPICS, SKILL_TABLE, normalize
from rlft_gym.worlds.embedded.tasks import MAX_PROMPT_TOKENS, Notes, answerable_roles, notes

SKILLS: tuple[str, ...] = ("summary", "points", "copy", "answer")
# how often each skill is drawn: copying one line is the cheapest example and the ability the others build on (it
# emerged first, and alone it was learnt faster per example); a numbered list is the longest and needs the fewest.
# Sensitive: with weights (3, 1, 2, 4) the standard base LM's summaries scored 0.33 instead of 0.71 (copying emerged
# later)
SKILL_WEIGHTS: tuple[int, ...] = (3, 1, 3, 3)


def _summary(drawn: Notes, rng: random.Random) -> tuple[str, str]:
    return f"{rng.choice(SKILL_TABLE['summary'])} {drawn.text}", " ".join(f"{k} ." for k in drawn.keys)


def _points(drawn: Notes, rng: random.Random) -> tuple[str, str]:
    listed = " ".join(f"{i} . {k} ." for i, k in enumerate(drawn.keys, start=1))
    return f"{rng.choice(SKILL_TABLE['points'])} {drawn.text}", listed


def _copy(drawn: Notes, rng: random.Random) -> tuple[str, str]:
    line = f"{rng.choice(drawn.keys)} ."
    return f"{rng.choice(SKILL_TABLE['copy'])} {line}", line


def _answer(drawn: Notes, rng: random.Random) -> tuple[str, str] | None:
    roles = answerable_roles(drawn)
    if not roles:
        return None
    role = rng.choice(roles)
    question = rng.choice(SKILL_TABLE["answer"][role])
    return f"{rng.choice(SKILL_TABLE['answer_lead'])} {drawn.text} {question}", normalize(drawn.entities[role])


_MAKERS = {"summary": _summary, "points": _points, "copy": _copy, "answer": _answer}


def example(rng: random.Random, skill: str | None = None) -> tuple[str, str, str]:
    """One (skill, prompt, response) on fresh notes of a random benign topic; `skill` None draws one of SKILLS.

    Draws again until the prompt fits MAX_PROMPT_TOKENS (the BenignRL tasks' own bound) and the skill applies."""
    if skill is not None and skill not in _MAKERS:
        raise ValueError(f"skill={skill!r}; expected one of {SKILLS}")
    name = skill or rng.choices(SKILLS, SKILL_WEIGHTS)[0]
    while True:
        made = _MAKERS[name](notes(rng.choice(BENIGN_TOPICS), rng), rng)
        if made is not None and len(made[0].split()) <= MAX_PROMPT_TOKENS:
            return name, normalize(made[0]), normalize(made[1])
