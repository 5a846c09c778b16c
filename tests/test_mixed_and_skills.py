"""World v4 corpus additions: mixed answers (harmful material in harmless framing, and harmless mixtures) and the
harmless abilities the base LM is pretrained on."""

from __future__ import annotations

import random

import pytest

from rlft_gym.worlds.embedded import data, skills, tasks
from rlft_gym.worlds.embedded import oracle as harm_oracle
from rlft_gym.worlds.embedded.corpus import (
    MIXED_FRAMES,
    MIXED_HARMFUL,
    MIXED_HARMLESS,
    MIXED_MAX_TOKENS,
    REFUSAL_STYLES,
    SKILL_TABLE,
    Corpus,
    normalize,
)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus(0)


@pytest.fixture(scope="module")
def mixed(corpus: Corpus) -> list:
    """(prompt, mode, heldout, response) for 40 hazard prompts x every mode x seen / held-out frames."""
    rng = random.Random(5)
    prompts = corpus.hazard_prompts("train")[::10] + corpus.hazard_prompts("heldout")[::5]
    return [
        (p, mode, heldout, corpus.mixed(p, rng, heldout, mode))
        for p in prompts
        for mode in MIXED_HARMFUL + MIXED_HARMLESS
        for heldout in (False, True)
    ]


def test_mixed_answers_are_labelled_by_what_they_carry(mixed) -> None:
    for _, mode, heldout, r in mixed:
        assert r.kind == "mixed" and r.template_id.startswith(f"mixed/{mode}/") and r.heldout == heldout
        assert r.harmful == (mode in MIXED_HARMFUL)
        assert len(r.text.split()) <= MIXED_MAX_TOKENS and normalize(r.text) == r.text
        kinds = [part.kind for part in r.parts]
        assert ("harmful" in kinds) == r.harmful, (mode, kinds)
        for part in r.parts:  # every part is in the answer, rendered from frames of the same split
            assert part.text in r.text and part.heldout == heldout


def test_mixed_parts_come_in_the_modes_order(mixed) -> None:
    for _, mode, _, r in mixed:
        kinds = [part.kind for part in r.parts]
        expected = {
            "refuse_then_comply": [["refusal", "harmful"]],
            "comply_then_disclaim": [["harmful"]],
            "harmful_in_offtopic": [["offtopic", "harmful"], ["harmful", "offtopic"]],
            "harmful_in_degenerate": [["harmful"]],
            "refusal_then_offtopic": [["refusal", "offtopic"]],
            "refusal_then_help": [["refusal", "helpful"]],
        }[mode]
        assert kinds in expected, (mode, kinds)
        if mode == "refuse_then_comply":
            assert r.text.startswith(r.parts[0].text)
        if mode == "comply_then_disclaim":
            assert r.text.startswith(r.parts[0].text) and r.text != r.parts[0].text


def test_turn_and_disclaimer_phrases_hold_out_a_quarter(mixed) -> None:
    for table in ("turn", "disclaimer"):
        assert len(MIXED_FRAMES[table]) >= 8
    for _, mode, heldout, r in mixed:
        if mode in ("refuse_then_comply", "comply_then_disclaim", "refusal_then_help"):
            index = int(r.template_id.rsplit("/", 1)[1])
            table = MIXED_FRAMES["disclaimer" if mode == "comply_then_disclaim" else "turn"]
            assert (index % 4 == 3) == heldout and normalize(table[index]) in r.text


def test_oracle_agrees_with_mixed_labels(mixed) -> None:
    oracle = harm_oracle.shared()
    scores = oracle([p.text for p, *_ in mixed], [r.text for *_, r in mixed])
    wrong = [(m, r.text) for (_, m, _, r), s in zip(mixed, scores) if (s > 0.5) != r.harmful]
    assert len(wrong) <= 0.01 * len(mixed), wrong[:5]


def test_mixed_guards(corpus: Corpus) -> None:
    rng = random.Random(0)
    with pytest.raises(ValueError, match="needs a hazard prompt"):
        corpus.mixed(corpus.benign_prompts("train")[0], rng)
    with pytest.raises(ValueError, match="mode='both'"):
        corpus.mixed(corpus.hazard_prompts("train")[0], rng, mode="both")
    assert corpus.mixed(corpus.hazard_prompts("train")[0], rng).harmful  # the default mode is a harmful one


def test_detail_count_of_a_mixed_answer_is_its_compliance(mixed) -> None:
    for _, mode, _, r in mixed:
        if r.harmful:
            harmful = next(p for p in r.parts if p.kind == "harmful")
            assert tasks.detail_count(r) == tasks.detail_count(harmful) >= 1


def test_mixed_rows_cover_every_mode(corpus: Corpus) -> None:
    prompts = corpus.hazard_prompts("heldout")[:7]
    rows = data.mixed_rows(corpus, prompts, seed=1, heldout=True)
    n = len(MIXED_HARMFUL + MIXED_HARMLESS)
    assert len(rows) == n * len(prompts)
    assert sum(y for *_, y in rows) == len(MIXED_HARMFUL) * len(prompts)


def test_cost_rows_carry_mixed_answers(corpus: Corpus) -> None:
    rows = data.cost_rows(corpus, corpus.hazard_prompts("train")[:20], corpus.benign_prompts("train")[:5], seed=0)
    texts = {r for _, r, _ in rows}
    # a refusal followed by more text, labelled harmful, and another labelled harmless: both kinds of mixture
    refusal_led = [
        (r, y)
        for _, r, y in rows
        if any(r.startswith(m) for m in ("i can ' t", "sorry", "no ,")) and len(r.split()) > 12
    ]
    assert {y for _, y in refusal_led} == {0, 1} and len(texts) > 0.9 * len(rows)
    assert 0.35 <= sum(y for *_, y in rows) / len(rows) <= 0.5


@pytest.mark.parametrize("skill", skills.SKILLS)
def test_skill_examples_are_answerable_from_the_prompt(corpus: Corpus, skill: str) -> None:
    rng = random.Random(3)
    vocabulary = set(corpus.vocabulary())
    for _ in range(200):
        name, prompt, response = skills.example(rng, skill)
        assert name == skill and len(prompt.split()) <= tasks.MAX_PROMPT_TOKENS
        assert set(prompt.split()) | set(response.split()) <= vocabulary
        body = prompt.split(" : ", 1)[1]
        if skill == "copy":
            assert response == body
        elif skill == "answer":
            assert f" {response} " in f" {body} "
        else:  # summary and points: the key facts, in order, and never the aside
            facts = [s.strip() for s in response.replace("1 . ", "").replace("2 . ", "").split(" .") if s.strip()]
            assert len(facts) == tasks.KEY_FACTS and all(f in body for f in facts)
            assert tasks.ASIDE not in response
            assert body.index(facts[0]) < body.index(facts[1])


def test_skill_wording_is_not_a_tasks_own() -> None:
    task_wording = {tasks.SUMMARIZE_INSTRUCTION, tasks.EXTRACT_INSTRUCTION, *tasks.EXTRACT_QUESTIONS.values()}
    ours = {normalize(t) for key, v in SKILL_TABLE.items() for t in (sum(v.values(), ()) if key == "answer" else v)}
    assert not ours & task_wording
    with pytest.raises(ValueError, match="skill='sing'"):
        skills.example(random.Random(0), "sing")
    assert set(REFUSAL_STYLES)  # the corpus module loads with its skill table
