r"""RMSN: Recurrent Marginal Structural Networks (Lim, Alaa, van der Schaar, NeurIPS 2018).

A marginal structural model reweights each unit's history so that, in the reweighted
population, the treatment no longer depends on the time-varying confounders; an outcome
network fitted on the reweighted data then estimates effects of treatment paths.

Propensity networks (two LSTMs, each with a Gaussian head, trained first):

.. math::

    f(T_t \mid \bar T_{t-1}) \quad \text{(numerator: treatment history only)}, \qquad
    f(T_t \mid \bar H_t) \quad \text{(denominator: } H_t = (x_{\le t}, T_{<t}, y_{<t}))

Stabilised weights for predictions made from step :math:`k` (paper, eq. 3):

.. math::

    SW_t^{(k)} = \prod_{s=k}^{t} \frac{f(T_s \mid \bar T_{s-1})}{f(T_s \mid \bar H_s)}

truncated at the ``clip_percentiles`` (1st and 99th by default) of :math:`\log SW^{(0)}`
over the training steps, then normalised to mean 1 over the steps of each loss term.
Outcome networks: the encoder and τ-step decoder of
:class:`~kgcm.estimators._recurrent.EncoderDecoder`, trained with the weighted squared error

.. math:: L = \sum_t SW_t^{(0)} (y_t - \hat y_t)^2 + \sum_{t \ge k} SW_t^{(k)} (y_t - \hat y_t)^2

(encoder one step ahead with teacher forcing; decoder from random starts ``k``, fed its own
predictions).

Continuous-treatment adaptation (ours; RMSN is written for binary treatments with sigmoid
propensities): both propensity networks output a Gaussian density with learned mean and
log-variance, :math:`N(T_t; \mu(\cdot), \sigma^2(\cdot))`, trained by maximum likelihood on the
scaled treatment; the weight is the ratio of the two densities at the observed treatment.
Product weights of continuous densities are heavy-tailed, which makes the truncation and
normalisation essential.

Other departures: the encoder and decoder are trained jointly in one run of the shared loop
(the paper trains them in turn); ``predict`` rolls the decoder out over the whole window from
:math:`k = 0`, as no outcome is observed there, and the effect is the difference of two
rollouts that follow :math:`T^1` and :math:`T^0` in every treatment input and fed-back
outcome.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from kgcm.errors import ConfigError
from kgcm.estimators._recurrent import (
    EncoderDecoder,
    GaussianHead,
    NeuralSequenceEstimator,
    check_horizon,
    decoder_mask,
    decoder_starts,
    gaussian_log_density,
    rollout_val_fn,
    shift_right,
)
from kgcm.estimators.training import TrainingConfig, fit_module

__all__ = ["RMSN", "stabilised_log_weights", "truncate_and_normalise"]


# --------------------------------------------------------------------------------------------
# Weights


def stabilised_log_weights(
    log_ratio: torch.Tensor, start: torch.Tensor | None = None
) -> torch.Tensor:
    r""":math:`\log SW_t^{(k)} = \sum_{s=k}^{t} r_s` for per-step log density ratios
    :math:`r_s = \log f(T_s \mid \bar T_{s-1}) - \log f(T_s \mid \bar H_s)`.

    Parameters
    ----------
    log_ratio : (n_units, n_steps)
    start : (n_units,) long, optional
        The first step ``k`` of each unit's product (default 0). Steps before it get 0.

    Returns
    -------
    (n_units, n_steps) log weights.
    """
    if start is None:
        return torch.cumsum(log_ratio, dim=1)
    steps = torch.arange(log_ratio.shape[1], device=log_ratio.device)[None, :]
    return torch.cumsum(log_ratio * (steps >= start[:, None]), dim=1)


def truncate_and_normalise(
    log_weights: torch.Tensor, bounds: tuple[float, float], mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Weights ``exp(clip(log_weights, *bounds))`` scaled to mean 1 over ``mask`` (0 outside).

    Parameters
    ----------
    log_weights : (n_units, n_steps)
    bounds : (low, high) in log space, e.g. percentiles of the training log weights.
    mask : (n_units, n_steps) float or bool, optional (default: every step).
    """
    w = torch.exp(log_weights.clamp(bounds[0], bounds[1]))
    m = torch.ones_like(w) if mask is None else mask.to(w.dtype)
    w = w * m
    return w * (m.sum() / w.sum().clamp_min(1e-12))


# --------------------------------------------------------------------------------------------
# Networks


class PropensityNet(nn.Module):
    """Numerator f(T_t | T_<t) and denominator f(T_t | H_t) Gaussian propensity networks."""

    def __init__(self, *, n_inputs: int, hidden: int) -> None:
        super().__init__()
        self.numerator = nn.LSTM(1, hidden, batch_first=True)
        self.denominator = nn.LSTM(n_inputs + 2, hidden, batch_first=True)
        self.num_head = GaussianHead(hidden, hidden)
        self.den_head = GaussianHead(hidden, hidden)

    def log_densities(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log f(T_t | T_<t), log f(T_t | H_t))``, each ``(n, s)``, at the observed T."""
        t_prev = shift_right(t)[..., None]
        h_num, _ = self.numerator(t_prev)
        h_den, _ = self.denominator(torch.cat([x, t_prev, shift_right(y)[..., None]], dim=-1))
        log_num = gaussian_log_density(t, *self.num_head(h_num))
        log_den = gaussian_log_density(t, *self.den_head(h_den))
        return log_num, log_den


class RMSNNet(nn.Module):
    """A fitted member: propensity networks and the outcome encoder-decoder."""

    def __init__(self, propensity: PropensityNet, seq: EncoderDecoder) -> None:
        super().__init__()
        self.propensity = propensity
        self.seq = seq


# --------------------------------------------------------------------------------------------
# The estimator


class RMSN(NeuralSequenceEstimator):
    """Recurrent Marginal Structural Network for a continuous, time-varying treatment.

    Parameters
    ----------
    seed : int
        Seeds initialisation, splits, batches and decoder start steps.
    hidden : int
        LSTM width of the propensity, encoder and decoder networks.
    rep_dim : int
        Size of the encoder's (and decoder's) representation.
    horizon : int or None
        τ, decoder steps trained per start; None: to the end of the window.
    clip_percentiles : (float, float)
        Truncation percentiles of the log stabilised weights (paper: 1 and 99).
    dropout : float
        Dropout in the outcome heads.
    decoder_covariates : bool
        The decoder reads the covariates of the steps it predicts (True, for whole-window
        prediction with the covariates known) or only the treatments and its own predictions
        (False, the paper's decoder): then the model forecasts under a treatment plan after an
        observed history (``effect(X_hist, T0=, T1=, Y=Y_hist)``) without future covariates.
    n_ensemble : int
        Independently seeded models; effects are their mean (member spread as intervals).
    training : TrainingConfig or dict, optional
        Settings of the shared training loop (used by both stages).

    Attributes
    ----------
    models_ : list of RMSNNet
    history_ : list of dict
        Outcome stage, per epoch: ``train_encoder``, ``train_decoder`` (weighted MSEs),
        ``train_total``, ``val_loss`` (unweighted rollout MSE).
    propensity_histories_ : list of list of dict
        Propensity stage per member: ``train_numerator``, ``train_denominator`` (NLLs), ...
    weight_bounds_ : list of (float, float)
        Truncation bounds of the log weights per member.
    weight_stats_ : list of dict
        Per member: ``raw_mean`` (mean of the truncated weights before normalisation; near 1
        when the propensity models fit well), ``min``, ``max`` and ``ess_fraction`` (Kish
        effective sample size over the number of steps) of the normalised encoder weights.
    """

    name: ClassVar[str] = "rmsn"
    tags: ClassVar[dict[str, bool]] = {
        **NeuralSequenceEstimator.tags,
        "forecast": True,  # with decoder_covariates=False
    }
    #: fast settings for the test suite (about a second a fit)
    test_params: ClassVar[dict[str, Any]] = {
        "hidden": 8,
        "rep_dim": 4,
        "training": {"max_epochs": 3, "progress": False},
    }
    _label: ClassVar[str] = "RMSN"
    _positive_ints: ClassVar[tuple[str, ...]] = ("hidden", "rep_dim", "n_ensemble")
    _nonnegative: ClassVar[tuple[str, ...]] = ("dropout",)

    def __init__(
        self,
        *,
        seed: int = 0,
        hidden: int = 32,
        rep_dim: int = 16,
        horizon: int | None = None,
        clip_percentiles: Sequence[float] = (1.0, 99.0),
        dropout: float = 0.0,
        decoder_covariates: bool = True,
        n_ensemble: int = 1,
        training: TrainingConfig | Mapping[str, Any] | None = None,
    ) -> None:
        self.seed = seed
        self.hidden = hidden
        self.rep_dim = rep_dim
        self.horizon = horizon
        self.clip_percentiles = clip_percentiles
        self.dropout = dropout
        self.decoder_covariates = decoder_covariates
        self.n_ensemble = n_ensemble
        self.training = training

    def _check_params(self) -> TrainingConfig:
        training = super()._check_params()
        check_horizon(self.horizon)
        clip = tuple(self.clip_percentiles)
        if len(clip) != 2 or not (0.0 <= clip[0] < clip[1] <= 100.0):
            raise ConfigError(
                f"clip_percentiles must be two percentiles (low, high) with "
                f"0 <= low < high <= 100, e.g. (1, 99); got {self.clip_percentiles!r}."
            )
        self.propensity_histories_: list[list[dict[str, float]]] = []
        self.weight_bounds_: list[tuple[float, float]] = []
        self.weight_stats_: list[dict[str, float]] = []
        return training

    def _build(self) -> RMSNNet:
        return RMSNNet(self._build_propensity(), self._build_outcome())

    def _build_propensity(self) -> PropensityNet:
        return PropensityNet(n_inputs=self.n_inputs_, hidden=self.hidden)

    def _build_outcome(self) -> EncoderDecoder:
        return EncoderDecoder(
            n_inputs=self.n_inputs_,
            hidden=self.hidden,
            rep_dim=self.rep_dim,
            dropout=self.dropout,
            decoder_covariates=bool(self.decoder_covariates),
        )

    def _fit_member(
        self,
        tensors: dict[str, torch.Tensor],
        training: TrainingConfig,
        seed: int,
        description: str,
    ) -> tuple[nn.Module, list[dict[str, float]]]:
        # stage 1: propensity networks by maximum likelihood
        propensity, prop_history = fit_module(
            self._build_propensity,
            tensors,
            loss_fn=_propensity_loss_fn,
            val_fn=_propensity_val_fn,
            config=training,
            seed=seed,
            description=f"{description} propensity",
        )
        propensity = propensity.cpu().eval()
        # stage 2: stabilised weights, then the weighted outcome networks
        with torch.no_grad():
            log_num, log_den = propensity.log_densities(tensors["x"], tensors["t"], tensors["y"])
        log_ratio = log_num - log_den
        log_w = stabilised_log_weights(log_ratio)
        low, high = np.percentile(log_w.numpy(), list(self.clip_percentiles))
        bounds = (float(low), float(high))
        weights = truncate_and_normalise(log_w, bounds)
        raw = torch.exp(log_w.clamp(*bounds))
        self.propensity_histories_.append(prop_history)
        self.weight_bounds_.append(bounds)
        self.weight_stats_.append({
            "raw_mean": float(raw.mean()),
            "min": float(weights.min()),
            "max": float(weights.max()),
            "ess_fraction": float(weights.sum() ** 2 / (weights.pow(2).sum() * weights.numel())),
        })  # fmt: skip
        data = {**tensors, "w": weights, "log_ratio": log_ratio}
        seq, history = fit_module(
            self._build_outcome,
            data,
            loss_fn=lambda net: self._outcome_loss_fn(net, bounds),
            val_fn=lambda seq: rollout_val_fn(seq.predict),
            config=training,
            seed=seed,
            description=f"{description} outcome",
        )
        return RMSNNet(propensity, seq.cpu()), history  # type: ignore[arg-type]

    def _outcome_loss_fn(self, net: EncoderDecoder, bounds: tuple[float, float]):
        def loss_fn(batch: dict[str, torch.Tensor], epoch: int):
            x, t, y = batch["x"], batch["t"], batch["y"]
            phi, y_enc = net.encode(x, t, y)
            start = decoder_starts(t.shape[0], t.shape[1], t.device)
            _, y_dec = net.decode(x, t, phi, start)
            mask = decoder_mask(start, t.shape[1], self.horizon)
            w_enc = batch["w"] / batch["w"].mean().clamp_min(1e-12)
            w_dec = truncate_and_normalise(
                stabilised_log_weights(batch["log_ratio"], start), bounds, mask
            )
            encoder = (w_enc * (y_enc - y).pow(2)).mean()
            decoder = (w_dec * (y_dec - y).pow(2)).sum() / mask.sum()
            loss = encoder + decoder
            return loss, {
                "encoder": encoder.item(),
                "decoder": decoder.item(),
                "total": loss.item(),
            }

        return loss_fn

    def _predict_member(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert isinstance(net, RMSNNet)
        return net.seq.predict(x, t)

    def _forecast_member(
        self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        assert isinstance(net, RMSNNet)
        return net.seq.forecast(x, y, t)

    def _extra_state(self) -> dict[str, Any]:
        return {
            "propensity_histories": self.propensity_histories_,
            "weight_bounds": [list(b) for b in self.weight_bounds_],
            "weight_stats": self.weight_stats_,
        }

    def _set_extra_state(self, state: dict[str, Any]) -> None:
        self.propensity_histories_ = state["propensity_histories"]
        self.weight_bounds_ = [(float(a), float(b)) for a, b in state["weight_bounds"]]
        self.weight_stats_ = state["weight_stats"]


def _propensity_loss_fn(net: PropensityNet):
    def loss_fn(batch: dict[str, torch.Tensor], epoch: int):
        log_num, log_den = net.log_densities(batch["x"], batch["t"], batch["y"])
        num, den = -log_num.mean(), -log_den.mean()
        loss = num + den
        return loss, {"numerator": num.item(), "denominator": den.item(), "total": loss.item()}

    return loss_fn


def _propensity_val_fn(net: PropensityNet):
    def val_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        log_num, log_den = net.log_densities(batch["x"], batch["t"], batch["y"])
        return -(log_num + log_den).mean()

    return val_fn
