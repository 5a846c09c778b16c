"""Representation removal (RepNoise, RMU, Circuit Breakers) and TAR: their distances and losses against hand-computed
cases, the direction a few steps move them on the tiny world, one clear error for bad settings, and a killed run that
resumes to the weights an uninterrupted one reaches."""

from __future__ import annotations

import json
import math
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from helpers import fresh, weights

from rlft_gym import cache
from rlft_gym.baselines import (
    RMU,
    TAR,
    CircuitBreakers,
    RepNoise,
    RepNoiseThenTAR,
    RepresentationRemoval,
    TARRepNoise,
    rep_removal,
    tar,
)
from rlft_gym.experiment import DEFENCES, TRANSFORMS, make_transform


@pytest.fixture(scope="module")
def env(world):
    e = gym.make("RPA-BeaverTails-v0")
    yield e
    e.close()


# --- hand-computed cases -------------------------------------------------------------------------------------------


def test_mmd_matches_the_kernel_formula_and_vanishes_on_equal_samples():
    x, y = torch.tensor([[0.0]]), torch.tensor([[1.0]])
    # pooled squared distances [[0, 1], [1, 0]]: median 1, so k(x, y) = sum_w exp(-1 / w) and k(x, x) = 5
    cross = sum(math.exp(-1 / w) for w in rep_removal.KERNEL_WIDTHS)
    assert rep_removal.gaussian_mmd(x, y).item() == pytest.approx(5 + 5 - 2 * cross)
    z = torch.randn(6, 3)
    assert rep_removal.gaussian_mmd(z, z.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert rep_removal.gaussian_mmd(z, z + 3).item() > rep_removal.gaussian_mmd(z, z + 0.1).item()


def test_rerouting_cosine_is_zero_once_orthogonal_or_opposite():
    h0 = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [2.0, 2.0]])
    h = torch.tensor([[3.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 0.0]])
    # cosines 1, 0, -1 (ReLU: 0), 1/sqrt(2)
    assert rep_removal.rerouting_cosine(h, h0).item() == pytest.approx((1 + 1 / math.sqrt(2)) / 4)


def test_rmu_target_is_a_fixed_vector_of_length_c():
    rmu = RMU(steering_coefficient=7.0, seed=3)
    u = rmu.control_vector(16)
    assert u.norm().item() == pytest.approx(7.0) and (u >= 0).all()
    assert torch.equal(u, RMU(steering_coefficient=7.0, seed=3).control_vector(16))
    assert not torch.equal(u, RMU(steering_coefficient=7.0, seed=4).control_vector(16))
    h = u.expand(5, 16).clone()
    assert rep_removal.removal_distance("random-vector", "mse", h, h, u, torch.zeros(5, 16)).item() == 0.0
    assert rep_removal.removal_distance("random-vector", "mse", h + 2, h, u, h).item() == pytest.approx(4.0)


def test_circuit_breakers_schedule_hands_over_to_half_of_each():
    cb = CircuitBreakers(steps=10, removal_weight=10.0, representation_retain_weight=4.0)
    assert cb.weights(0) == (10.0, 0.0)
    assert cb.weights(10) == pytest.approx((5.0, 2.0))
    assert RepNoise(removal_weight=2.0).weights(7) == (2.0, 0.0)


def test_logit_lens_reads_every_layer_through_the_final_norm(world):
    model = world.load_policy(world.policy_path).eval()
    ids = world.tokenizer(["user : hello . assistant : hi there ."], return_tensors="pt")["input_ids"]
    out = model(input_ids=ids, labels=ids, output_hidden_states=True)
    lens = model.lm_head(model.transformer.ln_f(out.hidden_states[1]))  # the 2-layer tiny model: layer 1, then logits
    by_hand = (torch.nn.functional.cross_entropy(lens[0, :-1], ids[0, 1:]) + out.loss) / 2
    got = rep_removal.logit_lens_ce(model, out.hidden_states, out.logits, ids)
    torch.testing.assert_close(got, by_hand)


def test_dpo_loss_entropy_and_inner_weights_by_hand():
    one = torch.tensor([1.0])
    # margins: chosen +1 over its reference, rejected -1 under its: beta 0.5 * 2 = 1
    assert tar.dpo_loss(one, -one, torch.zeros(1), torch.zeros(1), 0.5).item() == pytest.approx(math.log1p(math.e**-1))
    logits = torch.zeros(1, 3, 5)  # uniform over 5 tokens: entropy log 5 at the labelled position
    labels = torch.tensor([[-100, 2, -100]])
    assert tar.answer_entropy(logits, labels).item() == pytest.approx(math.log(5))
    assert tar.inner_weight(7, 8, 4.0) == 4.0
    assert tar.inner_weight(0, 8, 4.0) == pytest.approx(4.0 * math.exp(-0.0625 * 7))


def test_sequence_logprob_sums_the_labelled_tokens(world):
    model = world.load_policy(world.policy_path).eval()
    ids = world.tokenizer(["user : hello . assistant : hi there ."], return_tensors="pt")["input_ids"]
    labels = ids.clone()
    labels[0, :4] = -100
    n = int((labels[0, 1:] != -100).sum())
    loss = model(input_ids=ids, labels=labels).loss  # the mean over the same labelled tokens
    got = tar.sequence_logprob(model, ids, torch.ones_like(ids), labels)
    torch.testing.assert_close(got, -loss.detach()[None] * n)


# --- registry and settings ---------------------------------------------------------------------------------------


def test_registered_for_the_cli_and_bench():
    names = ["repnoise", "rmu", "circuit-breakers", "representation-removal", "tar", "tar-repnoise", "repnoise-tar"]
    assert set(names) <= set(TRANSFORMS)
    classes = [RepNoise, RMU, CircuitBreakers, RepresentationRemoval, TAR, TARRepNoise, RepNoiseThenTAR]
    for name, cls in zip(names, classes, strict=True):
        assert DEFENCES[name] == ("transform", cls) and cls.name == name
    assert make_transform("rmu", steps=3).steps == 3
    assert "repnoise" in RepNoiseThenTAR().config()  # RepNoise's settings are part of the two-stage key


@pytest.mark.parametrize(
    "make,match",
    [
        (
            lambda: RepresentationRemoval(projection="orthogonal", distance="mmd"),
            r"distance='mmd' does not go with projection='orthogonal'; allowed: \['cosine'\]",
        ),
        (lambda: RepresentationRemoval(projection="gaussian"), "projection='gaussian'"),
        (lambda: RepNoise(schedule="linear"), "schedule='linear'"),
        (lambda: RMU(steps=0), "steps"),
        (lambda: CircuitBreakers(removal_weight=-1.0), "removal_weight"),
        (lambda: TAR(tamper_loss="kl"), "tamper_loss='kl'"),
        (lambda: TAR(adversaries=("pgd",)), "adversary='pgd'"),
        (lambda: TAR(adversary_lrs=()), "adversary_lrs"),
        (lambda: TAR(adversary_lrs=(1e-4, -1.0)), "adversary_lr1"),
        (lambda: TAR(inner_subsample=0), "inner_subsample"),
    ],
)
def test_bad_settings_raise_one_clear_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_layers_outside_the_model_fail_clearly(env):
    with pytest.raises(ValueError, match=r"layers=\(5,\) has \[5\]; the model's decoder layers are 1..2"):
        RepNoise(layers=(5,), steps=1, batch_size=2, seed=90).apply(env, progress=False)
    with pytest.raises(ValueError, match=r"update_layers=\(9,\): no MLP weights"):
        RMU(update_layers=(9,), steps=1, batch_size=2, seed=90).apply(env, progress=False)


# --- learning direction on the tiny world ------------------------------------------------------------------------


def batch_terms(t: RepresentationRemoval, world, policy) -> dict[str, float]:
    """`t`'s loss terms for `policy` on one fixed batch of defence and retain rows (against the env's policy)."""
    pairs = [{**r, "prompt": world.format_prompt(r["prompt"])} for r in world.defence_dataset().select(range(16))]
    retain = [{**r, "prompt": world.format_prompt(r["prompt"])} for r in world.retain_dataset().select(range(16))]
    frozen = world.load_policy(world.policy_path).eval()
    model = world.load_policy(policy).eval()
    torch.manual_seed(0)
    control = t.control_vector(frozen.get_input_embeddings().embedding_dim)
    with torch.no_grad():
        return t.loss(model, frozen, world.tokenizer, pairs, retain, control, 0)[1]


@pytest.mark.parametrize(
    "t,falls,rises",
    [
        (RepNoise(steps=15, batch_size=8, learning_rate=1e-3, seed=5), "removal", "harmful_ce"),
        (RMU(steps=15, batch_size=8, learning_rate=1e-3, seed=5), "removal", None),
        (CircuitBreakers(steps=15, batch_size=8, learning_rate=1e-3, removal_weight=10.0, seed=5), "removal", None),
    ],
    ids=["repnoise", "rmu", "circuit-breakers"],
)
def test_a_few_steps_move_harmful_representations_toward_the_target(env, t, falls, rises):
    world = env.unwrapped.world
    fresh(t, env)
    before = batch_terms(t, world, world.policy_path)
    after = batch_terms(t, world, t.apply(env, progress=False))
    assert after[falls] < 0.9 * before[falls]
    if rises:
        assert after[rises] > before[rises]
    if "retain_ce" in before:  # benign answers are kept, not destroyed
        assert after["retain_ce"] < before["retain_ce"] + 1.0


def test_tar_outer_steps_lower_the_tamper_resistance_loss(env):
    # a near-zero adversary: the buffered gradient is L_TR's own, so outer steps must lower L_TR (DPO toward refusals)
    t = TAR(outer_steps=6, inner_steps=2, inner_subsample=1, adversary_lrs=(1e-12,), adversaries=("harmful-sft",))
    t = TAR(
        **{**t.config(), "retain_weight": 0.0, "representation_retain_weight": 0.0, "learning_rate": 1e-3, "seed": 5}
    )
    world = env.unwrapped.world
    fresh(t, env)
    pairs = [{**r, "prompt": world.format_prompt(r["prompt"])} for r in world.defence_dataset().select(range(32))]
    frozen = world.load_policy(world.policy_path).eval()
    defended = world.load_policy(t.apply(env, progress=False)).eval()
    with torch.no_grad():
        before = t.tamper_resistance(frozen, frozen, world.tokenizer, pairs).item()
        after = t.tamper_resistance(defended, frozen, world.tokenizer, pairs).item()
    assert before == pytest.approx(math.log(2))  # the DPO loss of the reference against itself
    assert after < before - 0.05


# --- resume --------------------------------------------------------------------------------------------------------


class Killed(KeyboardInterrupt):
    pass


@pytest.mark.parametrize(
    "t,method",
    [
        (RepNoise(steps=5, batch_size=4, seed=21), "loss"),
        (
            TAR(outer_steps=5, inner_steps=2, inner_subsample=1, batch_size=4, adversary_batch_size=4, seed=21),
            "tamper_gradients",
        ),
    ],
    ids=["repnoise", "tar"],
)
def test_a_killed_run_resumes_to_the_uninterrupted_weights(env, monkeypatch, t, method):
    fresh(t, env)
    uninterrupted = weights(t.apply(env, progress=False, save_every=2))
    fresh(t, env)
    original, calls = getattr(type(t), method), []

    def counted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # killed during step 4: the last resume checkpoint is after step 2
            raise Killed
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(t), method, counted)
    with pytest.raises(Killed):
        t.apply(env, progress=False, save_every=2)
    monkeypatch.setattr(type(t), method, original)
    path = t.apply(env, progress=False, save_every=2)
    resumed = weights(path)
    assert all(torch.equal(resumed[k], v) for k, v in uninterrupted.items())
    assert json.loads((path / cache.MANIFEST).read_text())["meta"]["resumed_from_step"] == 2


def test_the_same_transforms_run_on_the_hf_world(tmp_path_factory):
    from hf_fixtures import write_dataset, write_models

    models = write_models(tmp_path_factory.mktemp("models"))
    data = write_dataset(tmp_path_factory.mktemp("data") / "bt", "beavertails")
    kwargs = {"reward_model": models["reward_model"], "cost_model": models["cost_model"], "max_new_tokens": 8}
    env = gym.make(
        "RPA-BeaverTails-v0",
        world="hf",
        dataset=str(data),
        policy=models["policy"],
        num_attack_pairs=16,
        num_eval_prompts=6,
        **kwargs,
    )
    world = env.unwrapped.world
    pairs = world.defence_dataset()  # the default: attack prompts with both a harmful answer and a refusal
    assert len(pairs) == 16 and pairs.column_names == ["prompt", "harmful", "refusal"]
    assert set(pairs["prompt"]) == set(world.harmful_sft_dataset()["prompt"])
    small = {"batch_size": 4, "seed": 31}
    for t in (
        RepNoise(steps=2, **small),
        RMU(steps=2, **small),
        CircuitBreakers(steps=2, **small),
        TAR(outer_steps=1, inner_steps=2, inner_subsample=1, adversary_batch_size=4, **small),
    ):
        fresh(t, env)
        path = t.apply(env, progress=False)
        assert json.loads((path / cache.MANIFEST).read_text())["meta"]["resumed_from_step"] == 0
        assert set(weights(path)) == set(weights(Path(models["policy"])))
    env.close()


def test_defence_data_is_disjoint_from_every_prompt_attacks_and_graders_see(world):
    pairs, retain = world.defence_dataset(), world.retain_dataset()
    corpus = world.corpus
    seen = {p.text for s in ("train", "eval", "heldout") for p in corpus.hazard_prompts(s) + corpus.benign_prompts(s)}
    assert len(pairs) == 14 * 8 and len(retain) == len(corpus.benign_prompts("defence"))
    assert not (set(pairs["prompt"]) | set(retain["prompt"])) & seen
    assert {p.category for p in corpus.hazard_prompts("defence")} == {
        p.category for p in corpus.hazard_prompts("train")
    }
    assert all(h != r for h, r in zip(pairs["harmful"], pairs["refusal"], strict=True))


def test_defend_from_the_cli_takes_tuple_settings(world, capsys):
    from rlft_gym.cli import main

    args = ["defend", "rmu", "--preset", "tiny", "--seed", "23", "--set", "steps=2", "--set", "batch_size=4"]
    assert main([*args, "--set", "layers=(2,)", "--set", "update_layers=(0, 1)"]) == 0
    path = Path(capsys.readouterr().out.strip())
    config = json.loads((path / cache.MANIFEST).read_text())["config"]["config"]
    assert path.parent.name == "rmu" and config["layers"] == [2] and config["update_layers"] == [0, 1]
    assert main([*args, "--set", "distance='cosine'"]) == 2
    assert "distance='cosine' does not go with projection='random-vector'" in capsys.readouterr().out
