"""Representation removal, the family the RPA paper (Rosati et al. 2024) writes as a projection g and a distance d:
train the model so that its hidden states h on harmful answers move to g(h) under d, while it keeps its behaviour on
retain data. Three published defences are three settings of the one loss below:

    RepNoise (Rosati et al. 2024)   g = Gaussian noise N(0, I)            d = MMD (5 Gaussian kernels, median width)
    RMU (Li et al. 2024, WMDP)      g = c * u / ||u||, u ~ U[0, 1)^d fixed d = mean squared error
    Circuit Breakers (Zou et al.)   g = the orthogonal complement of h0    d = ReLU(cos(h, h0)), h0 the frozen model's

One training step on a batch of defence pairs (a harmful request with a harmful answer and a refusal, from
`world.defence_dataset()`: prompts no attack, evaluation or held-out grading uses) and a batch of retain answers
(`world.retain_dataset()`, benign) minimises

    w_rm(t) * mean_l d(h_l(harmful answer), g)                removal, at each of `layers` (answer tokens only)
  - ascent_weight * log(1 + CE_lens(harmful answer))          RepNoise's bounded gradient ascent (logit lens)
  + refusal_weight * CE(refusal | prompt)                     the safe answer to the same prompt
  + retain_weight * CE(retain answer | prompt)                benign behaviour
  + w_ret(t) * mean_l MSE(h_l(retain), h0_l(retain))          benign representations kept (RMU, Circuit Breakers)

CE_lens averages the next-token loss of the logit lens (final norm and LM head applied to every decoder layer's
hidden state, the last one being the model's own logits), as RepNoise does. Hidden states are the decoder layers'
outputs (`output_hidden_states`, layer l = 1..n_layer), which keeps the code model-agnostic (RepNoise hooks the MLP
outputs and RMU one layer's output, both named for Llama). MMD compares the set of harmful answer tokens' hidden
states with as many noise draws (per token; RepNoise flattens whole padded sequences). With `schedule="reroute"`
(Circuit Breakers) w_rm(t) = removal_weight * (1 - t / 2 T) and w_ret(t) = representation_retain_weight * t / 2 T, as
the authors' code, whose hard-coded 300 against its 150 steps ends training at half of each; "constant" keeps both.

Defaults are scaled to the embedded world (2 layers, width 128; the papers' are for 7-8B models): each trains in
seconds to a minute on 2 CPU cores. `update_layers` restricts training to those decoder layers' MLP weights (RMU
updates the three layers up to its target; here layer 0's MLP under target layer 1); () trains every weight.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from rlft_gym.training import encode_responses
from rlft_gym.transform import Resume, Transform, draw_rows, optimize, save_defended
from rlft_gym.validate import require_full_model, require_int, require_non_negative, require_one_of, require_positive

PROJECTIONS = ("noise", "random-vector", "orthogonal")
DISTANCES = ("mmd", "mse", "cosine")
SCHEDULES = ("constant", "reroute")
# the distances each projection is defined with: orthogonality is measured by cosine, and cosine only means that
PAIRINGS = {"noise": ("mmd", "mse"), "random-vector": ("mse", "mmd"), "orthogonal": ("cosine",)}
KERNEL_WIDTHS = (0.25, 0.5, 1.0, 2.0, 4.0)  # multiples of the median squared distance (bandwidth multiplier 2)


def gaussian_mmd(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared MMD between samples x (n, d) and y (m, d) under a sum of Gaussian kernels whose widths are multiples
    of the pooled median squared distance (biased estimator: zero iff the samples' kernel means match)."""
    z = torch.cat([x, y])
    d2 = torch.cdist(z, z).pow(2)
    median = d2.detach()[d2.detach() > 0].median() if (d2.detach() > 0).any() else torch.tensor(1.0)
    k = sum(torch.exp(-d2 / (median * w)) for w in KERNEL_WIDTHS)
    n = len(x)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def rerouting_cosine(h: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """Mean ReLU(cos(h, h0)) over rows: zero once each hidden state is orthogonal to (or opposite) the frozen one."""
    return F.relu(F.cosine_similarity(h, h0, dim=-1)).mean()


def removal_distance(
    projection: str, distance: str, h: torch.Tensor, h0: torch.Tensor, control: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """d(h, g): harmful answer tokens' hidden states `h` (n, d) against the projection's target (`h0` the frozen
    model's, `control` RMU's fixed vector, `noise` n draws of N(0, I))."""
    if projection == "orthogonal":
        return rerouting_cosine(h, h0)
    target = noise if projection == "noise" else control.expand_as(h)
    return gaussian_mmd(h, target) if distance == "mmd" else F.mse_loss(h, target)


def final_norm(model: PreTrainedModel) -> torch.nn.Module:
    """The norm a causal LM applies before its head (GPT-2's ln_f, Llama's norm): the logit lens needs it."""
    base = model.base_model
    for attr in ("ln_f", "norm", "final_layernorm"):
        if hasattr(base, attr):
            return getattr(base, attr)
    raise ValueError(f"{type(model).__name__}: no final norm (ln_f / norm / final_layernorm) for the logit lens")


def logit_lens_ce(
    model: PreTrainedModel, hidden: tuple[torch.Tensor, ...], logits: torch.Tensor, labels
) -> torch.Tensor:
    """Mean next-token loss over the decoder layers read through the final norm and LM head (the last layer's logits
    are the model's own)."""
    norm, head = final_norm(model), model.get_output_embeddings()
    per_layer = [head(norm(h)) for h in hidden[1:-1]] + [logits]
    target = labels[:, 1:].reshape(-1)
    return torch.stack([F.cross_entropy(x[:, :-1].reshape(-1, x.size(-1)), target) for x in per_layer]).mean()


def mlp_parameters(model: PreTrainedModel, layers: tuple[int, ...]) -> list[torch.nn.Parameter]:
    """The MLP weights of decoder `layers` (names like `h.0.mlp.` or `layers.0.mlp.`)."""
    pattern = re.compile(r"\.(\d+)\.mlp\.")
    params = [p for n, p in model.named_parameters() if (m := pattern.search(n)) and int(m.group(1)) in layers]
    if not params:
        raise ValueError(f"update_layers={layers}: no MLP weights named '.<layer>.mlp.' in {type(model).__name__}")
    return params


def defence_inputs(
    name: str, world: Any, policy: str | Path
) -> tuple[list[dict[str, str]], list[dict[str, str]], PreTrainedModel]:
    """What the representation-removal and TAR transforms train from: the world's defence pairs and retain rows
    with formatted prompts, and the frozen starting model (`policy`) their retain and reference terms compare to."""
    require_full_model(name, world)
    pairs = [{**r, "prompt": world.format_prompt(r["prompt"])} for r in world.defence_dataset()]
    retain = [{**r, "prompt": world.format_prompt(r["prompt"])} for r in world.retain_dataset()]
    if not pairs or not retain:
        raise ValueError(f"{name}: the world has {len(pairs)} defence pairs and {len(retain)} retain rows")
    return pairs, retain, world.load_policy(policy, world.device).eval().requires_grad_(False)


@dataclass(frozen=True)
class RepresentationRemoval(Transform):
    """The representation-removal loss above with every knob explicit; `RepNoise`, `RMU` and `CircuitBreakers` are
    its published settings."""

    name: ClassVar[str] = "representation-removal"

    projection: str = "noise"
    distance: str = "mmd"
    layers: tuple[int, ...] = ()  # decoder layers (1-based hidden states) removal acts on; () = all
    update_layers: tuple[int, ...] = ()  # decoder layers (0-based) whose MLP weights train; () = every weight
    removal_weight: float = 1.0
    ascent_weight: float = 0.0
    refusal_weight: float = 0.0
    retain_weight: float = 1.0
    representation_retain_weight: float = 0.0
    steering_coefficient: float = 20.0  # c, the length of RMU's control vector
    schedule: str = "constant"
    steps: int = 100
    learning_rate: float = 1e-4
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        require_one_of("projection", self.projection, PROJECTIONS)
        if self.distance not in PAIRINGS[self.projection]:
            raise ValueError(
                f"distance={self.distance!r} does not go with projection={self.projection!r}; "
                f"allowed: {list(PAIRINGS[self.projection])}"
            )
        require_one_of("schedule", self.schedule, SCHEDULES)
        require_int(1, steps=self.steps, batch_size=self.batch_size)
        require_int(0, seed=self.seed)
        require_positive(learning_rate=self.learning_rate, steering_coefficient=self.steering_coefficient)
        require_non_negative(
            removal_weight=self.removal_weight,
            ascent_weight=self.ascent_weight,
            refusal_weight=self.refusal_weight,
            retain_weight=self.retain_weight,
            representation_retain_weight=self.representation_retain_weight,
        )
        for layer in (*self.layers, *self.update_layers):
            require_int(0, layer=layer)

    def weights(self, step: int) -> tuple[float, float]:
        """(removal, representation-retain) coefficients at `step`: constant, or Circuit Breakers' linear hand-over."""
        if self.schedule == "constant":
            return self.removal_weight, self.representation_retain_weight
        t = step / (2 * self.steps)
        return self.removal_weight * (1 - t), self.representation_retain_weight * t

    def removal_layers(self, n_layer: int) -> tuple[int, ...]:
        """The hidden-state layers removal acts on (1..n_layer), checked against the model."""
        layers = self.layers or tuple(range(1, n_layer + 1))
        bad = [layer for layer in layers if not 1 <= layer <= n_layer]
        if bad:
            raise ValueError(f"layers={self.layers} has {bad}; the model's decoder layers are 1..{n_layer}")
        return layers

    def loss(
        self,
        model: PreTrainedModel,
        frozen: PreTrainedModel,
        tokenizer: Any,
        pairs: list[dict[str, str]],
        retain: list[dict[str, str]],
        control: torch.Tensor,
        step: int,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The step's total loss (see the module docstring) on formatted `pairs` and `retain` rows, and its terms."""
        device = next(model.parameters()).device
        w_rm, w_ret = self.weights(step)
        prompts = [r["prompt"] for r in pairs]
        ids, mask, labels = encode_responses(tokenizer, prompts, [r["harmful"] for r in pairs], True, device)
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        layers = self.removal_layers(len(out.hidden_states) - 1)
        answer = labels != -100
        h0 = out.hidden_states  # only rerouting reads the frozen model's states on harmful answers
        if self.projection == "orthogonal":
            with torch.no_grad():
                h0 = frozen(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        noise = torch.randn(int(answer.sum()), out.hidden_states[0].size(-1), device=device)
        removal = torch.stack(
            [
                removal_distance(
                    self.projection, self.distance, out.hidden_states[i][answer], h0[i][answer], control, noise
                )
                for i in layers
            ]
        ).mean()
        terms = {"removal": removal}
        total = w_rm * removal
        if self.ascent_weight:
            terms["harmful_ce"] = logit_lens_ce(model, out.hidden_states, out.logits, labels)
            total = total - self.ascent_weight * torch.log1p(terms["harmful_ce"])
        if self.refusal_weight:
            r_ids, r_mask, r_labels = encode_responses(tokenizer, prompts, [r["refusal"] for r in pairs], True, device)
            terms["refusal_ce"] = model(input_ids=r_ids, attention_mask=r_mask, labels=r_labels).loss
            total = total + self.refusal_weight * terms["refusal_ce"]
        if self.retain_weight or w_ret:
            k_ids, k_mask, k_labels = encode_responses(
                tokenizer, [r["prompt"] for r in retain], [r["response"] for r in retain], True, device
            )
            kept = model(input_ids=k_ids, attention_mask=k_mask, labels=k_labels, output_hidden_states=True)
            terms["retain_ce"] = kept.loss
            total = total + self.retain_weight * kept.loss
            if w_ret:
                with torch.no_grad():
                    k0 = frozen(input_ids=k_ids, attention_mask=k_mask, output_hidden_states=True).hidden_states
                where = k_mask == 1
                terms["retain_representation"] = torch.stack(
                    [F.mse_loss(kept.hidden_states[i][where], k0[i][where]) for i in layers]
                ).mean()
                total = total + w_ret * terms["retain_representation"]
        return total, {k: float(v.detach()) for k, v in terms.items()}

    def control_vector(self, width: int) -> torch.Tensor:
        """RMU's fixed control vector c * u / ||u||, u ~ U[0, 1)^width drawn from the seed alone."""
        u = torch.rand(width, generator=torch.Generator().manual_seed(self.seed))
        return self.steering_coefficient * u / u.norm()

    def train(
        self, env: gym.Env | gym.vector.VectorEnv, policy: str | Path, out: Path, resume: Resume, progress: bool
    ) -> dict[str, Any]:
        world = env.unwrapped.world
        pairs, retain, frozen = defence_inputs(self.name, world, policy)
        control = self.control_vector(frozen.get_input_embeddings().embedding_dim).to(world.device)
        last: dict[str, float] = {}

        def backward_at(model: PreTrainedModel, step: int) -> float:
            total, terms = self.loss(
                model,
                frozen,
                world.tokenizer,
                draw_rows(pairs, self.batch_size, self.seed, step),
                draw_rows(retain, self.batch_size, self.seed + 1, step),
                control,
                step,
            )
            total.backward()
            last.update(terms)
            return float(total.detach())

        def trainable(model: PreTrainedModel) -> list[torch.nn.Parameter]:
            return mlp_parameters(model, self.update_layers) if self.update_layers else list(model.parameters())

        model, loss, start = optimize(
            self.name,
            world,
            policy,
            resume,
            self.steps,
            self.learning_rate,
            backward_at,
            progress,
            self.seed,
            trainable,
        )
        save_defended(model, world, out)
        return {"final_loss": loss, **{f"final_{k}": v for k, v in last.items()}, "resumed_from_step": start}


@dataclass(frozen=True)
class RepNoise(RepresentationRemoval):
    """RepNoise: harmful representations toward Gaussian noise (MMD), bounded gradient ascent on harmful answers,
    refusals and retain answers kept. The paper's alpha 1 (ascent); its beta 0.001 weighs an MMD over 4096-wide
    flattened sequences, ours is per token at width 128, so beta is 1 here; lr 1e-4 as the authors' demo."""

    name: ClassVar[str] = "repnoise"

    projection: str = "noise"
    distance: str = "mmd"
    removal_weight: float = 1.0
    ascent_weight: float = 1.0
    refusal_weight: float = 1.0
    retain_weight: float = 1.0


@dataclass(frozen=True)
class RMU(RepresentationRemoval):
    """RMU: one layer's harmful activations steered to a fixed random control vector of length c (MSE), retain
    activations held to the frozen model's (alpha 100 in the paper; the MSE's scale at our width makes 10 enough),
    only the MLPs below the target layer trained. Target layer 1 of 2 (the paper: 7 of 32)."""

    name: ClassVar[str] = "rmu"

    projection: str = "random-vector"
    distance: str = "mse"
    layers: tuple[int, ...] = (1,)
    update_layers: tuple[int, ...] = (0,)
    removal_weight: float = 1.0
    retain_weight: float = 0.0
    representation_retain_weight: float = 10.0
    steering_coefficient: float = 20.0


@dataclass(frozen=True)
class CircuitBreakers(RepresentationRemoval):
    """Circuit Breakers (representation rerouting): harmful hidden states pushed orthogonal to the frozen model's
    (ReLU cosine) while retain hidden states are held to the frozen model's, on the authors' linear schedule, lr 1e-4
    constant. Full-parameter (the authors train LoRA adapters, which bounds how far the model moves): with the
    paper's alpha 10 on the removal term the embedded model broke before any attack (perplexity 2.9 -> 26.9, judge
    harm 0.45 on word salad), so removal is weighted 1, the retain representations 10, plus the retain answers' CE
    (weight 1), which left capability and perplexity at the aligned policy's (0.64, 3.2) with judge harm 0.05."""

    name: ClassVar[str] = "circuit-breakers"

    projection: str = "orthogonal"
    distance: str = "cosine"
    removal_weight: float = 1.0
    retain_weight: float = 1.0
    representation_retain_weight: float = 10.0
    schedule: str = "reroute"
