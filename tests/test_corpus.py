"""The embedded world's fictional corpus: data files, splits, format limits, held-out templates, vocabulary,
determinism."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest

from rlft_gym.worlds.embedded import corpus as C
from rlft_gym.worlds.embedded.corpus import CATEGORIES, REFUSAL_STYLES, SPLITS, Corpus, Prompt, normalize

KINDS = ("harmful", "partial", "refusal", "offtopic", "helpful", "degenerate")
# Real-world hazard names (drugs, explosives, pathogens, weapons, chemicals) that the fictional corpus must never use.
REAL_HAZARD_WORDS = {
    "heroin",
    "cocaine",
    "fentanyl",
    "methamphetamine",
    "meth",
    "lsd",
    "mdma",
    "opium",
    "ketamine",
    "tnt",
    "dynamite",
    "semtex",
    "nitroglycerin",
    "gunpowder",
    "anthrax",
    "ricin",
    "sarin",
    "smallpox",
    "ebola",
    "cyanide",
    "arsenic",
    "chlorine",
    "ammonia",
    "bleach",
    "gun",
    "rifle",
    "pistol",
    "bomb",
    "grenade",
}
REFUSAL_MARKERS = ("can ' t", "won ' t", "sorry", "refuse", "will not")
HEDGE_MARKERS = ("should not", "shouldn ' t", "rather not", "risky", "not safe", "careful")


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus(0)


def all_prompts(corpus: Corpus) -> list[Prompt]:
    return [p for s in SPLITS for p in corpus.hazard_prompts(s) + corpus.benign_prompts(s)]


@pytest.fixture(scope="module")
def sample(corpus: Corpus) -> list[tuple[Prompt, C.Response, bool]]:
    """3000 responses of every kind, (prompt, response, heldout asked), over all splits, half held out."""
    rng = random.Random(123)
    hazard = [p for s in SPLITS for p in corpus.hazard_prompts(s)]
    benign = [p for s in SPLITS for p in corpus.benign_prompts(s)]
    out = []
    for i in range(3000):
        heldout = i % 2 == 1
        p, b = rng.choice(hazard), rng.choice(benign)
        out += [
            (p, corpus.harmful(p, rng, heldout), heldout),
            (p, corpus.partial(p, rng, heldout), heldout),
            (p, corpus.refusal(p, rng, heldout=heldout), heldout),
            (b, corpus.refusal(b, rng, heldout=heldout), heldout),
            (p, corpus.offtopic(p, rng, heldout), heldout),
            (b, corpus.helpful(b, rng, heldout), heldout),
        ]
        out.append((b, corpus.degenerate(out[-1 - rng.randrange(6)][1].text, rng), False))
    return out


def test_same_seed_same_corpus() -> None:
    a, b = Corpus(3), Corpus(3)
    assert all_prompts(a) == all_prompts(b)
    p = a.hazard_prompts("train")[0]
    for kind in ("harmful", "partial", "refusal", "offtopic"):
        assert getattr(a, kind)(p, random.Random(9)) == getattr(b, kind)(p, random.Random(9))
    assert a.degenerate(p.text, random.Random(2)) == b.degenerate(p.text, random.Random(2))
    assert a.vocabulary() == b.vocabulary()


def test_other_seed_other_fills_same_categories(corpus: Corpus) -> None:
    other = Corpus(1)
    for split in SPLITS:
        mine, theirs = corpus.hazard_prompts(split), other.hazard_prompts(split)
        assert [p.category for p in mine] == [p.category for p in theirs]
        assert {p.text for p in mine} != {p.text for p in theirs}
    assert [p.text for p in corpus.benign_prompts("train")] != [p.text for p in other.benign_prompts("train")]


@pytest.mark.parametrize(
    "split,lo,hi", [("train", 380, 450), ("eval", 60, 80), ("heldout", 42, 70), ("defence", 100, 120)]
)
def test_hazard_split_sizes(corpus: Corpus, split: str, lo: int, hi: int) -> None:
    prompts = corpus.hazard_prompts(split)
    assert lo <= len(prompts) <= hi
    assert set(Counter(p.category for p in prompts)) == set(CATEGORIES)
    assert all(p.split == split for p in prompts)


@pytest.mark.parametrize(
    "split,lo,hi", [("train", 220, 290), ("eval", 40, 50), ("heldout", 30, 45), ("defence", 100, 120)]
)
def test_benign_split_sizes(corpus: Corpus, split: str, lo: int, hi: int) -> None:
    prompts = corpus.benign_prompts(split)
    assert lo <= len(prompts) <= hi
    assert {p.topic for p in prompts} == set(C.BENIGN_TOPICS)
    assert all(p.category is None and p.split == split for p in prompts)


def test_prompt_strings_unique_across_splits(corpus: Corpus) -> None:
    texts = [p.text for p in all_prompts(corpus)]
    assert len(texts) == len(set(texts))


def test_heldout_prompts_use_unseen_templates(corpus: Corpus) -> None:
    for prompts in (corpus.hazard_prompts, corpus.benign_prompts):
        seen = {p.template_id for s in ("train", "eval", "defence") for p in prompts(s)}
        assert not seen & {p.template_id for p in prompts("heldout")}
        assert {p.template_id for p in prompts("eval")} <= {p.template_id for p in prompts("train")}
        assert {p.template_id for p in prompts("defence")} <= {p.template_id for p in prompts("train")}


def test_enough_templates(corpus: Corpus) -> None:
    ids = Counter(p.category or p.topic for p in {p.template_id: p for p in all_prompts(corpus)}.values())
    assert len(ids) == len(CATEGORIES) + len(C.BENIGN_TOPICS) == 32
    assert all(ids[c] >= 8 for c in CATEGORIES) and all(ids[t] >= 4 for t in C.BENIGN_TOPICS)
    assert all(len(frames) >= 12 for frames in C.SHAPE_FRAMES.values())
    assert all(len(frames) - len(frames) // 4 >= 6 for frames in C.REFUSAL_FRAMES.values())


def test_prompt_format(corpus: Corpus) -> None:
    for p in all_prompts(corpus):
        assert len(p.text.split()) <= C.MAX_TOKENS
        assert normalize(p.text) == p.text


def test_normalize() -> None:
    assert normalize("I CAN'T  store Zorblium-free soap, ok?") == "i can ' t store zorblium - free soap , ok ?"


def test_response_format(sample) -> None:
    for prompt, r, _ in sample:
        assert r.text and len(r.text.split()) <= C.MAX_TOKENS, r.text
        assert normalize(r.text) == r.text, r.text


def test_response_labels(sample) -> None:
    kinds = Counter(r.kind for _, r, _ in sample)
    assert set(kinds) == set(KINDS) and min(kinds.values()) >= 3000
    for prompt, r, _ in sample:
        assert r.harmful == (r.kind in ("harmful", "partial"))
        assert r.template_id.startswith(f"{r.kind}/")
        if r.kind in ("harmful", "partial"):
            assert prompt.category is not None


def test_heldout_templates_are_separate(sample) -> None:
    by_flag: dict[bool, set[str]] = {True: set(), False: set()}
    for _, r, asked in sample:
        assert r.heldout == asked
        by_flag[r.heldout].add(r.template_id)
    assert not by_flag[True] & by_flag[False]
    for kind in ("harmful", "partial", "refusal", "offtopic", "helpful"):
        assert any(t.startswith(kind) for t in by_flag[True]) and any(t.startswith(kind) for t in by_flag[False])


def test_refusal_styles(corpus: Corpus) -> None:
    rng = random.Random(5)
    prompts = corpus.hazard_prompts("train")
    for style in REFUSAL_STYLES:
        ids = {corpus.refusal(rng.choice(prompts), rng, style).template_id for _ in range(300)}
        assert len(ids) >= 6 and all(i.startswith(f"refusal/{style}/") for i in ids)
    with pytest.raises(ValueError):
        corpus.refusal(prompts[0], rng, "rude")


def test_responses_read_the_prompt(corpus: Corpus) -> None:
    """Harmful answers and some refusals reuse the prompt's entities; partials hedge; off-topic never refuses."""
    rng = random.Random(8)
    echoes: Counter = Counter()
    for p in corpus.hazard_prompts("train"):
        entities = [
            v for values in C.HAZARDS[p.category]["pools"].values() for v in values if f" {v} " in f" {p.text} "
        ]
        for kind in ("harmful", "refusal"):
            text = getattr(corpus, kind)(p, rng).text.replace(" your ", " my ")
            echoes[kind] += any(f" {e} " in f" {text} " for e in entities)
        partial, offtopic = corpus.partial(p, rng).text, corpus.offtopic(p, rng).text
        assert any(m in partial for m in REFUSAL_MARKERS + HEDGE_MARKERS), partial
        assert not any(m in offtopic for m in REFUSAL_MARKERS), offtopic
    n = len(corpus.hazard_prompts("train"))
    assert echoes["harmful"] > 0.5 * n and 0.2 * n < echoes["refusal"] < 0.9 * n


def test_benign_answers_share_harmful_shapes(corpus: Corpus) -> None:
    rng = random.Random(4)
    families = Counter(corpus.helpful(p, rng).template_id.split("/")[1] for p in corpus.benign_prompts("train"))
    assert set(families) == set(C.SHAPE_FRAMES)
    assert any("zorblium" in p.text for p in corpus.benign_prompts("train") + corpus.benign_prompts("eval"))


def test_degenerate(corpus: Corpus) -> None:
    rng = random.Random(6)
    text = corpus.helpful(corpus.benign_prompts("train")[0], rng).text
    modes = set()
    for _ in range(200):
        r = corpus.degenerate(text, rng)
        assert r.kind == "degenerate" and not r.harmful and not r.heldout
        assert len(r.text.split()) <= C.MAX_TOKENS and set(r.text.split()) <= set(text.split())
        modes.add(r.template_id)
    assert len(modes) == 4
    assert corpus.degenerate("", rng).text


def test_kind_guards(corpus: Corpus) -> None:
    rng = random.Random(0)
    hazard, benign = corpus.hazard_prompts("eval")[0], corpus.benign_prompts("eval")[0]
    with pytest.raises(ValueError):
        corpus.helpful(hazard, rng)
    for kind in ("harmful", "partial"):
        with pytest.raises(ValueError):
            getattr(corpus, kind)(benign, rng)
    with pytest.raises(ValueError):
        corpus.hazard_prompts("test")


def test_vocabulary(corpus: Corpus, sample) -> None:
    vocab = corpus.vocabulary()
    assert vocab == sorted(set(vocab)) and 800 <= len(vocab) <= 2500
    words = set(vocab)
    used = {w for p in all_prompts(corpus) for w in p.text.split()}
    used |= {w for _, r, _ in sample for w in r.text.split()}
    assert used <= words, used - words
    assert len(used) > 0.9 * len(words)
    assert not words & REAL_HAZARD_WORDS


# ------------------------------------------------------------------------------------------- data files

SLOT = re.compile(r"\{(\w+)\}")
MATERIAL_KEYS = tuple(C._MATERIAL.values())
MATERIAL_SLOTS = {f"{base}{n}" for base in C._MATERIAL for n in ("", "2", "3")}  # {step}, {step2}, {step3}, ...


def table_problems(frames: dict, hazards: dict, benign: dict) -> list[str]:
    """What the renderer would get wrong in these tables: an empty table, an unknown `{slot}` (left unfilled), an
    unknown theme key or sub-theme tag (silently never used), a phrase list too short for a frame's distinct picks."""
    problems = []

    def walk(where: str, value) -> None:
        if not value:
            problems.append(f"{where}: empty")
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, tuple) else ()
        for key, item in items:
            walk(f"{where}/{key}", item)

    def check(where: str, text: str, allowed: set[str]) -> None:
        if unknown := set(SLOT.findall(text)) - allowed:
            problems.append(f"{where}: unknown slot(s) {sorted(unknown)} in {text!r}")

    walk("frames", frames)
    themes = {**hazards, **{f"benign/{topic}": theme for topic, theme in benign.items()}}
    roles = set.intersection(*(set(theme["pools"]) for theme in themes.values()))
    answer_frames = {
        **{f"shape/{k}": v for k, v in frames["shape"].items()},
        "partial": frames["partial"],
        **{f"refusal/{k}": v for k, v in frames["refusal"].items()},
    }
    for name, texts in answer_frames.items():
        for text in texts:
            check(f"frames {name}", text, MATERIAL_SLOTS | roles | {"goal"})
    for text in frames["offtopic"]:  # off-topic asides have no prompt, so no goal
        check("frames offtopic", text, MATERIAL_SLOTS | roles)
    for key, texts in frames["generic_material"].items():
        for text in texts:
            check(f"frames generic_material/{key}", text, roles)
    all_frames = [t for texts in [*answer_frames.values(), frames["offtopic"]] for t in texts]
    wanted = {
        key: max(sum(s.rstrip("23") == base for s in SLOT.findall(t)) for t in all_frames)
        for base, key in C._MATERIAL.items()
    }
    for name, theme in themes.items():
        walk(name, theme)
        hazard = name in hazards
        required = {"pools", "prompts", *(MATERIAL_KEYS if hazard else MATERIAL_KEYS[:4])}  # benign: generic refusals
        if set(theme) - {"pools", "prompts", *MATERIAL_KEYS} or required - set(theme):
            problems.append(f"{name}: keys {sorted(theme)}, needs {sorted(required)}, allows harms and safes")
        for spec in theme.get("prompts", ()):
            if len(spec) != (3 if hazard else 2):
                problems.append(f"{name}: prompt {spec!r} is not ({'sub-theme, ' if hazard else ''}text, goal)")
            for text in spec[-2:]:
                check(f"{name} prompts", text, set(theme["pools"]))
        tags = {spec[0] for spec in theme.get("prompts", ())} if hazard else set()
        for key in MATERIAL_KEYS:
            entries = theme.get(key) or frames["generic_material"].get(key, ())
            for entry in entries:
                tag, text = (None, entry) if isinstance(entry, str) else entry
                check(f"{name} {key}", text, set(theme["pools"]))
                if tag is not None and tag not in tags:
                    problems.append(f"{name} {key}: tag {tag!r} is no prompt's sub-theme ({sorted(tags)})")
            for tag in tags or {None}:
                if len([e for e in entries if isinstance(e, str) or e[0] == tag]) < wanted[key]:
                    problems.append(f"{name} {key}: sub-theme {tag!r} has under {wanted[key]} phrases")
    return problems


def test_data_files_load() -> None:
    names = {"frames.json", "benign.json", "skills.json", *(C.hazard_file(c) for c in CATEGORIES)}
    assert {f.name for f in C.DATA.iterdir()} == names
    for name in names:
        raw = json.loads((C.DATA / name).read_text(encoding="utf-8"))
        assert isinstance(raw.get("_doc"), str) and C.load_table(name)
    assert list(C.HAZARDS) == list(CATEGORIES) and C.BENIGN_TOPICS and C.REFUSAL_STYLES


def test_data_tables_are_sound() -> None:
    assert table_problems(C.load_table("frames.json"), C.HAZARDS, C.BENIGN) == []


def test_table_problems_catches_typos() -> None:
    frames, theme = C.load_table("frames.json"), C.HAZARDS["animal_abuse"]
    typo_frame = {**frames, "partial": (*frames["partial"], "i won't, but {stpe}.")}
    assert any("stpe" in p for p in table_problems(typo_frame, C.HAZARDS, C.BENIGN))
    typo_phrase = {**C.HAZARDS, "animal_abuse": {**theme, "steps": (*theme["steps"], "feed them {thnig}")}}
    assert any("thnig" in p for p in table_problems(frames, typo_phrase, C.BENIGN))
    typo_tag = {**C.HAZARDS, "animal_abuse": {**theme, "tips": (*theme["tips"], ("poisonning", "wait"))}}
    assert any("poisonning" in p for p in table_problems(frames, typo_tag, C.BENIGN))
    empty = {**C.BENIGN, "cooking": {**C.BENIGN["cooking"], "items": ()}}
    assert any("cooking/items: empty" in p for p in table_problems(frames, C.HAZARDS, empty))
