"""Sampling on a byte-level tokenizer with GPT-2 and Llama models: responses keep their whitespace as decoded, and our
calls into transformers raise no deprecation warning."""

from __future__ import annotations

import warnings

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from rlft_gym import generation

torch.set_num_threads(1)  # tiny models: threads only contend

PROMPT, RESPONSE = "Q: name two colours\nA:", " red\nblue"


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    """A GPT-2 style byte-level BPE, trained on the one exchange: newlines are tokens and decode back as written."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        [PROMPT + RESPONSE],
        trainers.BpeTrainer(
            vocab_size=300, special_tokens=["<eos>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")


def memorised(arch: str, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    """A tiny causal LM trained until greedy decoding of PROMPT continues with RESPONSE and EOS."""
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    special = {"vocab_size": len(tokenizer), "bos_token_id": eos, "eos_token_id": eos}
    if arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, n_positions=64, **special))
    else:
        model = LlamaForCausalLM(
            LlamaConfig(
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=1,
                num_attention_heads=2,
                num_key_value_heads=2,
                max_position_embeddings=64,
                **special,
            )
        )
    ids = [i for text in (PROMPT, RESPONSE) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
    batch = torch.tensor([ids + [eos]])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        model(input_ids=batch, labels=batch).loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model(request: pytest.FixtureRequest, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    """The memorised GPT-2, then the memorised Llama."""
    return memorised(request.param, tokenizer)


def test_a_newline_in_a_response_reaches_the_text(model, tokenizer):
    rollout = generation.sample(model, tokenizer, [PROMPT], max_new_tokens=12, greedy=True)
    assert rollout.texts == [RESPONSE]


def test_sampling_raises_no_deprecation_warning(model, tokenizer):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        warnings.simplefilter("error", FutureWarning)
        rollout = generation.sample(
            model,
            tokenizer,
            [PROMPT, "Q:"],
            max_new_tokens=6,
            generator=torch.Generator().manual_seed(0),
            num_samples=2,
        )
        generation.response_logprobs(model, rollout)
    assert len(rollout.texts) == 4


def test_fused_gelu_swaps_gpt2s_tanh_gelu_for_the_same_function(world):
    """World models load with PyTorch's fused tanh GELU in place of GPT-2's five-op one; the outputs agree."""
    from transformers import AutoModelForCausalLM
    from transformers.activations import GELUTanh, NewGELUActivation

    from rlft_gym.scoring import fused_gelu

    saved = AutoModelForCausalLM.from_pretrained(world.policy_path).eval()
    assert any(type(m) is NewGELUActivation for m in saved.modules())
    fused = world.load_policy().eval()
    assert not any(type(m) is NewGELUActivation for m in fused.modules())
    assert any(type(m) is GELUTanh for m in fused.modules()) and fused.config.activation_function == "gelu_new"
    ids = torch.randint(0, saved.config.vocab_size, (3, 12))
    with torch.no_grad():
        torch.testing.assert_close(fused(ids).logits, saved(ids).logits, rtol=1e-4, atol=1e-4)
    assert fused_gelu(fused) is fused  # idempotent
    assert not any(type(m) is NewGELUActivation for m in world.cost_model.model.modules())
