r"""The paper's own baselines: R-CRN, CF-RNN and TS-TARNet, made correct.

The KGCM-VAE notebooks compare against three small recurrent models, "R-CRN", "CF-RNN" and
"TS-TARNet" (later Baseline1/2/3): a GRU or LSTM encoder, a treatment head, and an MMD penalty
on hidden states between steps with the treatment above and below its median. This module
keeps that description and fixes the flaw the notebooks share: there the factual treatment
and its lag sat in the covariates, so a counterfactual query changed only a side input. Here
the encoder reads the covariates only, and the treatment enters through one path that a
counterfactual replaces whole: its current value and a learned causal filter of its history.

Model, per unit and step :math:`t`:

.. math::

    h_t &= \mathrm{RNN}(x_t, h_{t-1}) \quad \text{(forward GRU or LSTM over covariates)} \\
    e_t &= [\,W T_t,\ \textstyle\sum_{l<K} w_l T_{t-l}\,] \quad \text{(treatment features)} \\
    \hat y_t &= f(h_t, e_t), \qquad T_t \mid h_t \sim N(\mu(h_t), \sigma^2(h_t))
    \quad \text{(treatment head)}

Loss (scaled units, averaged over steps):

.. math::

    L = \lVert y - \hat y \rVert^2 + \alpha\, L_T + \lambda\, \mathrm{MMD}^2(h^{T > m},
        h^{T \le m})

with :math:`m` the training median of the treatment and :math:`L_T` the treatment head's
Gaussian negative log-likelihood, used in one of three ways (``treatment_head``):

- ``"adversarial"`` (R-CRN): through a gradient-reversal layer, so the head learns to predict
  :math:`T_t` and the encoder learns to make that impossible (CRN-style balancing);
- ``"auxiliary"`` (CF-RNN): multitask, the encoder also learns to predict the treatment
  (keeps confounder information in :math:`h`; the MMD term pulls the other way);
- ``"detached"`` (TS-TARNet): the head learns a propensity model on a detached :math:`h` and
  does not shape the representation (TARNet has no propensity loss).

Outcome heads (``outcome_head``): ``"concat"`` is an MLP of :math:`[h_t, e_t]`; ``"two-head"``
is TARNet's pair of heads for treated and control, made continuous for a continuous treatment
by a smooth gate :math:`\pi(T) = \sigma((T_t - m) / 0.25)` (scaled units):
:math:`\hat y_t = (1 - \pi) f_0(h_t, e_t) + \pi f_1(h_t, e_t)`.

Effects: :math:`\hat\tau_t = f(h_t, e_t(T^1)) - f(h_t, e_t(T^0))`; :math:`h` depends on the
covariates only.

Forecasts under a plan (``forecast_steps = h > 0``), as the Causal Transformer makes them: the
encoder is also trained without the covariates of each window's last ``m`` steps, ``m`` uniform
in ``0..h``, a learned stand-in vector (in scaled covariate units, starting at their mean)
taking their place. Given a history of ``k`` steps and a plan of at most ``h`` more, the
encoder reads the history's covariates and then the stand-in, the outcome head the plan's
treatments (current value and history filter); no outcome is read, so ``Y`` is optional
(without covariates, an ``X`` of shape ``(n, k, 0)`` or ``Y`` marks where the history ends).

The notebooks' exact layer sizes and loss weights are not public beyond this description;
the choices of cell, treatment-head use and outcome head per model are ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partialmethod
from typing import Any, ClassVar

import torch
from torch import nn

from kgcm.estimators._recurrent import (
    GaussianHead,
    NeuralSequenceEstimator,
    PlanForecasts,
    TreatmentFeatures,
    gaussian_log_density,
    grad_reverse,
    group_mmd,
    mlp,
    plan_covariates,
)
from kgcm.estimators.training import TrainingConfig
from kgcm.losses import warmup

__all__ = ["CFRNN", "RCRN", "TSTARNet"]

_GATE_WIDTH = 0.25  # width of TS-TARNet's soft treated/control gate, in treatment sds


class PaperBaselineNet(nn.Module):
    """Covariate encoder, treatment features, treatment head and outcome head(s)."""

    def __init__(
        self,
        *,
        n_inputs: int,
        cell: str,
        hidden: int,
        treatment_embedding: int,
        history: int,
        outcome_head: str,
        dropout: float,
        threshold: float,
        forecast: bool = False,
    ) -> None:
        super().__init__()
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(n_inputs, hidden, batch_first=True)
        self.treatment = TreatmentFeatures(treatment_embedding, history)
        self.treatment_head = GaussianHead(hidden, hidden)
        d = hidden + 2 * treatment_embedding
        n_heads = 2 if outcome_head == "two-head" else 1
        self.heads = nn.ModuleList(mlp([d, hidden, hidden, 1], dropout) for _ in range(n_heads))
        self.threshold = threshold
        # the covariates of a step that are not observed (a forecast's plan), scaled units
        self.unseen = nn.Parameter(torch.zeros(n_inputs)) if forecast else None

    def represent(self, x: torch.Tensor, seen: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states ``(n, s, hidden)`` from covariates ``(n, s, p)`` (causal); where
        ``seen`` ``(n, s)`` is False the covariates are the learned ``unseen`` stand-in."""
        if seen is not None:
            assert self.unseen is not None
            x = torch.where(seen.unsqueeze(-1), x, self.unseen)
        return self.rnn(x)[0]

    def forecast(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Outcomes on the plan steps ``(n, h)`` from a history x ``(n, k, p)`` and a path
        t ``(n, k + h)``: the stand-in replaces the covariates after step k."""
        h = self.represent(*plan_covariates(x, t.shape[1]))
        return self.outcome(h, t)[:, x.shape[1] :]  # the treatment filter reads the history's T too

    def outcome(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``y_hat (n, s)`` from hidden states and the treatment path ``t (n, s)``."""
        inputs = torch.cat([h, self.treatment(t)], dim=-1)
        if len(self.heads) == 1:
            return self.heads[0](inputs).squeeze(-1)
        gate = torch.sigmoid((t - self.threshold) / _GATE_WIDTH)
        y0, y1 = (head(inputs).squeeze(-1) for head in self.heads)
        return (1.0 - gate) * y0 + gate * y1


class _PaperBaseline(PlanForecasts, NeuralSequenceEstimator):
    """Shared estimator of the three paper baselines (see the module docstring).

    Parameters
    ----------
    seed : int
        Seeds initialisation, splits and batches. Same seed, same numbers.
    hidden : int
        Width of the recurrent encoder and of the heads.
    treatment_embedding : int
        Width of the treatment embedding and of the history filter bank.
    history : int
        Steps of treatment history the outcome head sees (causal filter length K).
    cell : {"gru", "lstm"}
        Recurrent cell of the covariate encoder.
    treatment_head : {"adversarial", "auxiliary", "detached"}
        How the treatment head's loss reaches the encoder.
    outcome_head : {"concat", "two-head"}
        One MLP, or TARNet's soft-gated pair of heads.
    treatment_weight : float
        α, weight of the treatment head's loss (0 switches the head off).
    mmd_weight : float
        λ, weight of the MMD between above- and below-median hidden states (0: off).
    mmd_warmup : int
        Epochs of linear warm-up of λ.
    dropout : float
        Dropout in the outcome head(s).
    n_ensemble : int
        Independently seeded models (seed, seed+1, ...); effects are their mean and, with 2
        or more, ``effect_interval`` gives the member spread.
    forecast_steps : int
        0 (default): the encoder reads the covariates of every step and forecasts under a plan
        are refused. ``h > 0``: it is also trained to do without the covariates of a window's
        last ``0..h`` steps (module docstring), and forecasts up to ``h`` steps past a history.
    training : TrainingConfig or dict, optional
        Settings of the shared training loop.

    Attributes
    ----------
    models_ : list of PaperBaselineNet
    history_, histories_ : per-epoch records (``train_outcome``, ``train_treatment``,
        ``train_mmd``, ``train_total``, ``val_loss``, ...) of the first / every member.
    threshold_ : float
        Median of the scaled training treatment (MMD groups, TS-TARNet's gate).
    """

    tags: ClassVar[dict[str, bool]] = {
        **NeuralSequenceEstimator.tags,
        "forecast": True,  # with forecast_steps > 0
    }
    #: no outcome input: a forecast's ``Y`` is optional and not read
    _forecast_reads_outcomes: ClassVar[bool] = False
    #: fast settings for the test suite (about a second a fit), shared by the three
    test_params: ClassVar[dict[str, Any]] = {
        "hidden": 8,
        "history": 3,
        "treatment_embedding": 4,
        "training": {"max_epochs": 3, "progress": False},
    }
    _positive_ints: ClassVar[tuple[str, ...]] = (
        "hidden",
        "treatment_embedding",
        "history",
        "n_ensemble",
    )
    _nonnegative: ClassVar[tuple[str, ...]] = (
        "treatment_weight",
        "mmd_weight",
        "mmd_warmup",
        "dropout",
    )
    _choices: ClassVar[dict[str, tuple[str, ...]]] = {
        "cell": ("gru", "lstm"),
        "treatment_head": ("adversarial", "auxiliary", "detached"),
        "outcome_head": ("concat", "two-head"),
    }

    def __init__(
        self,
        *,
        seed: int = 0,
        hidden: int = 32,
        treatment_embedding: int = 8,
        history: int = 14,
        cell: str = "gru",
        treatment_head: str = "auxiliary",
        outcome_head: str = "concat",
        treatment_weight: float = 0.1,
        mmd_weight: float = 0.1,
        mmd_warmup: int = 10,
        dropout: float = 0.0,
        n_ensemble: int = 1,
        forecast_steps: int = 0,
        training: TrainingConfig | Mapping[str, Any] | None = None,
    ) -> None:
        self.seed = seed
        self.hidden = hidden
        self.treatment_embedding = treatment_embedding
        self.history = history
        self.cell = cell
        self.treatment_head = treatment_head
        self.outcome_head = outcome_head
        self.treatment_weight = treatment_weight
        self.mmd_weight = mmd_weight
        self.mmd_warmup = mmd_warmup
        self.dropout = dropout
        self.n_ensemble = n_ensemble
        self.forecast_steps = forecast_steps
        self.training = training

    def _check_params(self) -> TrainingConfig:
        training = super()._check_params()
        self._check_forecast_steps()
        return training

    def _build(self) -> PaperBaselineNet:
        return PaperBaselineNet(
            n_inputs=self.n_inputs_,
            cell=self.cell,
            hidden=self.hidden,
            treatment_embedding=self.treatment_embedding,
            history=self.history,
            outcome_head=self.outcome_head,
            dropout=self.dropout,
            threshold=self.threshold_,
            forecast=self.forecast_steps > 0,
        )

    def _loss_fn(self, net: PaperBaselineNet):
        def loss_fn(batch: dict[str, torch.Tensor], epoch: int):
            x, t, y = batch["x"], batch["t"], batch["y"]
            h = net.represent(x, self._training_seen(x))
            outcome = (net.outcome(h, t) - y).pow(2).mean()
            loss, parts = outcome, {"outcome": outcome.item()}
            if self.treatment_weight:
                h_t = {
                    "adversarial": lambda: grad_reverse(h),
                    "auxiliary": lambda: h,
                    "detached": lambda: h.detach(),
                }[self.treatment_head]()
                nll = -gaussian_log_density(t, *net.treatment_head(h_t)).mean()
                loss = loss + self.treatment_weight * nll
                parts["treatment"] = nll.item()
            if self.mmd_weight:
                mmd = group_mmd(h, t, self.threshold_, self.strict_)
                if mmd is not None:
                    loss = loss + self.mmd_weight * warmup(epoch, int(self.mmd_warmup)) * mmd
                    parts["mmd"] = mmd.item()
            parts["total"] = loss.item()
            return loss, parts

        return loss_fn

    @staticmethod
    def _val_fn(net: PaperBaselineNet):
        def val_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return (net.outcome(net.represent(batch["x"]), batch["t"]) - batch["y"]).pow(2).mean()

        return val_fn

    def _predict_member(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert isinstance(net, PaperBaselineNet)
        return net.outcome(net.represent(x), t)

    def _forecast_member(
        self, net: nn.Module, x: torch.Tensor, y: torch.Tensor | None, t: torch.Tensor
    ) -> torch.Tensor:
        assert isinstance(net, PaperBaselineNet)
        return net.forecast(x, t)


class RCRN(_PaperBaseline):
    __doc__ = (
        "R-CRN (the paper's Baseline1): LSTM covariate encoder, adversarial treatment head "
        "(gradient reversal), MMD on hidden states, one outcome MLP.\n"
        + (_PaperBaseline.__doc__ or "").split("\n", 1)[1]
    )
    name: ClassVar[str] = "r-crn"
    _label: ClassVar[str] = "R-CRN"

    # the shared parameters with this model's defaults (the signature shows them)
    __init__ = partialmethod(_PaperBaseline.__init__, cell="lstm", treatment_head="adversarial")


class CFRNN(_PaperBaseline):
    __doc__ = (
        "CF-RNN (the paper's Baseline2): GRU covariate encoder, auxiliary (multitask) "
        "treatment head, MMD on hidden states, one outcome MLP.\n"
        + (_PaperBaseline.__doc__ or "").split("\n", 1)[1]
    )
    name: ClassVar[str] = "cf-rnn"
    _label: ClassVar[str] = "CF-RNN"


class TSTARNet(_PaperBaseline):
    __doc__ = (
        "TS-TARNet (the paper's Baseline3): GRU covariate encoder, TARNet's two outcome heads "
        "(soft-gated for a continuous treatment), detached treatment head, MMD on hidden "
        "states.\n" + (_PaperBaseline.__doc__ or "").split("\n", 1)[1]
    )
    name: ClassVar[str] = "ts-tarnet"
    _label: ClassVar[str] = "TS-TARNet"

    # the shared parameters with this model's defaults (the signature shows them)
    __init__ = partialmethod(
        _PaperBaseline.__init__, treatment_head="detached", outcome_head="two-head"
    )
