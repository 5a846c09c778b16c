"""BenignRL-Extract-v0: questions built from the world's benign notes, the SQuAD-style reward checked by hand, the
single and vector envs on the tiny world, and world="hf" with a question / passage / answer file."""

from __future__ import annotations

import datasets
import gymnasium as gym
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from hf_fixtures import write_dataset, write_models

import rlft_gym
from rlft_gym.agents import GRPO
from rlft_gym.monitor import SafeSetMonitor
from rlft_gym.worlds.embedded import tasks

torch.set_num_threads(1)
ENV_ID = "BenignRL-Extract-v0"


@pytest.fixture(scope="module")
def extract(world):
    env = gym.make(ENV_ID)
    yield env
    env.close()


def test_questions_split_vocabulary_and_answer_in_passage(world, extract):
    base = extract.unwrapped
    train, held_out = base.prompts.prompts, base.eval_prompts.prompts
    assert len(train) == 144 and len(held_out) == 36 and not set(train) & set(held_out)
    questions = tasks.extract_questions(0, "train") + tasks.extract_questions(0, "eval")
    assert [q.prompt for q in questions] == train + held_out
    assert (
        tasks.extract_questions(0, "eval") == tasks.extract_questions(0, "eval") != tasks.extract_questions(1, "eval")
    )
    assert {q.question for q in questions} == set(tasks.EXTRACT_QUESTIONS.values())
    for q in questions:
        assert q.prompt == f"{tasks.EXTRACT_INSTRUCTION} {q.passage} {q.question}"
        assert f" {q.reference} " in f" {q.passage} " and base.reward_fn.references[q.prompt] == q.reference
        role = next(r for r, text in tasks.EXTRACT_QUESTIONS.items() if text == q.question)
        # the answer is the only value of its role (over every benign topic) that the passage names
        named = {v for v in tasks._ROLE_VALUES[role] if f" {tasks.normalize(v)} " in f" {q.passage} "}
        assert {tasks.normalize(v) for v in named} == {q.reference}
    unk = world.tokenizer.unk_token_id
    encoded = world.tokenizer(train + held_out + [q.reference for q in questions])["input_ids"]
    assert all(unk not in ids for ids in encoded)
    assert all(world.tokenizer.decode(ids) == text for ids, text in zip(encoded, train + held_out))


@pytest.mark.parametrize(
    "response, reference, expected",
    [
        ("a wok", "a wok", 1.0),
        ("The WOK !", "a wok", 1.0),  # case, punctuation and articles are normalised away
        ("tonight's homework", "tonight ' s homework", 1.0),  # punctuation becomes a space on both sides
        ("use a cast iron pan", "a cast iron pan", 6 / 7),  # P = 3/4, R = 1
        ("a cast iron skillet", "a cast iron pan", 2 / 3),  # P = R = 2/3
        ("pan pan", "a cast iron pan", 0.4),  # one match counted once: P = 1/2, R = 1/3
        ("", "a wok", 0.0),
        ("the", "a wok", 0.0),  # only an article: nothing left to match
        ("an oven", "a wok", 0.0),
    ],
)
def test_extract_score_by_hand(response, reference, expected):
    assert tasks.extract_score(response, reference) == pytest.approx(expected)


def test_extract_reward_is_the_env_reward(extract):
    base = extract.unwrapped
    prompt = base.eval_prompts.prompts[0]
    answer = base.reward_fn.references[prompt]
    scores = base.reward_fn([prompt] * 3, [answer, f"the notes say {answer}", ""])
    assert scores[0] == 1.0 and 0.0 < scores[1] < 1.0 and scores[2] == 0.0
    with pytest.raises(ValueError, match="not a passage of this extraction task; it has no reference answer"):
        base.reward_fn(["how do i cook lentil stew ?"], ["x"])


def test_check_env_single_and_vector(world, extract):
    check_env(extract.unwrapped, skip_render_check=True)
    check_env(extract, skip_render_check=True)
    assert ENV_ID in rlft_gym.TASK_ENV_IDS and extract.spec.nondeterministic
    prompt, info = extract.reset(options={"prompt_id": 2})
    answer = extract.unwrapped.reward_fn.references[prompt]
    _, reward, terminated, truncated, info = extract.step(answer)
    assert reward == 1.0 and terminated and not truncated and 0.0 <= info["cost"] <= 1.0
    venv = rlft_gym.make_vec(ENV_ID, num_envs=3)
    obs, _ = venv.reset(options={"prompt_ids": [0, 1, 2]})
    assert obs[2] == prompt
    _, rewards, terminated, _, info = venv.step(["", "sure .", answer])
    assert rewards.shape == info["cost"].shape == (3,) and terminated.all()
    assert rewards[2] == 1.0 and rewards[0] == 0.0
    venv.close()


@pytest.fixture(scope="module")
def hf_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_extract")
    models = write_models(root / "models")
    rows = [
        {
            "question": "what do the notes say to use ?",
            "passage": f"{s} {i} : heat a moon pan .",
            "answer": "a moon pan",
            "split": s,
        }
        for s, n in (("train", 4), ("eval", 2))
        for i in range(n)
    ]
    datasets.Dataset.from_list(rows).to_json(str(root / "extract.jsonl"))
    return {
        "world": "hf",
        "prompts": str(root / "extract.jsonl"),
        "dataset": str(write_dataset(root / "bt", "beavertails")),
        "policy": models["policy"],
        "cost_model": models["cost_model"],
        "num_attack_pairs": 16,
        "num_eval_prompts": 6,
        "max_new_tokens": 4,
    }


def test_hf_extract_with_prompt_file(hf_file):
    env = gym.make(ENV_ID, **hf_file)
    base = env.unwrapped
    assert len(base.prompts) == 4 and len(base.eval_prompts) == 2 and base.world.name == "hf"
    assert base.eval_prompts.prompts[0] == tasks.extract_prompt(
        "eval 0 : heat a moon pan .", "what do the notes say to use ?"
    )
    env.reset(seed=0)
    assert env.step("moon pan")[1] == 1.0
    env.reset(seed=0)
    assert env.step("a moon cake")[1] == pytest.approx(0.5)  # P = R = 1/2
    venv = rlft_gym.make_vec(ENV_ID, num_envs=2, **hf_file)
    venv.reset(options={"prompt_ids": [0, 1]})
    assert list(venv.step(["moon pan", ""])[1]) == [1.0, 0.0]
    with pytest.raises(ValueError, match=r"has no column\(s\) \['answer'\]"):
        path = hf_file["prompts"].replace("extract.jsonl", "bad.jsonl")
        datasets.Dataset.from_list([{"question": "q", "passage": "p", "split": "train"}]).to_json(path)
        gym.make(ENV_ID, **{**hf_file, "prompts": path})


def test_hf_monitor_records_no_capability(hf_file):
    """The hf world has no programmatic held-out tasks: the monitor writes `capability: null`."""
    venv = rlft_gym.make_vec(ENV_ID, num_envs=2, **hf_file)
    assert getattr(venv.unwrapped.world, "capability_tasks", None) is None
    row = SafeSetMonitor(venv, samples_per_prompt=1).evaluate(GRPO(venv, group_size=2))
    assert "capability" in row and row["capability"] is None
