"""The learning and scoring math on hand-worked numbers (GRPO's group advantages, PPO's GAE and clipped loss, the k3
KL estimate, response log-probs), and a few training steps that must move a simple reward, and the KL, the right way."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

import rlft_gym
from rlft_gym import generation
from rlft_gym.agent import Batch
from rlft_gym.agents.grpo import GRPO, group_advantages
from rlft_gym.agents.ppo import PPO, clipped_policy_loss, gae
from rlft_gym.baselines.kl import KLConstraint, k3_kl

torch.set_num_threads(1)  # as the other agent tests: fixed reduction order, so the few-step runs are reproducible

# --- GRPO group advantages -----------------------------------------------------------------------------------------

# groups [2, 2, 5] (mean 3, deviations -1 -1 2, std sqrt(6/3) = 1.41421356) and [0, 4, 2] (mean 2, deviations -2 2 0,
# std sqrt(8/3) = 1.63299316); "group" divides by std + 1e-4: 1 / 1.41431356 = 0.70705678, 2 / 1.63309316 = 1.22466988
REWARDS = [2.0, 2.0, 5.0, 0.0, 4.0, 2.0]


@pytest.mark.parametrize(
    "scale_rewards, expected",
    [
        ("none", [-1.0, -1.0, 2.0, -2.0, 2.0, 0.0]),
        ("group", [-0.70705678, -0.70705678, 1.41411357, -1.22466988, 1.22466988, 0.0]),
    ],
)
def test_group_advantages_by_hand(scale_rewards, expected):
    adv = group_advantages(np.array(REWARDS), group_size=3, scale_rewards=scale_rewards)
    np.testing.assert_allclose(adv, expected, rtol=1e-6, atol=1e-9)


# --- PPO: GAE and the clipped surrogate -----------------------------------------------------------------------------

# row 0 has 3 response tokens, row 1 has 2 (its last position is padding: reward 0 as PPO builds them, and a value of 9
# that must be ignored). Worked backwards from t = 2 with V_3 = 0, e.g. gamma 1, lam 0.95, row 0:
# A_2 = 1.0 + 0.4 = 1.4;  A_1 = (-0.2 - 0.4 - 0.2) + 0.95 * 1.4 = 0.53;  A_0 = (0.1 + 0.2 - 0.5) + 0.95 * 0.53 = 0.3035
# and with gamma 0.9, lam 1 the returns are the discounted rewards-to-go: R_0 = 0.1 - 0.9 * 0.2 + 0.81 * 1.0 = 0.73.
TOKEN_REWARDS = [[0.1, -0.2, 1.0], [0.0, 0.5, 0.0]]
VALUES = [[0.5, 0.2, -0.4], [0.3, 0.6, 9.0]]
MASK = [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]


@pytest.mark.parametrize(
    "gamma, lam, advantages, returns",
    [
        (1.0, 0.95, [[0.3035, 0.53, 1.4], [0.205, -0.1, 0.0]], [[0.8035, 0.73, 1.0], [0.505, 0.5, 0.0]]),
        (0.9, 1.0, [[0.23, 0.5, 1.4], [0.15, -0.1, 0.0]], [[0.73, 0.7, 1.0], [0.45, 0.5, 0.0]]),
    ],
)
def test_gae_by_hand(gamma, lam, advantages, returns):
    adv, ret = gae(torch.tensor(TOKEN_REWARDS), torch.tensor(VALUES), torch.tensor(MASK), gamma, lam)
    torch.testing.assert_close(adv, torch.tensor(advantages), rtol=0, atol=1e-6)
    torch.testing.assert_close(ret, torch.tensor(returns), rtol=0, atol=1e-6)
    assert adv[1, 2] == 0 and ret[1, 2] == 0  # the padding position


def test_clipped_policy_loss_by_hand():
    # ratios 1.5, 0.5, 1.5, 0.5 with advantages +1, +1, -1, -1 (cliprange 0.2), then a masked token that must not count:
    # per-token max(-A r, -A clip(r)) = -1.2 (clipped), -0.5, 1.5, 0.8 (clipped); mean 0.15, clip binds on 2 of 4
    old = torch.tensor([[-1.0, -2.0, -0.5, -1.5, -3.0]])
    logp = (old + torch.tensor([[1.5, 0.5, 1.5, 0.5, 7.0]]).log()).requires_grad_()
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0, 100.0]])
    loss, clipfrac = clipped_policy_loss(logp, old, advantages, torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]]), 0.2)
    assert loss.item() == pytest.approx(0.15, abs=1e-6) and clipfrac.item() == pytest.approx(0.5)
    loss.backward()
    # d/dlogp of -A r / 4 where unclipped: descent raises a positive-advantage token's log-prob, lowers a negative one's
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, -0.125, 0.375, 0.0, 0.0]]), rtol=0, atol=1e-6)


# --- the k3 KL estimate ---------------------------------------------------------------------------------------------

# p = (0.7, 0.2, 0.1), q = (0.2, 0.3, 0.5):  KL(p || q) = 0.7 ln 3.5 + 0.2 ln(2/3) + 0.1 ln 0.2 = 0.6348973
P, Q, EXACT_KL = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.2, 0.3, 0.5]), 0.6348973


def test_k3_expectation_under_p_is_the_exact_kl():
    # enumeration weighted by p: 7, 2 and 1 of 10 tokens, in a (2, 8) batch whose 6 padding positions hold junk
    tokens = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 1], [1, 2, 0, 0, 0, 0, 0, 0]])
    mask = torch.tensor([[1.0] * 8, [1.0, 1.0] + [0.0] * 6])
    junk = (1 - mask) * 5.0
    logp, ref_logp = P.log()[tokens] + junk, Q.log()[tokens] - junk
    assert k3_kl(logp, ref_logp, mask).item() == pytest.approx(EXACT_KL, abs=1e-6)
    # per token: r = q / p = 2/7, 1.5, 5  ->  r - ln r - 1 = 0.5384773, 0.0945349, 2.3905621 (each >= 0)
    per_token = [k3_kl(P[i].log().view(1), Q[i].log().view(1), torch.ones(1)).item() for i in range(3)]
    assert per_token == pytest.approx([0.5384773, 0.0945349, 2.3905621], abs=1e-6)
    assert k3_kl(logp, logp, mask).item() == 0.0
    # and on tokens sampled from p (200k draws: standard error about 0.002)
    drawn = torch.multinomial(P, 200_000, replacement=True, generator=torch.Generator().manual_seed(0)).view(1, -1)
    assert k3_kl(P.log()[drawn], Q.log()[drawn], torch.ones(drawn.shape)).item() == pytest.approx(EXACT_KL, abs=0.01)


def test_kl_constraint_loss_is_beta_times_k3():
    tokens = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 1, 1, 2]])
    mask = torch.ones(tokens.shape, dtype=torch.long)
    rollout = generation.Rollout(tokens, mask, 0, mask, [""])
    batch = Batch(rollout, P.log()[tokens], Q.log()[tokens], np.zeros(1), np.zeros(1))
    assert KLConstraint(2.0).loss(None, batch).item() == pytest.approx(2 * EXACT_KL, abs=1e-5)


# --- response log-probs ---------------------------------------------------------------------------------------------


def tiny_lm() -> tuple[GPT2LMHeadModel, PreTrainedTokenizerFast]:
    """A random 1-layer GPT-2 over 50 words (large init, so next-token distributions are far from uniform) and a
    whitespace tokenizer for it: ids 0 <pad>, 1 <eos>, then w0 ... w47."""
    words = ["<pad>", "<eos>"] + [f"w{i}" for i in range(48)]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>")
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=1,
        n_embd=16,
        n_head=2,
        vocab_size=50,
        n_positions=64,
        initializer_range=0.5,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
    )
    return GPT2LMHeadModel(config).eval(), tokenizer


def unpadded_logprobs(model: GPT2LMHeadModel, prompt: list[int], response: list[int]) -> torch.Tensor:
    """log p(response_t | prompt, response_<t) from a plain forward pass over the one unpadded sequence."""
    ids = torch.tensor([prompt + response])
    logp = model(input_ids=ids).logits[0].log_softmax(-1)
    return logp[len(prompt) - 1 : -1].gather(1, torch.tensor(response)[:, None]).squeeze(1)


PROMPTS = ["w3 w4 w5 w6", "w7", "w8 w9"]  # left-padded to 4 tokens


@torch.no_grad()
def test_response_logprobs_match_a_plain_forward_pass():
    model, tokenizer = tiny_lm()
    responses = [[12, 13, 14, 1], [15], [16, 17]]  # right-padded to 4 tokens
    rollout = generation.rollout_from_ids(tokenizer, PROMPTS, responses, ["", "", ""], "cpu")
    got = generation.response_logprobs(model, rollout)
    assert got.shape == (3, 4)
    for row, (prompt, response) in enumerate(zip(PROMPTS, responses)):
        expected = unpadded_logprobs(model, tokenizer(prompt)["input_ids"], response)
        torch.testing.assert_close(got[row, : len(response)], expected, rtol=0, atol=1e-5)
        assert (got[row, len(response) :] == 0).all()


@torch.no_grad()
def test_greedy_samples_are_the_argmax_their_logprobs_say(world):
    # the world's policy: prompts of different lengths (left padding), answers that stop at EOS at different lengths
    policy = world.load_policy(world.policy_path, "cpu").eval()
    prompts = [world.format_prompt(p) for p in world.attack_prompts.prompts[:8]]
    rollout = generation.sample(policy, world.tokenizer, prompts, max_new_tokens=20, greedy=True)
    got = generation.response_logprobs(policy, rollout)
    stopped = rollout.lengths < 20  # answers that ended with EOS before the limit
    assert len(set(rollout.lengths.tolist())) > 1 and stopped.sum() >= 4
    for row in range(len(prompts)):
        columns = slice(None, rollout.prompt_length)
        prompt = rollout.input_ids[row, columns][rollout.attention_mask[row, columns] == 1]
        length = int(rollout.lengths[row])
        response = rollout.response_ids[row, :length]
        full = policy(input_ids=torch.cat([prompt, response])[None]).logits[0, len(prompt) - 1 : -1].log_softmax(-1)
        assert response.tolist() == full.argmax(-1).tolist()  # the KV-cached sampler chose the full pass's argmax
        if stopped[row]:  # a sequence shorter than the limit ended with EOS
            assert response[-1] == world.tokenizer.eos_token_id
        torch.testing.assert_close(got[row, :length], full.max(-1).values, rtol=0, atol=1e-5)
        assert (got[row, length:] == 0).all()


def test_ppo_forward_logprobs_are_response_logprobs(world):
    agent = PPO(rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=4, max_new_tokens=8), mini_batch_size=4)
    rollout = agent.sample_groups(agent.prompts.prompts[:4], 1, 1.0)
    with torch.no_grad():
        logp, _ = agent.forward(rollout)
        torch.testing.assert_close(logp, generation.response_logprobs(agent.policy, rollout), rtol=0, atol=1e-5)


# --- learning direction: a few steps must raise a simple reward -----------------------------------------------------


def count_periods(texts: list[str]) -> np.ndarray:
    """The number of "." words in each response: a reward the tiny policy moves in a few steps (about 0.5 at start)."""
    return np.array([t.split().count(".") for t in texts], np.float32)


class PeriodReward(gym.vector.VectorWrapper):
    """The env with its reward replaced by `count_periods` of the responses."""

    def step(self, actions):
        obs, _, terminated, truncated, info = self.env.step(actions)
        return obs, count_periods(actions), terminated, truncated, info


def period_env(num_envs: int = 16) -> gym.vector.VectorEnv:
    """The tiny world's vector env, 8-token answers, rewarded by `count_periods`."""
    return PeriodReward(rlft_gym.make_vec("RPA-BeaverTails-v0", num_envs=num_envs, max_new_tokens=8))


@torch.no_grad()
def evaluate(agent: GRPO | PPO) -> tuple[float, float]:
    """Mean reward and mean per-token KL(policy || reference) over a fixed draw of 128 sampled responses."""
    prompts = [agent.world.format_prompt(p) for p in agent.prompts.prompts[:64]]
    rollout = generation.sample(
        agent.policy,
        agent.tokenizer,
        prompts,
        agent.max_new_tokens,
        generator=torch.Generator().manual_seed(123),
        num_samples=2,
    )
    mask = rollout.response_mask.float()
    policy, reference = (generation.response_logprobs(model, rollout) for model in (agent.policy, agent.reference))
    log_ratio = policy - reference
    return float(count_periods(rollout.texts).mean()), float((log_ratio * mask).sum() / mask.sum())


@pytest.fixture(scope="module")
def grpo_trained(world):
    """A GRPO agent after 3 steps on `PeriodReward`, with the evaluation before and after."""
    agent = GRPO(period_env(), group_size=8, learning_rate=1e-3, seed=0)
    before = evaluate(agent)
    return agent.learn(3), before, evaluate(agent)


def test_grpo_raises_the_reward(grpo_trained):
    _, (before, _), (after, _) = grpo_trained
    assert after > before + 0.5, (before, after)  # about 0.5 -> 2.5; minimising the reward would drive it to 0


def test_ppo_raises_the_reward(world):
    agent = PPO(period_env(), learning_rate=1e-3, mini_batch_size=8, ppo_epochs=2, seed=0)
    before, _ = evaluate(agent)
    after, _ = evaluate(agent.learn(3))
    assert after > before + 0.25, (before, after)  # about 0.5 -> 1.0


def test_kl_constraint_keeps_the_policy_near_the_reference(grpo_trained):
    _, _, (_, free_kl) = grpo_trained
    _, constrained_kl = evaluate(GRPO(period_env(), group_size=8, learning_rate=1e-3, beta=5.0, seed=0).learn(3))
    assert constrained_kl < 0.5 * free_kl, (constrained_kl, free_kl)  # about 0.15 vs 1.2
