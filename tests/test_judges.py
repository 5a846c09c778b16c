"""Pluggable costs and rewards: classifiers, generative judges, user callables, and missing-model errors.

Every model here is tiny, random-initialised and saved to tmp_path by the test itself; nothing is downloaded.
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np
import pytest
import torch
from huggingface_hub.constants import HF_HUB_CACHE
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel, PreTrainedTokenizerFast

from rlft_gym.judges import (
    GenerativeJudge,
    as_score_fn,
    classifier_cost,
    classifier_reward,
    harmbench_judge,
    llama_guard_judge,
    missing_model_error,
    parse_harmbench,
    parse_llama_guard,
    parse_strongreject,
    strongreject_judge,
)

torch.set_num_threads(1)

# No yes / no / safe / unsafe / digits: a random LM over this vocabulary can never produce a parsable verdict.
WORDS = [
    "<pad>",
    "<unk>",
    "<eos>",
    "user",
    "assistant",
    ":",
    "how",
    "do",
    "i",
    "grow",
    "a",
    "zorblat",
    "fern",
    "water",
    "it",
    "daily",
    "sure",
    "here",
    "is",
    "the",
    "plan",
    "sorry",
    "cannot",
    "help",
    "with",
    "that",
]
CHAT_TEMPLATE = "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}"
PROMPTS = ["how do i grow a zorblat fern", "how do i water it"]
RESPONSES = ["sure here is the plan", "sorry i cannot help with that"]


def make_tokenizer(chat: bool = False) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")
    fast.chat_template = CHAT_TEMPLATE if chat else None
    return fast


def config(**kw) -> GPT2Config:
    return GPT2Config(
        n_layer=1,
        n_embd=32,
        n_head=2,
        n_positions=128,
        vocab_size=len(WORDS),
        pad_token_id=0,
        eos_token_id=2,
        bos_token_id=2,
        **kw,
    )


def save(model, path, chat: bool = False):
    torch.manual_seed(0)
    model.save_pretrained(path)
    make_tokenizer(chat).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    """Save a tiny GPT-2 sequence classifier with the given label names; returns its directory."""

    def build(labels: list[str], **kw):
        torch.manual_seed(0)
        cfg = config(
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            **kw,
        )
        return save(GPT2ForSequenceClassification(cfg), tmp_path_factory.mktemp("cls"))

    return build


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    torch.manual_seed(0)
    return save(GPT2LMHeadModel(config()), tmp_path_factory.mktemp("lm"), chat=True)


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    return GPT2LMHeadModel(config())


# ------------------------------------------------------------------------------------------ classifiers


def test_classifier_cost_is_a_probability_per_pair(classifier_dir):
    path = classifier_dir(["LABEL_0", "LABEL_1"])
    cost = classifier_cost(path)
    scores = cost(PROMPTS, RESPONSES)
    assert scores.shape == (2,) and scores.dtype == np.float32
    assert np.all((scores >= 0) & (scores <= 1))
    np.testing.assert_allclose(scores + classifier_cost(path, harmful_label=0)(PROMPTS, RESPONSES), 1.0, atol=1e-6)
    assert cost([], []).shape == (0,)


def test_harmful_label_found_by_name(classifier_dir):
    path = classifier_dir(["UNSAFE", "SAFE"])
    assert classifier_cost(path).column == 0
    assert classifier_cost(path, harmful_label="unsafe").column == 0
    np.testing.assert_allclose(
        classifier_cost(path)(PROMPTS, RESPONSES),
        1 - classifier_cost(path, harmful_label=1)(PROMPTS, RESPONSES),
        atol=1e-6,
    )


def test_single_logit_classifier_uses_sigmoid(classifier_dir):
    scores = classifier_cost(classifier_dir(["harm"]))(PROMPTS, RESPONSES)
    assert np.all((scores > 0) & (scores < 1))


def test_many_labels_need_an_explicit_harmful_label(classifier_dir):
    path = classifier_dir(["benign", "mild", "severe"])
    with pytest.raises(ValueError, match=r"num_labels=3.*harmful_label") as err:
        classifier_cost(path)
    assert "severe" in str(err.value) and str(path) in str(err.value)
    assert classifier_cost(path, harmful_label="severe").column == 2
    with pytest.raises(ValueError, match="out of range"):
        classifier_cost(path, harmful_label=3)
    with pytest.raises(ValueError, match="not a label"):
        classifier_cost(path, harmful_label="toxic")


def test_model_object_needs_its_tokenizer(classifier_dir):
    path = classifier_dir(["safe", "unsafe"])
    model = GPT2ForSequenceClassification.from_pretrained(path)
    assert classifier_cost(model, tokenizer=path)(PROMPTS, RESPONSES).shape == (2,)
    with pytest.raises(TypeError, match="tokenizer="):
        classifier_cost(model)


def test_classifier_reward_is_the_single_logit(classifier_dir):
    path = classifier_dir(["reward"])
    reward = classifier_reward(path)(PROMPTS, RESPONSES)
    assert reward.shape == (2,) and np.all(np.isfinite(reward))
    with pytest.raises(ValueError, match="num_labels=2.*one output"):
        classifier_reward(classifier_dir(["LABEL_0", "LABEL_1"]))


# --------------------------------------------------------------------------------------------- parsers


@pytest.mark.parametrize(
    "parser, text, expected",
    [
        (parse_llama_guard, "safe", 0.0),
        (parse_llama_guard, "\n\n  UNSAFE\nS1", 1.0),
        (parse_llama_guard, "unsafe S1,S9", 1.0),
        (parse_llama_guard, "Safe.", 0.0),
        (parse_llama_guard, "", None),
        (parse_llama_guard, "it looks fine", None),
        (parse_llama_guard, "safely done", None),
        (parse_harmbench, "Yes", 1.0),
        (parse_harmbench, " no.", 0.0),
        (parse_harmbench, "YES, it does", 1.0),
        (parse_harmbench, "maybe", None),
        (parse_harmbench, "nope", None),
        (parse_strongreject, "0.25", 0.25),
        (parse_strongreject, "#score: 1", 1.0),
        (parse_strongreject, "Score = .5 because", 0.5),
        (parse_strongreject, "score: 1.5", None),
        (parse_strongreject, "-0.2", None),
        (parse_strongreject, "no number here", None),
        (partial(parse_strongreject, scale=(1, 5)), "score: 4", 0.75),
        (partial(parse_strongreject, scale=(1, 5)), "I'd say 1", 0.0),
        (partial(parse_strongreject, scale=(1, 5)), "score: 0", None),
    ],
)
def test_parsers(parser, text, expected):
    assert parser(text) == expected


# ------------------------------------------------------------------------------------- generative judges


def test_unparsable_judge_output_raises_with_the_count(lm):
    judge = GenerativeJudge(
        lm, make_tokenizer(), "{prompt} | {response}", parse_harmbench, max_new_tokens=3, name="tiny"
    )
    with pytest.raises(ValueError, match=r"'tiny' could not parse 2 of 2 outputs"):
        judge(PROMPTS, RESPONSES)
    assert judge.stats.total == 2 and judge.stats.unparsed == 2


def test_unparsable_judge_output_is_nan_or_explicit_fallback(lm):
    judge = GenerativeJudge(
        lm,
        make_tokenizer(),
        "{prompt} {response}",
        parse_llama_guard,
        max_new_tokens=3,
        batch_size=1,
        on_unparsed="nan",
    )
    assert np.isnan(judge(PROMPTS, RESPONSES)).all()
    assert judge.stats.unparsed == 2 and len(judge.stats.last_unparsed) == 2
    report = judge.report()
    assert report["unparsed"] == report["total"] == 2 and report["unparsed_rate"] == 1.0
    fallback = GenerativeJudge(
        lm, make_tokenizer(), "{prompt} {response}", parse_llama_guard, max_new_tokens=2, on_unparsed=1.0
    )
    assert fallback(PROMPTS * 4, RESPONSES * 4).tolist() == [1.0] * 8
    assert fallback.stats.unparsed == 8 and len(fallback.stats.last_unparsed) == 5


def test_judge_scores_what_the_parser_reads(lm):
    judge = GenerativeJudge(lm, make_tokenizer(chat=True), None, lambda text: 0.7, max_new_tokens=2, batch_size=1)
    np.testing.assert_allclose(judge(PROMPTS, RESPONSES), 0.7)
    assert judge.format("hi", "there") == "user : hi assistant : there "
    assert judge.stats.unparsed == 0 and judge([], []).shape == (0,)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"prompt_template": None}, "chat template"),
        ({"prompt_template": "{prompt} only"}, r"\{response\}"),
        ({"prompt_template": "{prompt} {response}", "on_unparsed": "safe"}, "on_unparsed"),
        ({"prompt_template": "{prompt} {response}", "on_unparsed": 2.0}, "on_unparsed"),
    ],
)
def test_judge_rejects_bad_configuration(lm, kwargs, message):
    with pytest.raises(ValueError, match=message):
        GenerativeJudge(lm, make_tokenizer(), parser=parse_harmbench, **kwargs)


@pytest.mark.parametrize("constructor", [llama_guard_judge, harmbench_judge, strongreject_judge])
def test_judge_constructors_load_a_local_checkpoint(lm_dir, constructor):
    judge = constructor(lm_dir, on_unparsed="nan", max_new_tokens=2)
    assert judge.name == str(lm_dir)
    assert np.isnan(judge(PROMPTS, RESPONSES)).all() and judge.stats.unparsed == 2
    assert PROMPTS[0] in judge.format(PROMPTS[0], RESPONSES[0])


# -------------------------------------------------------------------------------------- user callables


def test_as_score_fn_accepts_both_callable_shapes():
    plain = as_score_fn(lambda prompts, responses: [float(len(r)) for r in responses])
    np.testing.assert_array_equal(plain(["a", "b"], ["xy", "z"]), np.array([2.0, 1.0], dtype=np.float32))

    def trl_reward(prompts, completions, **kwargs):
        return [1.0 if p in c else 0.0 for p, c in zip(prompts, completions)]

    out = as_score_fn(trl_reward)(["a", "b"], ["a!", "c"])
    assert out.dtype == np.float32 and out.tolist() == [1.0, 0.0]
    assert as_score_fn(lambda completions: np.ones(len(completions)))(["a"], ["b"]).tolist() == [1.0]


@pytest.mark.parametrize(
    "output, message",
    [
        ([1.0], "returned 1 scores for 2"),
        ([0.5, float("nan")], "nan at index 1"),
        (["0.5", 0.1], "'0.5' at index 0"),
        ("high", "returned 'high'"),
        (None, "returned None"),
    ],
)
def test_as_score_fn_rejects_bad_outputs(output, message):
    def my_reward(prompts, responses):
        return output

    with pytest.raises(ValueError, match=f"my_reward.*{message}"):
        as_score_fn(my_reward)(["a", "b"], ["c", "d"])


def test_as_score_fn_rejects_non_callables():
    with pytest.raises(TypeError, match="callable"):
        as_score_fn(0.5)


# ---------------------------------------------------------------------------------------- missing models


@pytest.mark.parametrize(
    "load", [classifier_cost, classifier_reward, llama_guard_judge, harmbench_judge, strongreject_judge]
)
def test_missing_local_path_is_one_actionable_error(tmp_path, load):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError) as err:
        load(missing)
    assert str(missing) in str(err.value) and "save_pretrained" in str(err.value) and "hf download" in str(err.value)


@pytest.mark.parametrize("load", [classifier_cost, strongreject_judge])
def test_missing_hub_id_offline_fails_fast(monkeypatch, load):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as err:
        load("nonexistent-org/nonexistent-model")
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert "'nonexistent-org/nonexistent-model'" in message and "Hugging Face cache" in message
    assert "hf download nonexistent-org/nonexistent-model" in message and "save_pretrained" in message


def test_missing_model_error_names_what_and_where():
    error = missing_model_error("some-org/some-judge", "harm judge")
    assert isinstance(error, FileNotFoundError)
    assert str(error).startswith("harm judge 'some-org/some-judge' is not available")
    assert HF_HUB_CACHE in str(error)
