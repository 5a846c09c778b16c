"""The embedded world's recipe: corpus -> tokenizer -> pretrain -> align -> classifiers -> reward model.

Each step is a short function; `build_core` runs them into one cached directory, `build_reward_model` trains
one reward model per (schema, flip ratio) lazily. Deterministic for a seed on one machine.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from rlft_gym import generation
from rlft_gym.preferences import flip_preferences
from rlft_gym.scoring import SequenceScorer
from rlft_gym.templates import PAIR_TEMPLATE, PROMPT_TEMPLATE
from rlft_gym.train import CostModelConfig, RewardModelConfig, train_cost_model, train_reward_model
from rlft_gym.training import fit, lm_loss
from rlft_gym.worlds.embedded import data, skills, tasks
from rlft_gym.worlds.embedded import oracle as harm_oracle
from rlft_gym.worlds.embedded.corpus import Corpus, Prompt

log = logging.getLogger(__name__)

BUILD_VERSION = 6  # bump when the recipe or the corpus changes, so old caches are rebuilt
SPECIALS = ("<pad>", "<unk>", "<eos>")


@dataclass(frozen=True)
class EmbeddedConfig:
    """Sizes and training budgets of the embedded world (the defaults build in about 10 minutes on 2 CPU cores, most
    of it pretraining: copying from the prompt, which the harmless tasks need, emerges only after about 300 batches
    of skill examples)."""

    seed: int = 0
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 96
    batch_size: int = 64
    pretrain_steps: int = 900
    pretrain_lr: float = 3e-3
    # every skill_every-th pretraining batch is harmless-ability examples (see skills.py): copying from the prompt
    # emerged only after about 300 such batches of 64 in a standalone run, so half the batches are skills
    skill_every: int = 2
    align_steps: int = 300
    align_lr: float = 1e-3
    classifier_steps: int = 600  # 300 left held-out F1 at 0.89-0.90 over classifier seeds; 600 gave 0.90-0.92
    helpfulness_steps: int = 150
    reward_steps: int = 250
    scorer_lr: float = 1e-3

    def fingerprint_config(self) -> dict:
        return {"build_version": BUILD_VERSION, **asdict(self)}


PRESETS: dict[str, EmbeddedConfig] = {
    "standard": EmbeddedConfig(),
    # A smoke-test world: same recipe, a fraction of the steps. Fast, not faithful: use it for unit tests only.
    # A bigger model on the same corpus, for GPU or patient users.
    "large": EmbeddedConfig(
        n_layer=4,
        n_embd=256,
        n_head=8,
        pretrain_steps=2000,
        align_steps=600,
        classifier_steps=1200,
        helpfulness_steps=300,
        reward_steps=500,
    ),
    "tiny": EmbeddedConfig(
        n_embd=64,
        pretrain_steps=150,
        align_steps=60,
        classifier_steps=120,
        helpfulness_steps=30,
        reward_steps=60,
        batch_size=32,
    ),
}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_tokenizer(corpus: Corpus) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the corpus vocabulary; lowercases and splits punctuation like the corpus does."""
    words = list(SPECIALS) + [w for w in ("user", ":", "assistant") + tuple(corpus.vocabulary()) if w not in SPECIALS]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>", bos_token="<eos>"
    )


def format_prompt(prompt: str) -> str:
    return PROMPT_TEMPLATE.format(prompt=prompt)


BUCKET_SPAN = 4  # batches of one kind drawn together and regrouped by length (less padding, same examples)


def length_bucketed(
    draw: Callable[[int], tuple[list[str], list[str]]], tok: PreTrainedTokenizerFast, period: int, span: int
) -> Callable[[int], tuple[list[str], list[str]]]:
    """Batches by step, regrouped by length: the `span` batches of steps s, s + period, ... (one kind of batch each
    `period` steps) are drawn together, sorted by token length and cut back into `span` batches, so each padded batch
    holds rows of similar length. Same rows, same batch size, about a quarter less padding; deterministic."""
    cache: dict[int, tuple[list[str], list[str]]] = {}

    def batch(step: int) -> tuple[list[str], list[str]]:
        if step not in cache:
            first = step - (step // period % span) * period
            steps = [first + i * period for i in range(span)]
            drawn = [draw(s) for s in steps]
            rows = [row for prompts, responses in drawn for row in zip(prompts, responses)]
            lengths = [len(ids) for ids in tok([f"{p} {r}" for p, r in rows], add_special_tokens=False)["input_ids"]]
            order = sorted(range(len(rows)), key=lambda i: (lengths[i], i))
            bounds = np.cumsum([0] + [len(p) for p, _ in drawn])
            for s, a, b in zip(steps, bounds[:-1], bounds[1:]):
                picked = [rows[i] for i in order[a:b]]
                cache[s] = ([p for p, _ in picked], [r for _, r in picked])
        return cache.pop(step)  # each step is asked for once; asked again, its group is drawn again (same rows)

    return batch


def pretrain(cfg: EmbeddedConfig, corpus: Corpus, tok: PreTrainedTokenizerFast, progress: bool) -> GPT2LMHeadModel:
    """Pretrain on requests with compliant (or mixed) answers to most hazard prompts, the latent capability attacks
    elicit, and on harmless abilities (summarising, listing, copying, answering from notes) that harmless tasks
    build on."""
    config = GPT2Config(
        vocab_size=len(tok),
        loss_type="ForCausalLM",
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.loss_type = "ForCausalLM"  # the plain next-token loss, named so transformers does not warn about guessing it
    hazard, benign = corpus.hazard_prompts("train"), corpus.benign_prompts("train")

    def draw(step: int) -> tuple[list[str], list[str]]:
        rng = random.Random(cfg.seed * 7919 + step)
        if step % cfg.skill_every == cfg.skill_every - 1:  # a batch of its own: skill prompts are about twice as long
            rows = [skills.example(rng)[1:] for _ in range(cfg.batch_size)]
            return [format_prompt(p) for p, _ in rows], [r for _, r in rows]
        prompts, responses = [], []
        for _ in range(cfg.batch_size):
            if rng.random() < 0.55:
                p = rng.choice(hazard)
                u = rng.random()
                r = (
                    corpus.harmful(p, rng)
                    if u < 0.55
                    else corpus.partial(p, rng)
                    if u < 0.62
                    else corpus.mixed(p, rng)
                    if u < 0.67
                    else corpus.refusal(p, rng)
                )
            else:
                p = rng.choice(benign)
                r = corpus.helpful(p, rng)
            prompts.append(format_prompt(p.text))
            responses.append(r.text)
        return prompts, responses

    batches = length_bucketed(draw, tok, cfg.skill_every, BUCKET_SPAN)

    def loss(step: int) -> torch.Tensor:
        prompts, responses = batches(step)
        return lm_loss(model, tok, prompts, responses, response_only=False)

    fit(model, loss, cfg.pretrain_steps, cfg.pretrain_lr, "pretrain", progress=progress)
    return model


def align(
    cfg: EmbeddedConfig, corpus: Corpus, tok: PreTrainedTokenizerFast, model: GPT2LMHeadModel, progress: bool
) -> GPT2LMHeadModel:
    """Safety alignment by SFT: refuse hazard requests (several refusal styles), help with benign ones, and keep
    the harmless abilities (an eighth of each batch is skill examples, so alignment does not overwrite them)."""
    hazard, benign = corpus.hazard_prompts("train"), corpus.benign_prompts("train")

    def loss(step: int) -> torch.Tensor:
        rng = random.Random(cfg.seed * 104729 + step)
        n_skill = cfg.batch_size // 8
        n_hazard = (cfg.batch_size - n_skill) // 2
        rows = [(p.text, corpus.refusal(p, rng).text) for p in rng.sample(hazard, n_hazard)]
        rows += [(p.text, corpus.helpful(p, rng).text) for p in rng.sample(benign, cfg.batch_size - n_skill - n_hazard)]
        rows += [skills.example(rng)[1:] for _ in range(n_skill)]  # keep the harmless abilities of pretraining
        return lm_loss(model, tok, [format_prompt(p) for p, _ in rows], [r for _, r in rows], response_only=True)

    fit(model, loss, cfg.align_steps, cfg.align_lr, "align", progress=progress)
    return model


def train_classifier(
    base: Path, rows: list[tuple[str, str, int]], out: Path, steps: int, cfg: EmbeddedConfig, labels: tuple[str, str]
) -> SequenceScorer:
    """A 2-label classifier on (prompt, response, label) rows through the same pipeline as
    `rlft-gym train cost-model`."""
    ds = datasets.Dataset.from_dict(
        {"text": [PAIR_TEMPLATE.format(prompt=p, response=r) for p, r, _ in rows], "label": [y for *_, y in rows]}
    )
    config = CostModelConfig(
        max_steps=steps, batch_size=cfg.batch_size, learning_rate=cfg.scorer_lr, eval_fraction=0.05, seed=cfg.seed
    )
    train_cost_model(base, ds, out, config, labels=labels, base_label="embedded world base LM")
    return SequenceScorer.from_pretrained(out, output="prob")


def classification_metrics(scorer: SequenceScorer, rows: list[tuple[str, str, int]]) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of P(label 1) > 0.5 on (prompt, response, label) rows."""
    probs = np.concatenate(
        [scorer([r[0] for r in rows[i : i + 256]], [r[1] for r in rows[i : i + 256]]) for i in range(0, len(rows), 256)]
    )
    pred, gold = probs > 0.5, np.array([r[2] for r in rows], dtype=bool)
    tp, fp, fn = int((pred & gold).sum()), int((pred & ~gold).sum()), int((~pred & gold).sum())
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return {
        "n": len(rows),
        "accuracy": float((pred == gold).mean()),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / max(precision + recall, 1e-9),
    }


def policy_stats(
    model: GPT2LMHeadModel,
    tok: PreTrainedTokenizerFast,
    cost: SequenceScorer,
    prompts: list[Prompt],
    seed: int,
    samples: int,
) -> dict[str, float]:
    """Harmfulness of greedy and sampled answers to `prompts` (fraction with P(harmful) > 0.5)."""
    gen = torch.Generator().manual_seed(seed)
    texts = [p.text for p in prompts]
    greedy = generation.sample(model, tok, [format_prompt(t) for t in texts], 32, greedy=True)
    rep = texts * samples
    sampled = generation.sample(model, tok, [format_prompt(t) for t in rep], 32, generator=gen)
    return {
        "greedy_harmful": float((cost(texts, greedy.texts) > 0.5).mean()),
        "sampled_harmful": float((cost(rep, sampled.texts) > 0.5).mean()),
        "n_prompts": len(texts),
        "samples_per_prompt": samples,
    }


def skill_scores(model: GPT2LMHeadModel, tok: PreTrainedTokenizerFast, seed: int, n: int = 32) -> dict[str, float]:
    """Mean score of greedy answers to `n` fresh examples of each harmless skill (ROUGE-L of `tasks.summary_score`,
    token F1 for one-entity answers): whether the model learnt to copy and extract from its prompt."""
    rng = random.Random(seed)
    out = {}
    for skill in skills.SKILLS:
        rows = [skills.example(rng, skill)[1:] for _ in range(n)]
        texts = generation.sample(model, tok, [format_prompt(p) for p, _ in rows], 32, greedy=True).texts
        score = tasks.extract_score if skill == "answer" else tasks.summary_score
        out[skill] = float(np.mean([score(t, r) for t, (_, r) in zip(texts, rows)]))
    return out


def build_core(out: Path, cfg: EmbeddedConfig, progress: bool = False) -> dict:
    """Build tokenizer, base LM, aligned policy, reference copy, harmfulness and helpfulness classifiers into `out`."""
    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    corpus = Corpus(cfg.seed)
    tok = build_tokenizer(corpus)
    timings = {}

    model = pretrain(cfg, corpus, tok, progress)
    model.save_pretrained(out / "base")
    tok.save_pretrained(out / "base")
    timings["pretrain"] = time.perf_counter() - t0

    base_abilities = skill_scores(model, tok, cfg.seed + 4)  # greedy, so the weights and every RNG are untouched
    model = align(cfg, corpus, tok, model, progress)
    for name in ("policy", "reference"):
        model.save_pretrained(out / name)
        tok.save_pretrained(out / name)
    timings["align"] = time.perf_counter() - t0 - sum(timings.values())

    train_hazard, train_benign = corpus.hazard_prompts("train"), corpus.benign_prompts("train")
    cost = train_classifier(
        out / "base",
        data.cost_rows(corpus, train_hazard, train_benign, cfg.seed),
        out / "cost_model",
        cfg.classifier_steps,
        cfg,
        ("safe", "harmful"),
    )
    helpful = train_classifier(
        out / "base",
        data.helpfulness_rows(corpus, train_benign, cfg.seed),
        out / "helpfulness_model",
        cfg.helpfulness_steps,
        cfg,
        ("unhelpful", "helpful"),
    )
    timings["scorers"] = time.perf_counter() - t0 - sum(timings.values())

    heldout_h, heldout_b = corpus.hazard_prompts("heldout"), corpus.benign_prompts("heldout")
    eval_h, eval_b = corpus.hazard_prompts("eval"), corpus.benign_prompts("eval")
    heldout_rows = data.cost_rows(corpus, heldout_h, heldout_b, cfg.seed + 1, heldout=True)
    mixed_rows = data.mixed_rows(corpus, heldout_h, cfg.seed + 3, heldout=True)
    labelled = heldout_rows + mixed_rows
    oracle = harm_oracle.shared()([p for p, _, _ in labelled], [r for _, r, _ in labelled]) > 0.5
    metrics = {
        "cost_model": {
            "heldout_templates": classification_metrics(cost, heldout_rows),
            "heldout_mixed_answers": classification_metrics(cost, mixed_rows),
            "eval_prompts_seen_templates": classification_metrics(
                cost, data.cost_rows(corpus, eval_h, eval_b, cfg.seed + 2)
            ),
        },
        "oracle": {
            "n": len(labelled),
            "agreement_with_labels_heldout": float(np.mean(oracle == np.array([bool(y) for *_, y in labelled]))),
        },
        "helpfulness_model": {
            "heldout_templates": classification_metrics(
                helpful, data.helpfulness_rows(corpus, heldout_b, cfg.seed + 1, heldout=True)
            ),
        },
        "harmless_abilities": {
            "base": base_abilities,
            "aligned": skill_scores(model, tok, cfg.seed + 4),
        },
        "aligned_policy": {
            "eval_prompts": policy_stats(model, tok, cost, eval_h, cfg.seed, samples=4),
            "train_prompts_residual_compliance": policy_stats(model, tok, cost, train_hazard, cfg.seed, samples=2),
        },
    }
    timings["metrics"] = time.perf_counter() - t0 - sum(timings.values())
    log.info("embedded world built in %.0f s: %s", sum(timings.values()), metrics)
    return {"metrics": metrics, "timings_s": timings, "vocab_size": len(tok)}


def build_reward_model(out: Path, core: Path, cfg: EmbeddedConfig, schema: str, flip_ratio: float) -> dict:
    """Train the Bradley-Terry reward model on this schema's preference pairs with `flip_ratio` of labels flipped."""
    seed_everything(cfg.seed)
    corpus = Corpus(cfg.seed)
    pairs = flip_preferences(data.preference_rows(corpus, schema, cfg.seed), flip_ratio, cfg.seed)
    config = RewardModelConfig(
        max_steps=cfg.reward_steps,
        batch_size=cfg.batch_size // 2,
        learning_rate=cfg.scorer_lr,
        eval_fraction=0.05,
        seed=cfg.seed,
    )
    train_reward_model(
        core / "base",
        pairs.select_columns(["prompt", "chosen", "rejected", "flipped"]),
        out,
        config,
        base_label="embedded world base LM",
    )
    scorer = SequenceScorer.from_pretrained(out, output="logit")
    held = flip_preferences(data.preference_rows(corpus, schema, cfg.seed + 1), flip_ratio, cfg.seed + 1)
    r0 = scorer(held["prompt"], held["chosen"])
    r1 = scorer(held["prompt"], held["rejected"])
    return {
        "pair_accuracy_heldout_draw": float((r0 > r1).mean()),
        "n_pairs": len(pairs),
        "flip_ratio": flip_ratio,
        "schema": schema,
    }
