"""A synthetic, entirely fictional request/answer corpus mirroring the 14 BeaverTails harm categories.

Every hazard is invented (substances such as zorblium or velmoxine, devices, places, groups, people, software,
organisations); harmful answers have the shape of real harmful help but no real-world content. All text is
lowercase with punctuation split into separate tokens, so a whitespace word-level tokenizer round-trips it, and
every prompt and response is at most MAX_TOKENS tokens long.

Templates use `{role}` slots. Entity roles (thing, target, place, tool, amount) are filled from a theme's pools;
`{goal}` is the prompt's request restated as a verb phrase; material slots (step, item, tip, fact, harm, safe,
with 2 and 3 suffixes for further distinct picks) are filled from the theme's phrase lists.

Mixed answers join two or three such parts: harmful material inside harmless framing (refuse-then-comply,
comply-then-disclaim, harmful details amid off-topic or degenerate text), labelled harmful, and harmless mixtures
(a refusal then an off-topic remark, a refusal then help on another topic) so that mixing alone is no cue.

The tables live in corpus_data/*.json (frames.json, one hazard_*.json per category, benign.json, skills.json). The world
fingerprint hashes the build config, not these files: bump build.BUILD_VERSION when an edit changes what renders.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from rlft_gym.worlds.base import CATEGORIES

# "defence" prompts (seen templates, drawn last so the other splits do not depend on it) are only for offline defences
# training data: disjoint from the attack ("train"), evaluation ("eval") and held-out grading ("heldout") prompts
SPLITS: tuple[str, ...] = ("train", "eval", "heldout", "defence")
MAX_TOKENS = 24
MIXED_MAX_TOKENS = 32  # a mixed answer joins parts of up to MAX_TOKENS; it still fits the default generation limit
MAX_RENDER_TRIES = 20

# Prompts per category (hazard) or per topic (benign) in each split; benign eval alternates 3, 2, 3, ...
HAZARD_SPLIT_SIZES = {"train": 30, "eval": 5, "heldout": 4, "defence": 8}
BENIGN_SPLIT_SIZES = {"train": 14, "eval": (3, 2), "heldout": 2, "defence": 6}
# The last prompt templates of every hazard category / benign topic are used only in the "heldout" split.
HAZARD_HELDOUT_TEMPLATES = 4
BENIGN_HELDOUT_TEMPLATES = 2

DATA = resources.files("rlft_gym.worlds.embedded") / "corpus_data"


def _frozen(value: Any) -> Any:
    """A JSON value with every list as a tuple and every "_doc" key dropped."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return {k: _frozen(v) for k, v in value.items() if k != "_doc"}
    return value


def load_table(name: str) -> dict:
    """One file of corpus_data, lists as tuples, without its "_doc"."""
    return _frozen(json.loads((DATA / name).read_text(encoding="utf-8")))


def hazard_file(category: str) -> str:
    """The corpus_data file of a hazard category: hazard_<category>.json, commas as hyphens."""
    return f"hazard_{category.replace(',', '-')}.json"


# Response frames (index i is held out when i % 4 == 3): answer shapes shared by harmful and helpful answers (so
# shape alone never gives the label away), hedges that leak a harmful detail, refusals per style, off-topic asides;
# and harm reasons / safe alternatives for refusing a benign request (over-refusal examples).
_FRAMES = load_table("frames.json")
SHAPE_FRAMES: dict[str, tuple[str, ...]] = _FRAMES["shape"]
PARTIAL_FRAMES: tuple[str, ...] = _FRAMES["partial"]
REFUSAL_FRAMES: dict[str, tuple[str, ...]] = _FRAMES["refusal"]
OFFTOPIC_FRAMES: tuple[str, ...] = _FRAMES["offtopic"]
GENERIC_MATERIAL: dict[str, tuple[str, ...]] = _FRAMES["generic_material"]
REFUSAL_STYLES: tuple[str, ...] = tuple(REFUSAL_FRAMES)
# mixed answers: "turn" phrases between a refusal and what follows it, "disclaimer" remarks after harmful help
MIXED_FRAMES: dict[str, tuple[str, ...]] = _FRAMES["mixed"]
MIXED_HARMFUL: tuple[str, ...] = (
    "refuse_then_comply",
    "comply_then_disclaim",
    "harmful_in_offtopic",
    "harmful_in_degenerate",
)
MIXED_HARMLESS: tuple[str, ...] = ("refusal_then_offtopic", "refusal_then_help")
# instructions of the harmless abilities the base LM is pretrained on (see skills.py)
SKILL_TABLE: dict = load_table("skills.json")
# Themes: entity pools, prompt templates ((sub-theme,) text, goal) whose last *_HELDOUT_TEMPLATES are held out, and
# material phrase lists (steps, items, tips, facts; hazards also harms, safes). A hazard material entry is a phrase
# for every sub-theme or a (sub-theme, phrase) pair.
HAZARDS: dict[str, dict] = {category: load_table(hazard_file(category)) for category in CATEGORIES}
BENIGN: dict[str, dict] = load_table("benign.json")
BENIGN_TOPICS: tuple[str, ...] = tuple(BENIGN)

_SLOT = re.compile(r"\{(\w+)\}")
_MATERIAL = {"step": "steps", "item": "items", "tip": "tips", "fact": "facts", "harm": "harms", "safe": "safes"}
# A response mentions these roles only where the prompt names them (if the theme allows), so it stays on the
# prompt's substance and victim; other roles (place, tool, amount) may bring in new entities.
CORE_ROLES = frozenset({"thing", "target"})
ECHO_RATE = 0.75  # how often a response's first phrase of each kind echoes one of the prompt's entities
_NOT_WORD = re.compile(r"([^a-z0-9\s])")
_MY = re.compile(r"\bmy\b")  # the user's "my nephew" is the assistant's "your nephew"


def normalize(text: str) -> str:
    """Lowercase, split every punctuation character into its own token and collapse whitespace."""
    return " ".join(_NOT_WORD.sub(r" \1 ", text.lower()).split())


def _is_heldout(index: int) -> bool:
    return index % 4 == 3


@dataclass(frozen=True)
class Prompt:
    """A user request: hazard (category set) or benign (category None)."""

    text: str
    category: str | None
    topic: str
    template_id: str
    split: str


@dataclass(frozen=True)
class Response:
    """An assistant answer, labelled by kind and harmfulness."""

    text: str
    kind: str
    harmful: bool
    template_id: str
    heldout: bool
    parts: tuple[Response, ...] = ()  # a mixed answer's rendered parts


def _fill(template: str, values: dict[str, str]) -> str:
    """Replace every `{role}` whose role is in `values`; leave the others."""
    return _SLOT.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _named(text: str, known: frozenset[str]) -> bool:
    """Whether every core role that `text` mentions is among the `known` roles."""
    return set(_SLOT.findall(text)) & CORE_ROLES <= known


def _phrases(theme: dict, key: str, topic: str | None) -> list[str]:
    """A theme's `key` phrases for a sub-theme: the untagged ones and those tagged `(topic, phrase)`."""
    entries = theme.get(key) or GENERIC_MATERIAL[key]
    return [e if isinstance(e, str) else e[1] for e in entries if isinstance(e, str) or e[0] == topic]


def _pick(phrases: list[str], n: int, known: frozenset[str], rng: random.Random) -> list[str]:
    """n distinct phrases, avoiding core roles the prompt does not name; usually led by one echoing a prompt entity."""
    named = [p for p in phrases if _named(p, known)]
    pool = named if len(named) >= n else phrases
    echoing = [p for p in pool if set(_SLOT.findall(p)) & known]
    first = [rng.choice(echoing)] if echoing and rng.random() < ECHO_RATE else []
    return first + rng.sample([p for p in pool if p not in first], n - len(first))


def _random_entities(theme: dict, rng: random.Random) -> dict[str, str]:
    return {role: rng.choice(pool) for role, pool in theme["pools"].items()}


@dataclass(frozen=True)
class _Source:
    """What one response draws on: a theme and sub-theme, the prompt's entities (None: random) and its named roles."""

    theme: dict
    topic: str | None
    entities: dict[str, str] | None
    known: frozenset[str]

    def render(self, frame: str, rng: random.Random) -> str:
        """Fill the frame's material slots with distinct phrases (see _pick), then its entity slots."""
        names = _SLOT.findall(frame)
        picks: dict[str, str] = {}
        for base, key in _MATERIAL.items():
            wanted = [n for n in names if n.rstrip("23") == base]
            if wanted:
                picks.update(zip(wanted, _pick(_phrases(self.theme, key, self.topic), len(wanted), self.known, rng)))
        entities = self.entities or _random_entities(self.theme, rng)
        return normalize(_fill(_fill(frame, picks), {role: _MY.sub("your", v) for role, v in entities.items()}))


def _interleave(lists: list[list]) -> list:
    """Round-robin over lists: first items of each, then second items, and so on."""
    return [x for row in itertools.zip_longest(*lists) for x in row if x is not None]


def _template_texts(template: str, goal: str, pools: dict, rng: random.Random) -> list[tuple[str, dict[str, str]]]:
    """Every fill of a prompt template, shuffled: (normalized text, entities including the filled goal)."""
    roles = sorted(set(_SLOT.findall(template)))
    out = []
    for combo in itertools.product(*(pools[r] for r in roles)):
        entities = dict(zip(roles, combo))
        out.append((normalize(_fill(template, entities)), {**entities, "goal": normalize(_fill(goal, entities))}))
    rng.shuffle(out)
    return out


class Corpus:
    """Deterministic fictional corpus: prompts in train/eval/heldout splits and responses of every kind."""

    def __init__(self, seed: int = 0) -> None:
        """Draw every prompt split from `seed`; responses are drawn later from caller-supplied rngs."""
        self.seed = seed
        self._entities: dict[str, dict[str, str]] = {}
        self._seen: set[str] = set()
        self._hazard = {s: [] for s in SPLITS}
        self._benign = {s: [] for s in SPLITS}
        for category in CATEGORIES:
            theme = HAZARDS[category]
            self._add_prompts(self._hazard, category, None, theme, HAZARD_HELDOUT_TEMPLATES, HAZARD_SPLIT_SIZES)
        for i, topic in enumerate(BENIGN_TOPICS):
            sizes = {**BENIGN_SPLIT_SIZES, "eval": BENIGN_SPLIT_SIZES["eval"][i % 2]}
            self._add_prompts(self._benign, None, topic, BENIGN[topic], BENIGN_HELDOUT_TEMPLATES, sizes)
        self._vocabulary = sorted(_all_tokens())

    def _add_prompts(
        self, splits: dict, category: str | None, topic: str | None, theme: dict, n_heldout: int, sizes: dict
    ) -> None:
        """Draw one theme's prompts: train then eval from its seen templates, heldout from its held-out ones, then
        defence from the seen templates again."""
        rng = random.Random(f"{self.seed}/{category or topic}")
        specs = [(topic, *spec) if category is None else spec for spec in theme["prompts"]]
        prefix = category if category is not None else f"benign/{topic}"
        pools = [
            [(text, ents, f"{prefix}/p{i}", sub) for text, ents in _template_texts(tpl, goal, theme["pools"], rng)]
            for i, (sub, tpl, goal) in enumerate(specs)
        ]
        seen_order = iter(_interleave(pools[:-n_heldout]))
        heldout_order = iter(_interleave(pools[-n_heldout:]))
        draws = (("train", seen_order), ("eval", seen_order), ("heldout", heldout_order), ("defence", seen_order))
        for split, order in draws:
            for _ in range(sizes[split]):
                text, ents, template_id, sub = next(t for t in order if t[0] not in self._seen)
                self._seen.add(text)
                self._entities[text] = ents
                splits[split].append(Prompt(text, category, sub, template_id, split))

    @staticmethod
    def _check_split(split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"split={split!r}; expected one of {SPLITS}")

    def hazard_prompts(self, split: str) -> list[Prompt]:
        """Hazard prompts of a split, grouped by category in CATEGORIES order."""
        self._check_split(split)
        return list(self._hazard[split])

    def benign_prompts(self, split: str) -> list[Prompt]:
        """Benign prompts of a split, grouped by topic in BENIGN_TOPICS order."""
        self._check_split(split)
        return list(self._benign[split])

    @staticmethod
    def _theme(prompt: Prompt) -> dict:
        return HAZARDS[prompt.category] if prompt.category is not None else BENIGN[prompt.topic]

    @staticmethod
    def _hazard_theme(prompt: Prompt, kind: str) -> dict:
        if prompt.category is None:
            raise ValueError(f"{kind}() needs a hazard prompt, got benign prompt {prompt.text!r}")
        return HAZARDS[prompt.category]

    def _source(self, prompt: Prompt, theme: dict, rng: random.Random) -> _Source:
        """The prompt's own entities, completed with random ones for roles it does not name."""
        own = self._entities.get(prompt.text, {"goal": "do that"})
        return _Source(theme, prompt.topic, {**_random_entities(theme, rng), **own}, frozenset(own) - {"goal"})

    @staticmethod
    def _respond(
        kind: str,
        family: str,
        frames: tuple[str, ...],
        source: _Source,
        rng: random.Random,
        heldout: bool,
        harmful: bool,
    ) -> Response:
        """Render a random frame of `frames` (held-out ones iff `heldout`) within MAX_TOKENS tokens.

        Frames are tried in random order, those naming only the prompt's core entities first, each with up to
        MAX_RENDER_TRIES draws of material, so a frame that cannot fit this prompt's entities gives way to another.
        """
        indices = [i for i in range(len(frames)) if _is_heldout(i) == heldout]
        rng.shuffle(indices)
        indices.sort(key=lambda i: not _named(frames[i], source.known))
        for index in indices:
            for _ in range(MAX_RENDER_TRIES):
                text = source.render(frames[index], rng)
                if len(text.split()) <= MAX_TOKENS:
                    return Response(text, kind, harmful, f"{kind}/{family}/{index}", heldout)
        raise RuntimeError(f"no {kind}/{family} frame fits in {MAX_TOKENS} tokens")

    def harmful(self, prompt: Prompt, rng: random.Random, heldout: bool = False) -> Response:
        """On-topic compliance with a hazard prompt, reusing its entities, in a random shape."""
        theme = self._hazard_theme(prompt, "harmful")
        family = rng.choice(tuple(SHAPE_FRAMES))
        source = self._source(prompt, theme, rng)
        return self._respond("harmful", family, SHAPE_FRAMES[family], source, rng, heldout, True)

    def partial(self, prompt: Prompt, rng: random.Random, heldout: bool = False) -> Response:
        """A refusal or hedge that still leaks a harmful detail."""
        theme = self._hazard_theme(prompt, "partial")
        return self._respond("partial", "leak", PARTIAL_FRAMES, self._source(prompt, theme, rng), rng, heldout, True)

    def refusal(self, prompt: Prompt, rng: random.Random, style: str | None = None, heldout: bool = False) -> Response:
        """A refusal in `style` (random if None); works for benign prompts too (over-refusal)."""
        if style is None:
            style = rng.choice(REFUSAL_STYLES)
        if style not in REFUSAL_FRAMES:
            raise ValueError(f"style={style!r}; expected one of {REFUSAL_STYLES}")
        source = self._source(prompt, self._theme(prompt), rng)
        return self._respond("refusal", style, REFUSAL_FRAMES[style], source, rng, heldout, False)

    def offtopic(self, prompt: Prompt, rng: random.Random, heldout: bool = False) -> Response:
        """A fluent, harmless remark about another benign topic: neither a refusal nor an answer."""
        topic = rng.choice([t for t in BENIGN_TOPICS if t != prompt.topic])
        source = _Source(BENIGN[topic], topic, None, CORE_ROLES)
        return self._respond("offtopic", "aside", OFFTOPIC_FRAMES, source, rng, heldout, False)

    def helpful(self, prompt: Prompt, rng: random.Random, heldout: bool = False) -> Response:
        """An on-topic helpful answer to a benign prompt; ValueError for hazard prompts."""
        if prompt.category is not None:
            raise ValueError(f"helpful() needs a benign prompt, got {prompt.category!r} prompt {prompt.text!r}")
        family = rng.choice(tuple(SHAPE_FRAMES))
        source = self._source(prompt, BENIGN[prompt.topic], rng)
        return self._respond("helpful", family, SHAPE_FRAMES[family], source, rng, heldout, False)

    def mixed(self, prompt: Prompt, rng: random.Random, heldout: bool = False, mode: str | None = None) -> Response:
        """A mixed answer to a hazard prompt in `mode` (random harmful one if None): one of MIXED_HARMFUL (harmful
        material framed as harmless, labelled harmful) or MIXED_HARMLESS. Its "turn" and "disclaimer" phrases, and
        every part, come from held-out frames iff `heldout`; it is at most MIXED_MAX_TOKENS tokens."""
        self._hazard_theme(prompt, "mixed")
        if mode is None:
            mode = rng.choice(MIXED_HARMFUL)
        if mode not in MIXED_HARMFUL + MIXED_HARMLESS:
            raise ValueError(f"mode={mode!r}; expected one of {MIXED_HARMFUL + MIXED_HARMLESS}")
        for attempt in range(3 * MAX_RENDER_TRIES):  # after MAX_RENDER_TRIES draws, with the shortest refusal style
            parts, index = self._mixed_parts(prompt, rng, heldout, mode, attempt >= MAX_RENDER_TRIES)
            text = " ".join(p if isinstance(p, str) else p.text for p in parts)
            if len(text.split()) <= MIXED_MAX_TOKENS:
                rendered = tuple(p for p in parts if isinstance(p, Response))
                return Response(text, "mixed", mode in MIXED_HARMFUL, f"mixed/{mode}/{index}", heldout, rendered)
        raise RuntimeError(f"no mixed/{mode} answer fits in {MIXED_MAX_TOKENS} tokens")

    def _mixed_parts(
        self, prompt: Prompt, rng: random.Random, heldout: bool, mode: str, concise: bool
    ) -> tuple[list[str | Response], int]:
        """The parts of a mixed answer in order (phrases as str) and the index of its turn / disclaimer phrase;
        `concise` refusals where a part is one."""
        table = "disclaimer" if mode == "comply_then_disclaim" else "turn"
        index = rng.choice([i for i in range(len(MIXED_FRAMES[table])) if _is_heldout(i) == heldout])
        phrase = normalize(MIXED_FRAMES[table][index])
        style = "concise" if concise else None
        if mode == "refuse_then_comply":
            return [self.refusal(prompt, rng, style, heldout), phrase, self.harmful(prompt, rng, heldout)], index
        if mode == "comply_then_disclaim":
            return [self.harmful(prompt, rng, heldout), phrase], index
        if mode == "harmful_in_offtopic":
            parts: list[str | Response] = [self.offtopic(prompt, rng, heldout), self.harmful(prompt, rng, heldout)]
            return (parts if rng.random() < 0.5 else parts[::-1]), 0
        if mode == "harmful_in_degenerate":
            filler = self.degenerate(self.offtopic(prompt, rng, heldout).text, rng).text.split()[: rng.randint(3, 8)]
            return [" ".join(filler), self.harmful(prompt, rng, heldout), " ".join(filler[-3:])], 0
        if mode == "refusal_then_offtopic":
            return [self.refusal(prompt, rng, style, heldout), self.offtopic(prompt, rng, heldout)], 0
        help_elsewhere = self.helpful(rng.choice(self.benign_prompts("train")), rng, heldout)
        return [self.refusal(prompt, rng, style, heldout), phrase, help_elsewhere], index

    def degenerate(self, text: str, rng: random.Random) -> Response:
        """A corrupted version of `text`: repetition, a short loop, jumbled words, or truncation then repetition."""
        words = normalize(text).split()[:MAX_TOKENS] or ["."]
        mode = rng.choice(tuple(_DEGENERATORS))
        return Response(" ".join(_DEGENERATORS[mode](words, rng)), "degenerate", False, f"degenerate/{mode}", False)

    def vocabulary(self) -> list[str]:
        """Every token any prompt or response can contain, sorted."""
        return list(self._vocabulary)


def _repeat(words: list[str], rng: random.Random) -> list[str]:
    """A few leading words, then one word over and over."""
    content = [w for w in words if w.isalpha()] or words
    head = words[: rng.randint(0, 4)]
    return head + [rng.choice(content)] * rng.randint(6, MAX_TOKENS - len(head))


def _loop(words: list[str], rng: random.Random) -> list[str]:
    """A two or three word fragment repeated: "i . i . i ."."""
    size = min(rng.choice((2, 3)), len(words))
    start = rng.randrange(len(words) - size + 1)
    return (words[start : start + size] * MAX_TOKENS)[: rng.randint(3 * size, MAX_TOKENS)]


def _jumble(words: list[str], rng: random.Random) -> list[str]:
    """The same words in a random order."""
    return rng.sample(words, len(words))


def _stutter(words: list[str], rng: random.Random) -> list[str]:
    """The text cut short, its last word then repeated."""
    head = words[: rng.randint(1, max(1, min(len(words), 12)))]
    return head + [head[-1]] * rng.randint(4, MAX_TOKENS - len(head))


_DEGENERATORS = {"repeat": _repeat, "loop": _loop, "jumble": _jumble, "stutter": _stutter}


def _all_text():
    """Every template, slot value and phrase the corpus renders from."""
    yield from itertools.chain(
        *SHAPE_FRAMES.values(), PARTIAL_FRAMES, *REFUSAL_FRAMES.values(), OFFTOPIC_FRAMES, *GENERIC_MATERIAL.values()
    )
    yield from itertools.chain(*MIXED_FRAMES.values())
    yield from (t for key, v in SKILL_TABLE.items() for t in (itertools.chain(*v.values()) if key == "answer" else v))
    for theme in (*HAZARDS.values(), *BENIGN.values()):
        yield from itertools.chain(*theme["pools"].values())
        yield from (e if isinstance(e, str) else e[1] for key in _MATERIAL.values() for e in theme.get(key, ()))
        for spec in theme["prompts"]:
            yield from spec[-2:]
    yield "do that"


def _all_tokens() -> set[str]:
    return {tok for text in _all_text() for tok in normalize(_SLOT.sub(" ", text)).split()}
