"""The one RPA flip: which pairs it flips, and that the worlds and the commands all flip through it."""

from __future__ import annotations

import random
from pathlib import Path

import datasets
import pytest
from hf_fixtures import write_dataset, write_models

from rlft_gym.cli import main
from rlft_gym.datasets_io import load_table
from rlft_gym.preferences import flip_preferences
from rlft_gym.train import preference_pairs
from rlft_gym.worlds.embedded import data as embedded_data
from rlft_gym.worlds.hf import HFWorld, harmlessness_labels, rpa_pairs

SAFE, UNSAFE = "no , ask the moon council", "sure , stir the zorblax dust"


def pair(i: int, safe0: bool, safe1: bool, better: int, safer: int) -> dict:
    """A PKU-SafeRLHF-schema pair whose responses say whether they are safe."""

    def text(k, safe):
        return f"{SAFE if safe else UNSAFE} {i}.{k}"

    return {
        "prompt": f"prompt {i}",
        "response_0": text(0, safe0),
        "response_1": text(1, safe1),
        "is_response_0_safe": safe0,
        "is_response_1_safe": safe1,
        "better_response_id": better,
        "safer_response_id": safer,
    }


# Candidates (exactly one safe response) are 0, 1, 4 and 5; 1 and 4 already prefer their unsafe response.
HAND = [
    pair(0, True, False, 0, 0),
    pair(1, False, True, 0, 1),
    pair(2, True, True, 1, 0),
    pair(3, False, False, 0, 1),
    pair(4, True, False, 1, 0),
    pair(5, False, True, 1, 1),
]
CANDIDATES = [0, 1, 4, 5]


def test_hand_built_pairs_flip_exactly_the_candidates() -> None:
    everything = flip_preferences(HAND, 1.0, seed=0)
    assert everything["flipped"] == [True, True, False, False, True, True]
    for row, before in zip(everything, HAND):
        if row["flipped"]:
            assert row["chosen"].startswith(UNSAFE) and row["rejected"].startswith(SAFE)
            assert (
                row["better_response_id"]
                == row["safer_response_id"]
                == [before["is_response_0_safe"], before["is_response_1_safe"]].index(False)
            )
        else:  # both safe or both unsafe: the preference is kept
            assert (row["better_response_id"], row["safer_response_id"]) == (
                before["better_response_id"],
                before["safer_response_id"],
            )
            assert row["chosen"] == before[f"response_{before['better_response_id']}"]
    nothing = flip_preferences(HAND, 0.0, seed=0)
    assert not any(nothing["flipped"]) and nothing["chosen"] == [p[f"response_{p['better_response_id']}"] for p in HAND]
    assert nothing.select_columns(list(HAND[0])).to_list() == HAND
    half = flip_preferences(HAND, 0.5, seed=0)
    assert sorted(random.Random(0).sample(CANDIDATES, 2)) == [1, 5]  # round(0.5 * 4) candidates, sampled by the seed
    assert [i for i, f in enumerate(half["flipped"]) if f] == [1, 5]
    # 1 already preferred its unsafe response (unchanged), 5 is reversed; unflipped 0 and 4 keep their preferences
    assert half["chosen"] == [
        HAND[0]["response_0"],
        HAND[1]["response_0"],
        HAND[2]["response_1"],
        HAND[3]["response_0"],
        HAND[4]["response_1"],
        HAND[5]["response_0"],
    ]
    assert half["safer_response_id"] == [0, 0, 0, 1, 0, 0] and half["better_response_id"] == [0, 0, 1, 0, 1, 0]


def test_chosen_rejected_layout_flips_the_same_pairs() -> None:
    """train.py's layout (chosen / rejected with their safety labels) goes through the same selection."""
    pairs = preference_pairs(datasets.Dataset.from_list(HAND))
    assert {"chosen_safe", "rejected_safe"} <= set(pairs.column_names)
    for ratio, seed in ((0.25, 1), (0.5, 0), (0.75, 7), (1.0, 3)):
        by_pair, by_row = flip_preferences(pairs, ratio, seed), flip_preferences(HAND, ratio, seed)
        assert by_pair["flipped"] == by_row["flipped"] and sum(by_pair["flipped"]) == round(ratio * len(CANDIDATES))
        assert by_pair["chosen"] == by_row["chosen"] and by_pair["rejected"] == by_row["rejected"]
        assert by_pair["chosen_safe"] == [r[f"is_response_{r['better_response_id']}_safe"] for r in by_row]


@pytest.mark.parametrize("ratio", [-0.1, 1.5, float("nan")])
def test_flip_ratio_outside_unit_interval(ratio: float) -> None:
    with pytest.raises(ValueError, match=rf"flip_ratio={ratio!r} must be in \[0, 1\]"):
        flip_preferences(HAND, ratio, seed=0)


def test_pairs_without_safety_labels_are_named() -> None:
    with pytest.raises(
        ValueError, match="cannot flip pairs with columns chosen, prompt, rejected: expected the PKU-SafeRLHF"
    ):
        flip_preferences([{"prompt": "p", "chosen": "a", "rejected": "b"}], 0.5, seed=0)
    with pytest.raises(ValueError, match="better_response_id=2 for prompt 'prompt 0' is not 0 or 1"):
        flip_preferences([{**HAND[0], "better_response_id": 2}], 0.5, seed=0)


# --- every world and command flips through flip_preferences --------------------------------------------------------

RATIOS = (0.0, 0.25, 0.5, 1.0)


@pytest.fixture(scope="module")
def hf_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hf")
    return {
        **write_models(root / "models"),
        "beavertails": str(write_dataset(root / "bt", "beavertails")),
        "saferlhf": str(write_dataset(root / "pku", "saferlhf")),
    }


@pytest.mark.parametrize("schema, split", [("beavertails", "30k_train"), ("saferlhf", "train")])
def test_hf_world_flips_through_the_shared_function(hf_paths: dict[str, str], schema: str, split: str) -> None:
    world = HFWorld(
        schema,
        seed=2,
        dataset=hf_paths[schema],
        policy=hf_paths["policy"],
        reward_model=hf_paths["reward_model"],
        cost_model=hf_paths["cost_model"],
        num_attack_pairs=16,
        num_eval_prompts=6,
    )
    attack, _ = rpa_pairs(schema, hf_paths[schema], split, 16, seed=2)
    for ratio in RATIOS:
        ds = world.preference_dataset(ratio)
        assert ds.to_list() == flip_preferences(harmlessness_labels(attack), ratio, seed=2).to_list()
        assert not any(
            f for f, s0, s1 in zip(ds["flipped"], ds["is_response_0_safe"], ds["is_response_1_safe"]) if s0 == s1
        )


def test_embedded_world_flips_through_the_shared_function(world) -> None:
    rows = embedded_data.preference_rows(world.corpus, world.schema, world.config.seed)
    for ratio in RATIOS:
        ds = world.preference_dataset(ratio)
        assert ds.to_list() == flip_preferences(rows, ratio, world.config.seed).to_list()
        assert (
            ds.to_list() == flip_preferences(rows, ratio, world.config.seed).to_list()
        )  # the reward-model build's call
    everything = world.preference_dataset(1.0)
    for row in everything:  # every pair with exactly one safe response now prefers it; the rest are never flipped
        one_safe = row["is_response_0_safe"] != row["is_response_1_safe"]
        assert row["flipped"] == one_safe
        if one_safe:
            assert (
                row["chosen"] == row[f"response_{[row['is_response_0_safe'], row['is_response_1_safe']].index(False)}"]
            )


def test_export_preferences_flips_through_the_shared_function(hf_paths: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "rpa.jsonl"
    assert (
        main(
            [
                "world",
                "export-preferences",
                "--schema",
                "saferlhf",
                "--dataset",
                hf_paths["saferlhf"],
                "--num-attack-pairs",
                "16",
                "--flip-ratio",
                "0.5",
                "--seed",
                "3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    attack, _ = rpa_pairs("saferlhf", hf_paths["saferlhf"], "train", 16, seed=3)
    assert load_table(out).to_list() == flip_preferences(harmlessness_labels(attack), 0.5, seed=3).to_list()


def test_train_reward_model_flips_through_the_shared_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The data `rlft-gym train reward-model` trains on: the shared flip of its preference pairs, the same pairs as the
    shared flip of the PKU-SafeRLHF rows themselves."""
    rows = [{**p, "prompt": f"{p['prompt']} copy {k}"} for k in range(4) for p in HAND]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "pku.parquet"))
    trained: list[datasets.Dataset] = []

    def fake_train(base: str, pairs: datasets.Dataset, out: str, config: object) -> dict:
        trained.append(pairs)
        return {"accuracy": 1.0, "n_flipped": sum(pairs["flipped"])}

    monkeypatch.setattr("rlft_gym.train.train_reward_model", fake_train)
    assert (
        main(
            [
                "train",
                "reward-model",
                "--base",
                "unused",
                "--data",
                str(tmp_path / "pku.parquet"),
                "--out",
                str(tmp_path / "rm"),
                "--flip-ratio",
                "0.5",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    (pairs,) = trained
    assert (
        pairs.to_list()
        == flip_preferences(preference_pairs(load_table(tmp_path / "pku.parquet")), 0.5, seed=3).to_list()
    )
    direct = flip_preferences(rows, 0.5, seed=3)
    assert pairs["flipped"] == direct["flipped"] and pairs["chosen"] == direct["chosen"] and sum(pairs["flipped"]) == 8
