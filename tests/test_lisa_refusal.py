"""Lisa and the refusal loss: the proximal term by hand, Lisa's phase schedule and anchors, the direction each pushes
GRPO, both inside SFT (a TRL agent), exact resume, bad settings."""

from __future__ import annotations

import pytest
import torch
from helpers import Recorder, assert_resumes

import rlft_gym
from rlft_gym.agents import GRPO, SFT
from rlft_gym.baselines.lisa import Lisa, proximal
from rlft_gym.baselines.refusal_loss import RefusalLoss, safe_pairs
from rlft_gym.experiment import DEFENCES, check_defence_kwargs, defence_parameters
from rlft_gym.training import lm_loss

torch.set_num_threads(1)


@pytest.fixture
def env(world):
    return rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4, max_new_tokens=8, flip_ratio=1.0)


def weights(agent) -> list[torch.Tensor]:
    return [p.detach().clone() for p in agent.policy.parameters() if p.requires_grad]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return float(torch.sqrt(sum(((x - y) ** 2).sum() for x, y in zip(a, b, strict=True))))


def refusal_ce(agent) -> float:
    """Mean response-token loss of the policy on the first 16 of the world's refusals."""
    rows = safe_pairs(agent.world, agent.world.refusal_dataset(), "refusals")[:16]
    with torch.no_grad():
        return float(lm_loss(agent.policy, agent.tokenizer, [p for p, _ in rows], [r for _, r in rows], True))


def test_proximal_term_by_hand():
    layer = torch.nn.Linear(2, 2)
    anchor = [p.detach().clone() for p in layer.parameters()]
    with torch.no_grad():
        layer.weight += 0.1  # 4 offsets of 0.1
        layer.bias += torch.tensor([0.2, -0.3])
    term = proximal(list(layer.parameters()), anchor, rho=100.0)
    assert float(term.detach()) == pytest.approx(50.0 * (4 * 0.01 + 0.04 + 0.09))
    term.backward()  # d/dtheta rho/2 ||theta - a||^2 = rho (theta - a)
    torch.testing.assert_close(layer.bias.grad, torch.tensor([20.0, -30.0]))


def test_lisa_loss_is_the_proximal_term_to_the_aligned_weights_over_trainable_params(env):
    agent = GRPO(env, group_size=2)
    frozen = next(agent.policy.parameters()).requires_grad_(False)
    lisa, late = Lisa(rho=4.0), Lisa(rho=4.0, warmup_steps=1)
    lisa.setup(agent)
    late.setup(agent)
    assert float(lisa.loss(agent, None).detach()) == 0.0  # starts at the initial, aligned weights
    trainable = [p for p in agent.policy.parameters() if p.requires_grad]
    with torch.no_grad():
        frozen += 1.0  # not trained: no term
        trainable[0] += 0.01
        trainable[-1] += 0.02
    expected = 2.0 * (trainable[0].numel() * 1e-4 + trainable[-1].numel() * 4e-4)
    assert float(lisa.loss(agent, None).detach()) == pytest.approx(expected, rel=1e-3)
    assert late.loss(agent, None) is None  # warm-up: off until 1 attack optimizer step is done
    agent.optimizer_steps = 1
    assert float(late.loss(agent, None).detach()) == pytest.approx(expected, rel=1e-3)


def test_lisa_phase_schedule_and_anchors(env):
    lisa = Lisa(finetune_steps=2, align_steps=1, rho=1.0)
    agent = GRPO(env, group_size=2, constraints=[lisa])
    aligned = weights(agent)  # theta_align: the initial weights until the first alignment state ends
    taken = []
    for step in range(1, 5):
        with torch.no_grad():  # stands in for one attack optimizer step
            for p in agent.policy.parameters():
                p += 1e-3 * torch.randn_like(p)
        before = weights(agent)
        agent.optimizer_steps = step
        lisa.after_step(agent, step, step)
        taken.append(lisa.align_steps_taken)
        if step % 2:  # fine-tune state: weights untouched, anchors kept
            assert same(weights(agent), before) and lisa.clock == 1
            assert same(lisa.align_anchor, aligned)
        else:  # switch into alignment (theta_ft = the attack's weights), one step, switch out (theta_align)
            assert same(lisa.finetune_anchor, before) and not same(weights(agent), before)
            assert same(lisa.align_anchor, weights(agent)) and lisa.clock == 0
            aligned = weights(agent)
    assert taken == [0, 1, 1, 2]
    # inside the agent's own loop: 2 alignment states of 3 steps in 5 GRPO steps
    run = Lisa(finetune_steps=2, align_steps=3)
    GRPO(env, group_size=2, constraints=[run]).learn(5)
    assert run.align_steps_taken == 6 and run.clock == 1


def test_lisa_alignment_batches_mix_benign_help(env):
    lisa = Lisa(batch_size=4, benign_fraction=0.5)
    lisa.setup(GRPO(env, group_size=2))
    prompts, responses = lisa.draw()
    benign = {p for p, _ in lisa.benign}
    assert len(prompts) == len(responses) == 4 and sum(p in benign for p in prompts) == 2


def test_large_rho_keeps_grpo_near_the_aligned_weights(env):
    drifts = []
    for constraints in ([], [Lisa(rho=1e4, finetune_steps=1000)]):
        agent = GRPO(env, group_size=2, seed=3, constraints=constraints)
        aligned = weights(agent)
        agent.learn(4)
        drifts.append(distance(weights(agent), aligned))
    assert drifts[1] < 0.5 * drifts[0]


def test_refusal_loss_keeps_refusals_likely_under_a_harm_rewarding_attack(env):
    ce = []
    for constraints in ([], [RefusalLoss(alpha=1.0)]):
        agent = GRPO(env, group_size=2, seed=4, constraints=constraints)
        start = refusal_ce(agent)
        agent.learn(4)
        ce.append(refusal_ce(agent))
    assert ce[0] > start  # the attack makes refusals less likely ...
    assert ce[1] - start < 0.5 * (ce[0] - start)  # ... and the refusal loss stops most of that


def test_both_work_inside_sft(env):
    for constraint in (Lisa(finetune_steps=1, align_steps=1), RefusalLoss()):
        agent = SFT(env, batch_size=2, probe_prompts=0, constraints=[constraint])
        rec = Recorder()
        agent.learn(1, callback=rec)
        term = rec.reports[0].extra[f"constraint/{type(constraint).__name__}"]
        if isinstance(constraint, Lisa):  # step 1 starts at the aligned weights; then one alignment step ran
            assert term == 0.0 and constraint.align_steps_taken == 1
            assert same(constraint.align_anchor, weights(agent))
        else:
            assert term > 0


@pytest.mark.parametrize(
    "make",
    [lambda: Lisa(finetune_steps=2, align_steps=1, benign_fraction=0.25), lambda: RefusalLoss(batch_size=4)],
    ids=["lisa", "refusal-loss"],
)
def test_grpo_resumes_with_each(env, tmp_path, make):
    agent = GRPO(env, group_size=2, seed=5, constraints=[make()]).learn(3)  # Lisa: mid-period, aligns on step 4
    assert_resumes(agent, env, tmp_path / "ckpt", constraints=[make()])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Lisa(rho=-1.0), "rho=-1.0 must be a finite number >= 0"),
        (lambda: Lisa(finetune_steps=0), "finetune_steps=0 must be a positive int"),
        (lambda: Lisa(align_steps=1.5), "align_steps=1.5 must be a positive int"),
        (lambda: Lisa(learning_rate=0.0), "learning_rate=0.0 must be a positive"),
        (lambda: Lisa(benign_fraction=2.0), r"benign_fraction=2.0 must be a number in \[0, 1\]"),
        (lambda: Lisa(warmup_steps=-1), "warmup_steps=-1 must be an int >= 0"),
        (lambda: RefusalLoss(alpha=float("nan")), "alpha=nan must be a finite number >= 0"),
        (lambda: RefusalLoss(batch_size=0), "batch_size=0 must be a positive int"),
    ],
)
def test_bad_settings_raise_one_clear_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_registered_as_constraint_defences():
    assert DEFENCES["lisa"] == ("constraint", Lisa) and DEFENCES["refusal-loss"] == ("constraint", RefusalLoss)
    assert {"rho", "finetune_steps", "align_steps", "warmup_steps"} <= set(defence_parameters("lisa"))
    with pytest.raises(ValueError, match=r"unknown kwarg\(s\) \['beta'\] for defence='refusal-loss'"):
        check_defence_kwargs("refusal-loss", {"beta": 1.0})
