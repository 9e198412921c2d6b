r"""Causal Transformer (Melnychuk, Frauen, Feuerriegel, ICML 2022), compact.

History :math:`H_t = (x_{\le t}, T_{<t}, y_{<t})`, aligned so that position :math:`t` of
each of three sub-sequences holds :math:`x_t`, :math:`T_{t-1}` and :math:`y_{t-1}` (zeros at
:math:`t = 0`). Three transformer subnetworks, one per sub-sequence, each layer:

.. math::

    a^{(s)} &\leftarrow \mathrm{LN}(a^{(s)} + \mathrm{SelfAttn}(a^{(s)})) \\
    a^{(s)} &\leftarrow \mathrm{LN}\Bigl(a^{(s)} + \tfrac12 \textstyle\sum_{s' \ne s}
        \mathrm{CrossAttn}(a^{(s)}, a^{(s')})\Bigr) \\
    a^{(s)} &\leftarrow \mathrm{LN}(a^{(s)} + \mathrm{FFN}(a^{(s)}))

for :math:`s \in \{x, T, y\}`. Every attention is causal (position :math:`t` reads positions
:math:`\le t` only) and adds a learnable relative position bias per head, clipped at
``max_distance`` steps (the paper uses Shaw et al.'s relative encodings of keys and values; a
bias is the cheaper variant of the same idea). The representation is the
average of the three streams through a fully connected layer,
:math:`\Phi_t = \mathrm{ELU}(W \bar a_t)`, and :math:`\hat y_t = g(\Phi_t, T_t)`.

Balancing by counterfactual domain confusion (CDC, paper eq. 9-10, adapted). A treatment
head :math:`q(T_t \mid \Phi_t)` is trained on detached representations to predict the
treatment; the representation is trained, with the head held fixed, to make the head
maximally confused:

.. math::

    L_q = -\log q(T_t \mid \mathrm{sg}[\Phi_t]), \qquad
    L_\Phi = \lVert y_t - \hat y_t \rVert^2 + \alpha\,\lambda(p)\,
        \mathrm{KL}\bigl(q(\cdot \mid \Phi_t) \,\|\, N(0, 1)\bigr)

Continuous-treatment adaptation (ours; CT is written for categorical treatments, where
confusion is the cross-entropy towards the uniform distribution over treatments): the head
is Gaussian, :math:`q = N(\mu(\Phi_t), \sigma^2(\Phi_t))`, and confusion pushes it towards the
marginal treatment distribution, which is :math:`N(0, 1)` for the scaled treatment. The
weight ramps as :math:`\lambda(p) = 2 / (1 + e^{-10 p}) - 1` with training progress.

Training uses teacher forcing (factual :math:`y_{<t}`), as in the paper. ``predict`` has no
observed outcomes, so it rolls out: :math:`\hat y_t` is computed from the predictions
:math:`\hat y_{<t}` under the same treatment path; every effect is the difference of two such
rollouts. Validation, and so early stopping and the weights kept, scores that rollout (the
factual MSE of :meth:`CausalTransformerNet.rollout` on the held-out units), not the
teacher-forced fit: a model is kept for the predictions it is asked for. Departures: no
exponential moving average of weights; one cross-attention module per stream shared by its two
partner streams; a representation from the three streams only (no separate static-feature
input; static covariates travel in ``X``).

Forecasts under a plan (``forecast_steps > 0``). Given a history of ``k`` steps and a plan of
``h <= forecast_steps`` more, the covariate stream has no token for the plan steps: a learned
"unobserved" embedding stands in for :math:`x_s`, :math:`s > k`, while the treatment stream
reads the plan and the outcome stream the observed outcomes, then the model's own predictions,
fed back step by step as in the paper's multi-step prediction. Training teaches it: each
unit's last ``m`` covariate tokens of a batch, ``m`` drawn uniformly from
``0..forecast_steps``, are replaced by the same embedding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn
from torch.func import functional_call

from kgcm.errors import ConfigError
from kgcm.estimators._recurrent import (
    GaussianHead,
    NeuralSequenceEstimator,
    PlanForecasts,
    autoregressive_rollout,
    dann_schedule,
    gaussian_log_density,
    mlp,
    plan_covariates,
    rollout_val_fn,
    shift_right,
)
from kgcm.estimators.training import TrainingConfig

__all__ = ["CausalTransformer"]


class RelativeCausalAttention(nn.Module):
    r"""Multi-head attention with a causal mask and a learned, clipped relative position bias.

    .. math::

        e_{ij} = \frac{q_i \cdot k_j}{\sqrt{d_h}} + b_{c(i-j)}, \quad
        o_i = \sum_{j \le i} \mathrm{softmax}_j(e_{ij})\, v_j, \quad c(d) = \min(d, D)

    one bias :math:`b` per head and clipped distance :math:`D` = ``max_distance``.
    ``forward(query (n, s, d), memory (n, s, d))`` returns ``(n, s, d)``.
    """

    def __init__(self, d_model: int, n_heads: int, max_distance: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.max_distance = max_distance
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.rel_bias = nn.Parameter(torch.zeros(n_heads, max_distance + 1))
        self.dropout = dropout

    def bias(self, steps: int, device: torch.device) -> torch.Tensor:
        """Additive attention mask ``(n_heads, steps, steps)``: relative bias, -inf ahead."""
        pos = torch.arange(steps, device=device)
        distance = pos[:, None] - pos[None, :]  # i - j
        bias = self.rel_bias[:, distance.clamp(0, self.max_distance)]
        return bias.masked_fill(distance < 0, float("-inf"))  # no looking ahead

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        n, s, d = query.shape
        q = self.q(query).view(n, s, self.n_heads, self.d_head).transpose(1, 2)
        k, v = (
            a.view(n, s, self.n_heads, self.d_head).transpose(1, 2)
            for a in self.kv(memory).chunk(2, dim=-1)
        )
        o = nn.functional.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=self.bias(s, query.device),
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out(o.transpose(1, 2).reshape(n, s, d))


class StreamLayer(nn.Module):
    """One layer of one subnetwork: causal self-attention, cross-attention to the two other
    streams, feed-forward; post-norm residuals."""

    def __init__(self, d_model: int, n_heads: int, max_distance: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = RelativeCausalAttention(d_model, n_heads, max_distance, dropout)
        self.cross_attn = RelativeCausalAttention(d_model, n_heads, max_distance, dropout)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, 2 * d_model), nn.ELU(), nn.Dropout(dropout),
            nn.Linear(2 * d_model, d_model),
        )  # fmt: skip
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(3))

    def forward(self, a: torch.Tensor, others: list[torch.Tensor]) -> torch.Tensor:
        a = self.norms[0](a + self.self_attn(a, a))
        cross = sum(self.cross_attn(a, o) for o in others) / len(others)
        a = self.norms[1](a + cross)
        return self.norms[2](a + self.ffn(a))


class CausalTransformerNet(nn.Module):
    """Three causal subnetworks (covariates, past treatments, past outcomes) and heads."""

    def __init__(
        self,
        *,
        n_inputs: int,
        d_model: int,
        n_heads: int,
        n_layers: int,
        max_distance: int,
        rep_dim: int,
        dropout: float,
        forecast: bool = False,
    ) -> None:
        super().__init__()
        self.embed = nn.ModuleList(
            [nn.Linear(n_inputs, d_model), nn.Linear(1, d_model), nn.Linear(1, d_model)]
        )
        # the covariate token of a step whose covariates are not observed (a forecast's plan)
        self.unseen = nn.Parameter(torch.zeros(d_model)) if forecast else None
        self.layers = nn.ModuleList(
            nn.ModuleList(StreamLayer(d_model, n_heads, max_distance, dropout) for _ in range(3))
            for _ in range(n_layers)
        )
        self.to_rep = nn.Linear(d_model, rep_dim)
        self.outcome = mlp([rep_dim + 1, d_model, 1], dropout)
        self.treatment_head = GaussianHead(rep_dim, d_model)

    def represent(
        self,
        x: torch.Tensor,
        t_prev: torch.Tensor,
        y_prev: torch.Tensor,
        seen: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Φ ``(n, s, rep_dim)`` from x ``(n, s, p)``, T_{t-1} and y_{t-1} (each ``(n, s)``);
        where ``seen`` ``(n, s)`` is False the covariates are unobserved (their token is the
        learned ``unseen`` embedding)."""
        x_tokens = self.embed[0](x)
        if seen is not None:
            assert self.unseen is not None
            x_tokens = torch.where(seen.unsqueeze(-1), x_tokens, self.unseen)
        streams = [
            x_tokens,
            self.embed[1](t_prev.unsqueeze(-1)),
            self.embed[2](y_prev.unsqueeze(-1)),
        ]
        for layer in self.layers:
            streams = [
                block(streams[i], [streams[j] for j in range(3) if j != i])
                for i, block in enumerate(layer)
            ]
        return nn.functional.elu(self.to_rep(torch.stack(streams).mean(0)))

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, seen: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced pass: ``(Phi (n, s, rep_dim), y_hat (n, s))`` from factual ``y``."""
        phi = self.represent(x, shift_right(t), shift_right(y), seen)
        return phi, self.head(phi, t)

    def head(self, phi: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.outcome(torch.cat([phi, t.unsqueeze(-1)], dim=-1)).squeeze(-1)

    def rollout(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Whole-window prediction under path ``t`` feeding back ŷ: ``(n, s)``."""

        def step(s: int, y_feed: torch.Tensor) -> torch.Tensor:
            y_prev = torch.cat([torch.zeros_like(t[:, :1]), y_feed], dim=1)
            t_prev = shift_right(t[:, : s + 1])
            phi = self.represent(x[:, : s + 1], t_prev, y_prev)
            return self.head(phi[:, s], t[:, s])

        return autoregressive_rollout(step, t)

    def forecast(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Outcomes on the plan steps ``(n, h)`` from a history x ``(n, k, p)``, y ``(n, k)``
        and a path t ``(n, k + h)``: no covariate token after step k, predictions fed back."""
        n, k = y.shape
        total = t.shape[1]
        x_all, seen = plan_covariates(x, total)
        y_all = torch.cat([y, y.new_zeros(n, total - k)], dim=1)
        t_prev = shift_right(t)
        for s in range(k, total):  # sequential in the plan steps; every unit moves together
            phi = self.represent(
                x_all[:, : s + 1], t_prev[:, : s + 1], shift_right(y_all[:, : s + 1]),
                seen[:, : s + 1],
            )  # fmt: skip
            y_all[:, s] = self.head(phi[:, s], t[:, s])
        return y_all[:, k:]


class CausalTransformer(PlanForecasts, NeuralSequenceEstimator):
    """Causal Transformer with CDC balancing for a continuous, time-varying treatment.

    Parameters
    ----------
    seed : int
        Seeds initialisation, splits and batches.
    d_model : int
        Width of each subnetwork (a multiple of ``n_heads``).
    n_heads : int
        Attention heads.
    n_layers : int
        Layers per subnetwork.
    max_distance : int
        Clipping distance of the relative positional encodings (steps).
    rep_dim : int
        Size of the balanced representation Φ_t.
    confusion_weight : float
        α, weight of the CDC confusion loss (0: no balancing).
    dropout : float
        Dropout in attention, feed-forward layers and the outcome head.
    n_ensemble : int
        Independently seeded models; effects are their mean (member spread as intervals).
    forecast_steps : int
        0 (default): the model reads the covariates of every step and refuses forecasts under
        a plan. ``h > 0``: it is also trained to do without the covariates of a window's last
        ``0..h`` steps (module docstring), and forecasts up to ``h`` steps past a history.
    training : TrainingConfig or dict, optional
        Settings of the shared training loop.

    Attributes
    ----------
    models_ : list of CausalTransformerNet
    history_ : list of dict
        Per epoch: ``train_outcome`` (teacher-forced MSE), ``train_treatment`` (head NLL),
        ``train_confusion`` (KL to the marginal), ``train_alpha``, ``train_total``,
        ``val_loss`` (MSE of the whole-window rollout on the validation units, scaled units;
        the criterion of early stopping).
    """

    name: ClassVar[str] = "causal-transformer"
    #: fast settings for the test suite (about a second a fit)
    test_params: ClassVar[dict[str, Any]] = {
        "d_model": 8,
        "rep_dim": 4,
        "max_distance": 4,
        "training": {"max_epochs": 3, "progress": False},
    }
    tags: ClassVar[dict[str, bool]] = {
        **NeuralSequenceEstimator.tags,
        "forecast": True,  # with forecast_steps > 0
    }
    _label: ClassVar[str] = "CT"
    _ramps_with_progress: ClassVar[bool] = True  # λ(p) of the confusion weight
    _positive_ints: ClassVar[tuple[str, ...]] = (
        "d_model",
        "n_heads",
        "n_layers",
        "max_distance",
        "rep_dim",
        "n_ensemble",
    )
    _nonnegative: ClassVar[tuple[str, ...]] = ("confusion_weight", "dropout")

    def __init__(
        self,
        *,
        seed: int = 0,
        d_model: int = 32,
        n_heads: int = 2,
        n_layers: int = 1,
        max_distance: int = 15,
        rep_dim: int = 16,
        confusion_weight: float = 0.1,
        dropout: float = 0.0,
        n_ensemble: int = 1,
        forecast_steps: int = 0,
        training: TrainingConfig | Mapping[str, Any] | None = None,
    ) -> None:
        self.seed = seed
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.max_distance = max_distance
        self.rep_dim = rep_dim
        self.confusion_weight = confusion_weight
        self.dropout = dropout
        self.n_ensemble = n_ensemble
        self.forecast_steps = forecast_steps
        self.training = training

    def _check_params(self) -> TrainingConfig:
        training = super()._check_params()
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"d_model must be a multiple of n_heads; got d_model={self.d_model} and "
                f"n_heads={self.n_heads}. Use e.g. d_model={self.n_heads * 16}."
            )
        self._check_forecast_steps()
        return training

    def _build(self) -> CausalTransformerNet:
        return CausalTransformerNet(
            n_inputs=self.n_inputs_,
            d_model=self.d_model,
            n_heads=self.n_heads,
            n_layers=self.n_layers,
            max_distance=self.max_distance,
            rep_dim=self.rep_dim,
            dropout=self.dropout,
            forecast=self.forecast_steps > 0,
        )

    def _loss_fn(self, net: CausalTransformerNet):
        head = net.treatment_head

        def loss_fn(batch: dict[str, torch.Tensor], epoch: int):
            x, t, y = batch["x"], batch["t"], batch["y"]
            phi, y_hat = net(x, t, y, self._training_seen(x))
            outcome = (y_hat - y).pow(2).mean()
            loss, parts = outcome, {"outcome": outcome.item()}
            if self.confusion_weight:
                # the head learns the treatment from detached representations ...
                nll = -gaussian_log_density(t, *head(phi.detach())).mean()
                # ... and the representation confuses the head, whose weights are held fixed
                frozen = {k: v.detach() for k, v in head.named_parameters()}
                mean, logvar = functional_call(head, frozen, (phi,))
                confusion = 0.5 * (logvar.exp() + mean.pow(2) - 1.0 - logvar).mean()
                alpha = self.confusion_weight * dann_schedule(self._progress(epoch))
                loss = loss + nll + alpha * confusion
                parts.update(treatment=nll.item(), confusion=confusion.item(), alpha=alpha)
            parts["total"] = loss.item()
            return loss, parts

        return loss_fn

    @staticmethod
    def _val_fn(net: CausalTransformerNet):
        # the prediction effects are made of: no observed outcome is read, ŷ is fed back
        return rollout_val_fn(net.rollout)

    def _predict_member(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert isinstance(net, CausalTransformerNet)
        return net.rollout(x, t)

    def _forecast_member(
        self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        assert isinstance(net, CausalTransformerNet)
        return net.forecast(x, y, t)
