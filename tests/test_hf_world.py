"""world="hf" end to end on tiny random-init checkpoints and fixture datasets written by the tests (no hub)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import assert_resumes
from hf_fixtures import write_dataset, write_models

import rlft_gym
from rlft_gym.agents import GRPO
from rlft_gym.monitor import SafeSetMonitor

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return write_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return {
        "beavertails": str(write_dataset(root / "bt", "beavertails")),
        "saferlhf": str(write_dataset(root / "pku", "saferlhf", fmt="jsonl", newer_columns=True)),
    }


def hf_kwargs(models, data, schema, **extra):
    return {
        "world": "hf",
        "dataset": data[schema],
        "policy": models["policy"],
        "reward_model": models["reward_model"],
        "cost_model": models["cost_model"],
        "num_attack_pairs": 16,
        "num_eval_prompts": 6,
        "max_new_tokens": 8,
        **extra,
    }


@pytest.mark.parametrize("env_id, schema", [("RPA-BeaverTails-v0", "beavertails"), ("RPA-SafeRLHF-v0", "saferlhf")])
def test_hf_world_end_to_end(models, data, env_id, schema, tmp_path):
    env = gym.make(env_id, **hf_kwargs(models, data, schema))
    prompt, info = env.reset(seed=0)
    assert isinstance(prompt, str) and len(info["category"]) == 14
    _, reward, terminated, _, info = env.step("sure , mix zorblium with water .")
    assert np.isfinite(reward) and 0.0 <= info["cost"] <= 1.0 and terminated
    world = env.unwrapped.world
    assert len(world.attack_prompts) == 16 and len(world.eval_prompts) == 6
    assert not set(world.attack_prompts.prompts) & set(world.eval_prompts.prompts)

    venv = rlft_gym.make_vec(env_id, num_envs=8, **hf_kwargs(models, data, schema))
    obs, _ = venv.reset(seed=0)
    _, rewards, _, _, info = venv.step(["i can not help ."] * 8)
    assert rewards.shape == (8,) and info["cost"].shape == (8,)
    monitor = SafeSetMonitor(venv, every=1, results_path=tmp_path / "r.jsonl")
    GRPO(venv, group_size=4).learn(2, callback=monitor)
    assert [h["step"] for h in monitor.history] == [0, 1, 2]
    assert monitor.history[-1]["helpfulness"] is None  # no helpfulness model given
    assert 0.0 <= monitor.summary()["time_in_safe_set"] <= 1.0


def test_rpa_sampling_and_flipping_are_deterministic(models, data):
    def make(seed):
        return gym.make("RPA-SafeRLHF-v0", world_seed=seed, **hf_kwargs(models, data, "saferlhf")).unwrapped.world

    a, b, c = make(0), make(0), make(1)
    assert a.attack_prompts.prompts == b.attack_prompts.prompts != c.attack_prompts.prompts
    assert a.eval_prompts.prompts == b.eval_prompts.prompts
    for ratio in (0.0, 0.25, 1.0):
        ds = a.preference_dataset(ratio)
        candidates = [
            s0 != s1 for s0, s1 in zip(ds["is_response_0_safe"], ds["is_response_1_safe"])
        ]  # exactly one safe
        assert sum(ds["flipped"]) == round(ratio * sum(candidates)) and all(
            c for c, f in zip(candidates, ds["flipped"]) if f
        )
        assert ds["chosen"] == b.preference_dataset(ratio)["chosen"]
    assert {"prompt", "chosen", "rejected", "safer_response_id"} <= set(a.preference_dataset(1.0).column_names)
    assert a.benign_dataset().num_rows > 0 and all(a.refusal_dataset()["is_safe"])


def test_lora_policy_trains_only_adapters(models, data):
    venv = rlft_gym.make_vec(
        "RPA-BeaverTails-v0",
        num_envs=4,
        **hf_kwargs(models, data, "beavertails", lora={"r": 4, "lora_alpha": 8, "target_modules": ["c_attn"]}),
    )
    agent = GRPO(venv, group_size=2)
    trainable = [n for n, p in agent.policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)
    agent.learn(1)


def test_lora_agent_resumes_exactly(models, data, tmp_path):
    """A LoRA checkpoint holds only the adapter; loading it puts it back on the world's policy, trainable."""
    venv = rlft_gym.make_vec(
        "RPA-BeaverTails-v0",
        num_envs=4,
        **hf_kwargs(models, data, "beavertails", lora={"r": 4, "lora_alpha": 8, "target_modules": ["c_attn"]}),
    )
    agent = GRPO(venv, group_size=2, seed=1).learn(1)
    assert_resumes(agent, venv, tmp_path / "ckpt")
    loaded = GRPO.load(tmp_path / "ckpt", venv)
    assert [n for n, p in loaded.policy.named_parameters() if p.requires_grad] == [
        n for n, p in agent.policy.named_parameters() if p.requires_grad
    ]


# --- misconfiguration: one actionable error each ---------------------------------------------------------------


def test_dataset_missing_offline(models, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(
        FileNotFoundError, match="not a local path and not in the HF datasets cache.*Provide a local copy"
    ):
        gym.make(
            "RPA-BeaverTails-v0",
            world="hf",
            dataset="nonexistent-org/no-such-dataset",
            policy=models["policy"],
            reward_model=models["reward_model"],
            cost_model=models["cost_model"],
        )


def test_column_missing(models, tmp_path):
    rows = [{"prompt": "p", "response": "r", "is_safe": True}]
    import datasets

    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "30k_train.parquet"))
    with pytest.raises(ValueError, match="has no column 'category'; the beavertails schema needs"):
        gym.make("RPA-BeaverTails-v0", **{**hf_kwargs(models, {"beavertails": str(tmp_path)}, "beavertails")})


def test_column_mistyped(models, tmp_path):
    import datasets

    rows = [
        {
            "prompt": "p",
            "response_0": "a",
            "response_1": "b",
            "is_response_0_safe": "yes",
            "is_response_1_safe": True,
            "better_response_id": 0,
            "safer_response_id": 0,
        }
    ]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "train.parquet"))
    with pytest.raises(ValueError, match="column 'is_response_0_safe' is string, expected bool"):
        gym.make("RPA-SafeRLHF-v0", **hf_kwargs(models, {"saferlhf": str(tmp_path)}, "saferlhf"))


@pytest.mark.parametrize(
    "env_id, schema, usable",
    [
        (
            "RPA-BeaverTails-v0",
            "beavertails",
            "a usable pair is a prompt with at least one safe and one unsafe response",
        ),
        ("RPA-SafeRLHF-v0", "saferlhf", "a usable pair is any row: every PKU-SafeRLHF row is a pair"),
    ],
)
def test_too_few_usable_pairs_says_what_a_usable_pair_is(models, data, env_id, schema, usable):
    with pytest.raises(ValueError, match=f"has 40 usable pairs, fewer than num_attack_pairs=1000; {usable}"):
        gym.make(env_id, **hf_kwargs(models, data, schema, num_attack_pairs=1000))


def test_model_not_in_cache(models, data, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="nonexistent-org/no-such-model"):
        gym.make("RPA-BeaverTails-v0", **hf_kwargs(models, data, "beavertails", policy="nonexistent-org/no-such-model"))


def test_classifier_with_wrong_number_of_labels(data, tmp_path):
    bad = write_models(tmp_path, cost_labels=3)
    with pytest.raises(ValueError, match="has num_labels=3 .* pass harmful_label"):
        gym.make("RPA-BeaverTails-v0", **hf_kwargs(bad, data, "beavertails"))


def test_missing_required_models(data):
    with pytest.raises(ValueError, match=r"world='hf' needs \['policy', 'reward_model', 'cost_model'\]"):
        gym.make("RPA-BeaverTails-v0", world="hf", dataset=data["beavertails"])


def test_hf_only_kwargs_rejected_for_embedded(world):
    with pytest.raises(ValueError, match=r"\['dataset'\] only apply to world='hf'"):
        gym.make("RPA-BeaverTails-v0", dataset="/somewhere")


def test_cli_pipeline_export_train_attack(models, data, tmp_path):
    """The README's hf recipe on tiny models: export the flipped RPA pairs, train both models, attack with them."""
    from rlft_gym.cli import main
    from rlft_gym.datasets_io import load_table

    pairs = tmp_path / "rpa.parquet"
    assert (
        main(
            [
                "world",
                "export-preferences",
                "--schema",
                "saferlhf",
                "--dataset",
                data["saferlhf"],
                "--num-attack-pairs",
                "16",
                "--flip-ratio",
                "1.0",
                "--out",
                str(pairs),
            ]
        )
        == 0
    )
    exported = load_table(pairs)
    one_safe = [s0 != s1 for s0, s1 in zip(exported["is_response_0_safe"], exported["is_response_1_safe"])]
    assert 0 < sum(one_safe) < 16 and exported["flipped"] == one_safe  # both-safe pairs never flip
    assert (
        main(
            [
                "train",
                "reward-model",
                "--base",
                models["policy"],
                "--data",
                str(pairs),
                "--out",
                str(tmp_path / "rm"),
                "--max-steps",
                "2",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "cost-model",
                "--base",
                models["policy"],
                "--data",
                data["beavertails"],
                "--split",
                "30k_train",
                "--out",
                str(tmp_path / "cost"),
                "--max-steps",
                "2",
            ]
        )
        == 0
    )
    assert (tmp_path / "rm" / "metrics.json").is_file() and (tmp_path / "cost" / "metrics.json").is_file()
    venv = rlft_gym.make_vec(
        "RPA-SafeRLHF-v0",
        num_envs=4,
        **hf_kwargs(models, data, "saferlhf", reward_model=str(tmp_path / "rm"), cost_model=str(tmp_path / "cost")),
    )
    GRPO(venv, group_size=2).learn(1)


def test_pluggable_callables_and_unparsable_judge(models, data):
    """A user callable as the reward and a generative judge as the cost; a judge that cannot be parsed stops the
    step."""
    from rlft_gym.judges import GenerativeJudge, llama_guard_judge, parse_llama_guard

    def length_reward(prompts, completions, **kwargs):  # TRL reward-function shape
        return [float(len(c.split())) for c in completions]

    env = gym.make(
        "RPA-BeaverTails-v0",
        **hf_kwargs(
            models,
            data,
            "beavertails",
            reward_model=length_reward,
            cost_model=lambda prompts, responses: [0.25] * len(prompts),
        ),
    )
    env.reset(seed=0)
    _, reward, _, _, info = env.step("one two three")
    assert reward == 3.0 and info["cost"] == 0.25
    # a random tiny LM as a Llama-Guard-style judge: its output is gibberish, so the step fails loudly (never "safe")
    judge = llama_guard_judge(
        models["policy"], prompt_template="user : {prompt} assistant : {response}", max_new_tokens=3
    )
    assert isinstance(judge, GenerativeJudge) and judge.parser is parse_llama_guard
    env = gym.make("RPA-BeaverTails-v0", **hf_kwargs(models, data, "beavertails", cost_model=judge))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="could not parse"):
        env.step("sure , mix zorblium with water .")
    assert judge.stats.unparsed >= 1 and judge.report()["unparsed"] == judge.stats.unparsed
