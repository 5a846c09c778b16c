"""Vaccine (perturbation-aware refusal loss) and Security Vectors (a frozen harmful adapter, off at evaluation): the
perturbation's norm and direction, hook hygiene, steps in native and TRL agents, exact resume, bad settings."""

from __future__ import annotations

import types

import pytest
import torch
from helpers import Recorder, assert_resumes
from transformers import GPT2Config, GPT2LMHeadModel

import rlft_gym
from rlft_gym.agents import GRPO, SFT
from rlft_gym.baselines.security_vectors import SecurityVectors
from rlft_gym.baselines.vaccine import Vaccine, perturbed_loss, transformer_blocks
from rlft_gym.experiment import DEFENCES
from rlft_gym.monitor import SafeSetMonitor
from rlft_gym.training import lm_loss

torch.set_num_threads(1)


@pytest.fixture
def venv(world):
    return rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4, max_new_tokens=8)


def tiny_gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=3, n_head=2, resid_pdrop=0.0)
    return GPT2LMHeadModel(config).eval()


def no_hooks(model: torch.nn.Module) -> bool:
    return all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_vaccine_perturbation_has_norm_rho_along_the_hidden_gradient_and_leaves_no_hooks():
    model = tiny_gpt2()
    ids = torch.randint(0, 40, (3, 10), generator=torch.Generator().manual_seed(1))

    def loss_fn():
        return model(input_ids=ids, labels=ids).loss

    # the gradient at each block's output, by hand (retain_grad on hooked outputs)
    outputs = []
    hooks = [b.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for b in model.transformer.h]
    clean = loss_fn()
    for h in hooks:
        h.remove()
    for o in outputs:
        o.retain_grad()
    clean.backward()
    grads = [o.grad for o in outputs]
    norm = torch.sqrt(sum((g**2).sum() for g in grads))
    model.zero_grad(set_to_none=True)

    rho = 0.5
    loss, e = perturbed_loss(model, loss_fn, rho)
    assert no_hooks(model)
    torch.testing.assert_close(sum((x**2).sum() for x in e), torch.tensor(rho**2))
    for x, g in zip(e, grads, strict=True):
        torch.testing.assert_close(x, rho * g / norm)
        assert not x.requires_grad
    assert float(loss.detach()) > float(clean.detach())
    assert all(p.grad is None for p in model.parameters())  # pass 1 leaves the weights' gradients alone
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)  # pass 2 trains them

    loss0, e0 = perturbed_loss(model, loss_fn, 0.0)
    torch.testing.assert_close(loss0, clean.detach())
    assert all(float(x.abs().max()) == 0.0 for x in e0)


def test_vaccine_removes_its_hooks_when_the_loss_fails():
    model = tiny_gpt2()
    calls = []

    def failing():
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("pass 2 fails")
        ids = torch.arange(8)[None]
        return model(input_ids=ids, labels=ids).loss

    with pytest.raises(RuntimeError, match="pass 2 fails"):
        perturbed_loss(model, failing, 1.0)
    assert no_hooks(model)


def test_vaccine_term_in_grpo_and_sft_and_grpo_resumes(venv, tmp_path):
    agent = GRPO(venv, group_size=2, seed=1, constraints=[Vaccine(batch_size=4)])
    c = agent.constraints[0]
    rows = c.alignment_rows(agent)
    prompts, responses = [c.prompts[i] for i in rows], [c.responses[i] for i in rows]
    clean = float(lm_loss(agent.policy, agent.tokenizer, prompts, responses, response_only=True))
    term = float(c.loss(agent, None))
    assert term > clean
    at_zero = Vaccine(rho=0.0, batch_size=4)
    at_zero.setup(agent)
    assert float(at_zero.loss(agent, None)) == pytest.approx(clean, rel=1e-6)  # same rows, no perturbation
    agent.learn(1)
    assert no_hooks(agent.policy)
    assert_resumes(agent, venv, tmp_path / "ckpt", constraints=[Vaccine(batch_size=4)])

    rec = Recorder()
    SFT(venv, batch_size=2, probe_prompts=0, constraints=[Vaccine(batch_size=2)]).learn(1, callback=rec)
    assert rec.reports[0].extra["constraint/Vaccine"] > 0


def security_vectors(steps: int = 20) -> SecurityVectors:
    return SecurityVectors(train_steps=steps, learning_rate=3e-3, batch_size=4)


def test_security_vectors_fit_harmful_data_stay_frozen_and_are_off_at_evaluation(venv, world):
    agent = GRPO(venv, group_size=2, seed=1, constraints=[security_vectors()])
    sv = agent.constraints[0]
    rows = world.harmful_sft_dataset().select(range(0, 200, 10))
    prompts = [world.format_prompt(p) for p in rows["prompt"]]
    with torch.no_grad():
        on = float(lm_loss(agent.policy, agent.tokenizer, prompts, rows["response"], response_only=True))
        with sv.evaluation(agent):
            off = float(lm_loss(agent.policy, agent.tokenizer, prompts, rows["response"], response_only=True))
    assert on < off - 0.02  # the combined model fits the harmful answers better than the base

    adapter = [t for pair in sv.adapter.values() for t in pair]
    assert adapter and not any(t.requires_grad for t in adapter)
    in_optimizer = {id(p) for g in agent.optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in agent.policy.parameters()}
    assert not in_optimizer & {id(t) for t in adapter}

    # the monitor measures the base model: its row equals a plain agent's on the same weights
    plain = GRPO(venv, group_size=2, seed=1)
    rows_sv = SafeSetMonitor(venv, samples_per_prompt=1).evaluate(agent)
    rows_plain = SafeSetMonitor(venv, samples_per_prompt=1).evaluate(plain)
    assert rows_sv["samples"] == rows_plain["samples"] and rows_sv["kl"] == rows_plain["kl"]
    assert sv.active  # back on for training
    ids = torch.arange(12)[None]
    with torch.no_grad():
        assert not torch.equal(agent.policy(ids).logits, plain.policy(ids).logits)

    before = [t.clone() for t in adapter]
    weights = [p.detach().clone() for p in agent.policy.parameters()]
    agent.learn(1)
    assert all(torch.equal(a, b) for a, b in zip(before, adapter))  # the adapter is frozen
    assert any(not torch.equal(a, b) for a, b in zip(weights, agent.policy.parameters()))  # the base trains


def world_policy_keys(venv) -> set[str]:
    return venv.unwrapped.world.load_policy().state_dict().keys()


def test_security_vectors_resume_with_the_saved_adapter(venv, tmp_path):
    agent = GRPO(venv, group_size=2, seed=1, constraints=[security_vectors()]).learn(1)
    assert_resumes(agent, venv, tmp_path / "ckpt", constraints=[security_vectors()])
    # the checkpoint is the base model alone (no adapter weights), and loading restores the saved adapter
    loaded = GRPO.load(tmp_path / "ckpt", venv, constraints=[security_vectors(steps=1)])
    plain = GRPO(venv, policy=tmp_path / "ckpt", group_size=2).policy
    assert no_hooks(plain) and plain.state_dict().keys() == world_policy_keys(venv)
    saved, fitted = agent.constraints[0].adapter, loaded.constraints[0].adapter
    assert all(torch.equal(saved[k][0], fitted[k][0]) for k in saved)


def test_registered_and_bad_settings_raise_one_clear_error():
    assert DEFENCES["vaccine"] == ("constraint", Vaccine)
    assert DEFENCES["security-vectors"] == ("constraint", SecurityVectors)
    with pytest.raises(ValueError, match="rho"):
        Vaccine(rho=-1.0)
    with pytest.raises(ValueError, match="batch_size"):
        Vaccine(batch_size=0)
    with pytest.raises(ValueError, match="rank"):
        SecurityVectors(rank=0)
    with pytest.raises(ValueError, match="learning_rate"):
        SecurityVectors(learning_rate=0.0)
    with pytest.raises(ValueError, match="cannot find the transformer blocks"):
        transformer_blocks(torch.nn.Linear(2, 2))
    from peft import LoraConfig, get_peft_model

    peft_policy = get_peft_model(tiny_gpt2(), LoraConfig(target_modules=["c_attn"]))
    with pytest.raises(ValueError, match="peft LoRA model"):
        security_vectors().setup(types.SimpleNamespace(policy=peft_policy))
