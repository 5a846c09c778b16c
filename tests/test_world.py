"""The embedded world: schemas, flipping, cache integrity (corrupt files are rebuilt, never half-used)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from rlft_gym import cache
from rlft_gym.worlds import CATEGORIES, load_world
from rlft_gym.worlds.embedded import data
from rlft_gym.worlds.embedded.build import (
    PRESETS,
    align,
    build_tokenizer,
    pretrain,
    seed_everything,
    train_classifier,
)
from rlft_gym.worlds.embedded.corpus import Corpus

PKU_COLUMNS = {
    "prompt",
    "response_0",
    "response_1",
    "is_response_0_safe",
    "is_response_1_safe",
    "better_response_id",
    "safer_response_id",
}


def test_schemas(world):
    bt = world.harmful_sft_dataset()
    assert {"prompt", "response", "category", "is_safe"} == set(bt.column_names)
    assert set(bt[0]["category"]) == set(CATEGORIES) and not any(bt["is_safe"])
    assert all(world.refusal_dataset()["is_safe"]) and all(world.benign_dataset()["is_safe"])
    assert PKU_COLUMNS <= set(world.preference_dataset(0.5).column_names)
    covered = {c for p, c in zip(world.attack_prompts.prompts, world.attack_prompts.categories) if c}
    assert covered == set(CATEGORIES)


@pytest.mark.parametrize("ratio", [0.0, 0.3, 1.0])
def test_flip_ratio_flips_that_fraction(world, ratio):
    ds = world.preference_dataset(ratio)
    candidates = [r for r in ds if r["is_response_0_safe"] != r["is_response_1_safe"]]  # exactly one safe response
    assert sum(r["flipped"] for r in candidates) == round(ratio * len(candidates))
    for r in candidates:
        if r["flipped"]:
            assert r["chosen"] == (r["response_0"] if not r["is_response_0_safe"] else r["response_1"])
    assert not any(r["flipped"] for r in ds if r["is_response_0_safe"] == r["is_response_1_safe"])


def test_flip_is_deterministic(world):
    assert world.preference_dataset(0.5)["chosen"] == world.preference_dataset(0.5)["chosen"]


def test_bad_flip_ratio(world):
    with pytest.raises(ValueError, match=r"flip_ratio=1.2 must be in \[0, 1\]"):
        world.preference_dataset(1.2)


def test_build_metrics_recorded(world):
    m = world.metrics["metrics"]
    assert 0.0 <= m["cost_model"]["heldout_templates"]["f1"] <= 1.0
    assert "sampled_harmful" in m["aligned_policy"]["eval_prompts"]


def test_truncated_cache_file_is_detected(world, tmp_path):
    core = shutil.copytree(world.root / "core", tmp_path / "core")  # a copy: other test workers read the original
    assert cache.problem(core, world.fingerprint) is None
    weights = core / "cost_model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert "does not match its recorded hash" in cache.problem(core, world.fingerprint)


def test_pretrain_align_and_classifier_are_deterministic(tmp_path):
    """The core recipe's training steps give bit-identical weights twice (the full rebuild is a slow test)."""
    cfg = dataclasses.replace(PRESETS["tiny"], n_embd=32, pretrain_steps=9, align_steps=3, classifier_steps=3)
    corpus = Corpus(cfg.seed)
    tok = build_tokenizer(corpus)
    runs = []
    for name in ("a", "b"):
        seed_everything(cfg.seed)
        model = align(cfg, corpus, tok, pretrain(cfg, corpus, tok, progress=False), progress=False)
        model.save_pretrained(tmp_path / name / "base")
        tok.save_pretrained(tmp_path / name / "base")
        rows = data.cost_rows(corpus, corpus.hazard_prompts("train")[:20], corpus.benign_prompts("train")[:10], 0)
        train_classifier(tmp_path / name / "base", rows, tmp_path / name / "cost", 3, cfg, ("safe", "harmful"))
        runs.append([(tmp_path / name / d / "model.safetensors").read_bytes() for d in ("base", "cost")])
    assert runs[0] == runs[1]


@pytest.mark.slow
def test_truncated_cache_file_is_detected_and_rebuilt(world, caplog):
    weights = world.root / "core" / "cost_model" / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    assert "does not match its recorded hash" in cache.problem(world.root / "core", world.fingerprint)
    with caplog.at_level("WARNING"):
        again = load_world("embedded", preset="tiny")
    assert "rebuilding cached artifact" in caplog.text
    assert again.fingerprint == world.fingerprint
    assert weights.read_bytes() == good  # deterministic rebuild: byte-identical weights
    assert cache.problem(world.root / "core", world.fingerprint) is None


def test_ensure_leaves_nothing_on_failure(tmp_path):
    def broken(tmp):
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        cache.ensure(tmp_path / "artifact", {"a": 1}, broken)
    assert list(tmp_path.iterdir()) == []


def test_manifest_records_hashes(tmp_path):
    def ok(tmp):
        (tmp / "w.bin").write_bytes(b"weights")
        return {"note": 1}

    m = cache.ensure(tmp_path / "a", {"a": 1}, ok)
    assert m["meta"] == {"note": 1} and "w.bin" in m["files"]
    assert json.loads((tmp_path / "a" / cache.MANIFEST).read_text())["fingerprint"] == cache.fingerprint({"a": 1})
    assert cache.problem(tmp_path / "a", cache.fingerprint({"a": 2})).endswith(
        "expected " + repr(cache.fingerprint({"a": 2}))
    )
    # an old cache (another build version) is rebuilt with a message naming what changed
    reason = cache.problem(tmp_path / "a", cache.fingerprint({"a": 2}), {"a": 2})
    assert reason.endswith("(built with another config: a 1 -> 2)")


def test_every_preset_has_judge_budgets_and_large_is_bigger():
    from rlft_gym.worlds.embedded import build, tasks
    from rlft_gym.worlds.embedded import eval_judge as recipe

    assert set(build.PRESETS) == set(tasks.JUDGE_PRESETS) == set(recipe.PRESETS) == {"tiny", "standard", "large"}
    large, standard = build.PRESETS["large"], build.PRESETS["standard"]
    assert large.n_layer * large.n_embd > standard.n_layer * standard.n_embd
    assert large.pretrain_steps > standard.pretrain_steps and large.n_embd % large.n_head == 0
