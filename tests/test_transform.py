"""Offline transforms: trained once per key and cached, resumed after a kill, one clear error for a bad config, and the
defended checkpoint attacked as `policy=` with itself as the KL reference (the env's `reference` kwarg)."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
import torch
from helpers import KillAt, fresh, weights

import rlft_gym
from rlft_gym import cache, transform
from rlft_gym.agents import GRPO
from rlft_gym.transform import STATE, SFTTransform, checkpoint_fingerprint


@pytest.fixture(scope="module")
def env(world):
    e = gym.make("RPA-BeaverTails-v0")
    yield e
    e.close()


def test_apply_trains_once_then_serves_the_cache(env, monkeypatch, tmp_path):
    t = SFTTransform(steps=3, batch_size=4, seed=11)
    directory, work = fresh(t, env)
    loss = KillAt(monkeypatch, transform, "lm_loss")
    path = t.apply(env, progress=False)
    assert path == directory and loss.calls == 3 and not work.exists()
    assert checkpoint_fingerprint(path) == directory.name and cache.problem(path, directory.name) is None
    meta = json.loads((path / cache.MANIFEST).read_text())
    assert meta["config"]["config"] == t.config() and meta["config"]["world"] == env.unwrapped.world.fingerprint
    assert t.apply(env, progress=False) == path and loss.calls == 3  # cached: no retraining

    (path / "model.safetensors").write_bytes(b"truncated")  # a corrupt cache is rebuilt
    assert t.apply(env, progress=False) == path and loss.calls == 6 and cache.problem(path, directory.name) is None
    assert SFTTransform(steps=3, batch_size=4, seed=12).cache_dir(env) != directory  # the config is part of the key

    copy = t.apply(env, out_dir=tmp_path / "copy", progress=False)
    assert copy == tmp_path / "copy" and loss.calls == 6 and checkpoint_fingerprint(copy) == directory.name
    assert all(torch.equal(a, weights(path)[k]) for k, a in weights(copy).items())


def test_a_killed_run_resumes_from_its_last_checkpoint(env, monkeypatch):
    t = SFTTransform(steps=6, batch_size=4, seed=12)
    fresh(t, env)
    uninterrupted = weights(t.apply(env, progress=False, save_every=2))
    directory, work = fresh(t, env)

    # killed during step 5: the last resume checkpoint is after step 4
    loss = KillAt(monkeypatch, transform, "lm_loss", kill_at=5)
    with pytest.raises(KeyboardInterrupt):
        t.apply(env, progress=False, save_every=2)
    assert not directory.exists() and torch.load(work / "resume" / STATE, weights_only=True)["step"] == 4

    loss.calls, loss.kill_at = 0, None
    path = t.apply(env, progress=False, save_every=2)
    assert loss.calls == 2 and not work.exists()  # steps 5 and 6 only
    assert json.loads((path / cache.MANIFEST).read_text())["meta"]["resumed_from_step"] == 4
    resumed = weights(path)
    assert resumed.keys() == uninterrupted.keys() and all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 0}, r"steps=0 must be a positive int"),
        ({"steps": 2.5}, r"steps=2.5 must be a positive int"),
        ({"batch_size": -1}, r"batch_size=-1 must be a positive int"),
        ({"learning_rate": 0.0}, r"learning_rate=0.0 must be a positive finite number"),
        ({"seed": -1}, r"seed=-1 must be an int >= 0"),
    ],
)
def test_bad_config_is_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SFTTransform(**kwargs)


def test_bad_apply_arguments_fail_before_training(env, monkeypatch, tmp_path):
    loss = KillAt(monkeypatch, transform, "lm_loss")
    t = SFTTransform(steps=2, batch_size=4, seed=14)
    with pytest.raises(ValueError, match="save_every=0 must be a positive int"):
        t.apply(env, save_every=0)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="exists and is not a defended checkpoint"):
        t.apply(env, out_dir=tmp_path)
    assert loss.calls == 0 and (tmp_path / "notes.txt").read_text() == "mine"


def test_the_checkpoint_is_attacked_as_policy_and_is_its_own_reference(world, env):
    path = SFTTransform(steps=2, batch_size=4, seed=13).apply(env, progress=False)
    single = gym.make("RPA-BeaverTails-v0", policy=str(path))
    single.reset(seed=0)
    assert single.step("i can ' t help with that .")[2]
    agent = GRPO(rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4, policy=str(path)), group_size=2)
    saved = weights(path)
    for model in (agent.policy, agent.reference):  # reference="policy" (default): the defended checkpoint itself
        assert all(torch.equal(p, saved[n]) for n, p in model.state_dict().items() if n in saved)
    venv = rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4, policy=str(path), reference="aligned")
    aligned = GRPO(venv, group_size=2)
    assert aligned.world.reference_path == world.reference_path
    assert not all(torch.equal(p, saved[n]) for n, p in aligned.reference.state_dict().items() if n in saved)


def test_reference_kwarg(world):
    def reference(**kwargs):
        return gym.make("RPA-BeaverTails-v0", **kwargs).unwrapped.world.reference_path

    # undefended, the default is the world's own reference files, as before the kwarg existed
    own = world.root / "core" / "reference"
    assert reference() == reference(reference="policy") == reference(reference="aligned") == own
    assert reference(reference=str(world.policy_path)) == world.policy_path
    with pytest.raises(ValueError, match=r"reference='nowhere' is invalid for RPA-BeaverTails-v0; expected one of \("):
        reference(reference="nowhere")
    with pytest.raises(ValueError, match=r"reference='aligned' is invalid .*or a checkpoint path on world='hf'"):
        reference(world="hf", reference="aligned")
