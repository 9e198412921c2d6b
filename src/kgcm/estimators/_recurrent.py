r"""Shared pieces of the time-varying baselines (R-CRN, CF-RNN, TS-TARNet, CRN, RMSN, CT).

Notation, per unit and step :math:`t` (arrays follow the estimator contract):

- :math:`x_t` covariates ``(n_units, n_steps, n_features)``, :math:`T_t` the continuous
  treatment and :math:`y_t` the outcome, each ``(n_units, n_steps)``; all scaled by the
  estimator's standardisers, so the scaled treatment has marginal mean 0 and variance 1.
- The outcome :math:`y_t` responds to the treatment *at and before* :math:`t`. A history
  :math:`H_t = (x_{\le t}, T_{<t}, y_{<t})` is everything observed before :math:`T_t` is
  applied; models build a representation :math:`\Phi_t = \Phi(H_t)` and predict
  :math:`\hat y_t = g(\Phi_t, T_t)`.

Counterfactual paths. ``predict(X, T)`` receives no outcomes, so models that read past
outcomes run an *autoregressive rollout*: :math:`\hat y_t` is fed back as :math:`y_t` when
:math:`\hat y_{t+1}` is predicted. Under a counterfactual path every treatment input (current
value, history, fed-back outcomes) follows that path; the covariates carry no treatment.

This module holds: gradient reversal, Gaussian heads and log-densities, the causal treatment
filter, median treatment groups for MMD, a recurrent history encoder with a τ-step decoder
(used by CRN and RMSN), a generic autoregressive rollout, and the estimator base class that
owns scaling, seed ensembles, prediction in chunks and persistence.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from kgcm.errors import ConfigError, InputError, did_you_mean
from kgcm.estimators.base import BaseEstimator, MemberEnsemble, ValidatedData
from kgcm.estimators.training import (
    BatchStream,
    LossFn,
    TrainingConfig,
    ValFn,
    fit_module,
    to_tensor,
)
from kgcm.losses import mmd_rbf

__all__ = [
    "EncoderDecoder",
    "GaussianHead",
    "NeuralSequenceEstimator",
    "PlanForecasts",
    "TreatmentFeatures",
    "autoregressive_rollout",
    "check_horizon",
    "dann_schedule",
    "decoder_mask",
    "decoder_starts",
    "gaussian_log_density",
    "grad_reverse",
    "group_mmd",
    "median_split",
    "mlp",
    "plan_covariates",
    "rollout_val_fn",
    "shift_right",
    "to_tensor",
    "unseen_tail",
]


# --------------------------------------------------------------------------------------------
# Small functions


def mlp(sizes: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear layers of ``sizes`` with ELU (and dropout) between them, none after the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ELU())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def shift_right(a: torch.Tensor) -> torch.Tensor:
    """The previous step's value along dim 1, 0 (the scaled training mean) at the first step.

    ``a`` is ``(n_units, n_steps)`` or ``(n_units, n_steps, k)``; returns the same shape with
    ``out[:, t] = a[:, t - 1]``.
    """
    return torch.cat([torch.zeros_like(a[:, :1]), a[:, :-1]], dim=1)


def unseen_tail(n_units: int, n_steps: int, max_unseen: int, device: Any) -> torch.Tensor:
    """Training mask ``(n, s)`` of observed covariates: each unit's last ``m`` steps are
    unobserved (False), ``m`` drawn uniformly from ``0..max_unseen`` per unit, so a model
    learns to do without the covariates of a plan's steps."""
    m = torch.randint(0, max_unseen + 1, (n_units, 1), device=device)
    return torch.arange(n_steps, device=device) < n_steps - m


def plan_covariates(x: torch.Tensor, n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A forecast's covariates: the history ``x (n, k, p)`` padded with zeros to ``n_steps``,
    and the mask ``(n, n_steps)`` of observed steps (the ``k`` history steps only), where a
    model reads its learned stand-in instead."""
    n, k, p = x.shape
    padded = torch.cat([x, x.new_zeros(n, n_steps - k, p)], dim=1)
    return padded, (torch.arange(n_steps, device=x.device) < k).expand(n, n_steps)


class _GradientReversal(torch.autograd.Function):
    """Identity forward; gradient multiplied by ``-scale`` backward (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    r"""Gradient reversal layer :math:`R_\lambda`: :math:`R(x) = x`, :math:`\partial R /
    \partial x = -\lambda I`.

    Whatever is computed from ``grad_reverse(phi)`` is minimised by its own parameters and
    maximised by the parameters that produced ``phi`` (adversarial balancing in CRN).
    """
    return _GradientReversal.apply(x, float(scale))


def dann_schedule(progress: float) -> float:
    r"""Weight ramp of the reversed gradient, :math:`\lambda(p) = 2 / (1 + e^{-10 p}) - 1` for
    training progress :math:`p \in [0, 1]` (Ganin & Lempitsky 2015; used by CRN)."""
    p = min(max(progress, 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0


_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_density(
    target: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor
) -> torch.Tensor:
    r""":math:`\log N(\text{target}; \mu, \sigma^2)`, elementwise (same shapes)."""
    return -0.5 * (logvar + (target - mean).pow(2) * torch.exp(-logvar) + _LOG_2PI)


class GaussianHead(nn.Module):
    r"""Conditional Gaussian of the scaled treatment: :math:`T_t \mid \Phi_t \sim
    N(\mu(\Phi_t), \sigma^2(\Phi_t))`, the continuous stand-in for a treatment classifier.

    ``forward(phi)`` with ``phi`` ``(..., d)`` returns ``(mean, logvar)``, each ``(...)``;
    the log-variance is clamped to [-6, 4] to keep the density finite.
    """

    def __init__(self, d_in: int, hidden: int) -> None:
        super().__init__()
        self.net = mlp([d_in, hidden, 2])

    def forward(self, phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.net(phi).unbind(-1)
        return mean, logvar.clamp(-6.0, 4.0)


class TreatmentFeatures(nn.Module):
    r"""Features of the treatment path: an embedding of :math:`T_t` and a learned causal
    filter bank of :math:`T_{t-K+1..t}` (``history`` = K steps, zero-padded before the start).

    ``forward(t)`` with ``t`` ``(n_units, n_steps)`` returns ``(n_units, n_steps, 2 * width)``.
    Step :math:`t` only sees :math:`T_{\le t}`, so a counterfactual path replaces the treatment
    and its history together.
    """

    def __init__(self, width: int, history: int) -> None:
        super().__init__()
        self.history = history
        self.now = nn.Linear(1, width)
        self.past = nn.Conv1d(1, width, kernel_size=history)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        padded = nn.functional.pad(t.unsqueeze(1), (self.history - 1, 0))
        return torch.cat([self.now(t.unsqueeze(-1)), self.past(padded).transpose(1, 2)], dim=-1)


# --------------------------------------------------------------------------------------------
# Median treatment groups and MMD on representations


def median_split(t_scaled: np.ndarray) -> tuple[float, bool]:
    """Median split of the treatment into "treated" (above) and "control" steps.

    Returns ``(threshold, strict)``: treated is ``t > threshold`` when ``strict`` else
    ``t >= threshold``, whichever leaves both groups non-empty and closer to balanced.
    Raises :class:`InputError` for a constant treatment (nothing to learn an effect from).
    """
    flat = np.asarray(t_scaled, dtype=np.float64).ravel()
    if np.ptp(flat) <= 1e-12:
        raise InputError(
            "the treatment T is constant across all units and steps, so there is no variation "
            "to learn an effect from. Pass a treatment that varies between units or steps."
        )
    threshold = float(np.median(flat))
    above_strict, above_loose = np.mean(flat > threshold), np.mean(flat >= threshold)
    strict = abs(above_strict - 0.5) <= abs(above_loose - 0.5) and 0 < above_strict < 1
    return threshold, bool(strict)


def group_mmd(
    phi: torch.Tensor,
    t: torch.Tensor,
    threshold: float,
    strict: bool,
    mask: torch.Tensor | None = None,
    max_per_group: int = 256,
) -> torch.Tensor | None:
    """MMD² (multi-bandwidth RBF, unbiased) between representations of treated and control
    steps.

    Parameters
    ----------
    phi : (n_units, n_steps, d) representations.
    t : (n_units, n_steps) scaled treatment.
    mask : (n_units, n_steps) bool, optional; only these steps take part.
    max_per_group : each group is subsampled to this size (the cost is quadratic).

    Returns None when a group has fewer than 2 steps in the batch.
    """
    z = phi.reshape(-1, phi.shape[-1])
    flat = t.reshape(-1)
    keep = torch.ones_like(flat, dtype=torch.bool) if mask is None else mask.reshape(-1)
    treated = (flat > threshold) if strict else (flat >= threshold)
    a, b = z[treated & keep], z[~treated & keep]
    if a.shape[0] < 2 or b.shape[0] < 2:
        return None
    if a.shape[0] > max_per_group:
        a = a[torch.randperm(a.shape[0], device=a.device)[:max_per_group]]
    if b.shape[0] > max_per_group:
        b = b[torch.randperm(b.shape[0], device=b.device)[:max_per_group]]
    return mmd_rbf(a, b)


# --------------------------------------------------------------------------------------------
# Recurrent history encoder with a τ-step decoder (CRN, RMSN)


def decoder_starts(n_units: int, n_steps: int, device: torch.device | str) -> torch.Tensor:
    """Random decoder start steps ``k`` (n_units,) for training: 0 (the prediction case, where
    no outcome is observed) for half of the units, uniform on 1..n_steps-1 for the rest.

    Draws from the global torch generator, which the shared training loop seeds and restores.
    """
    late = torch.randint(1, max(n_steps, 2), (n_units,), device=device).clamp(max=n_steps - 1)
    early = torch.rand(n_units, device=device) < 0.5
    return torch.where(early, torch.zeros_like(late), late)


class EncoderDecoder(nn.Module):
    r"""History encoder (teacher forcing) and τ-step decoder (free running) of CRN and RMSN.

    Encoder, for every step, from the factual history:

    .. math::

        h^e_t = \mathrm{LSTM}^e([x_t, T_{t-1}, y_{t-1}], h^e_{t-1}), \quad
        \Phi_t = \mathrm{ELU}(W_e h^e_t), \quad \hat y_t = g_e(\Phi_t, T_t)

    Decoder, started at step :math:`k` from the encoder's representation (the "memory
    adapter") and fed its own predictions:

    .. math::

        h^d_k = \tanh(A \Phi_k), \quad
        h^d_t = \mathrm{LSTM}^d([x_t, T_{t-1}, \hat y_{t-1}], h^d_{t-1}) \ (t > k), \quad
        \Psi_t = \mathrm{ELU}(W_d h^d_t), \quad \hat y_t = g_d(\Psi_t, T_t)

    Predicting a whole window without observed outcomes is the decoder started at
    :math:`k = 0` (:math:`\Phi_0` reads :math:`x_0` only) and run for ``n_steps``.

    With ``decoder_covariates=False`` the decoder reads :math:`[T_{t-1}, \hat y_{t-1}]` only,
    as in the CRN paper (future covariates are unknown when planning): then :meth:`forecast`
    answers for steps after an observed history without any covariate after it.
    """

    def __init__(
        self,
        *,
        n_inputs: int,
        hidden: int,
        rep_dim: int,
        dropout: float,
        decoder_covariates: bool = True,
    ) -> None:
        super().__init__()
        d_in = n_inputs + 2  # x_t, T_{t-1}, y_{t-1}
        self.hidden = hidden
        self.decoder_covariates = decoder_covariates
        self.encoder = nn.LSTM(d_in, hidden, batch_first=True)
        self.enc_rep = nn.Linear(hidden, rep_dim)
        self.adapter = nn.Linear(rep_dim, hidden)
        self.decoder = nn.LSTMCell(d_in if decoder_covariates else 2, hidden)
        self.dec_rep = nn.Linear(hidden, rep_dim)
        self.enc_outcome = mlp([rep_dim + 1, hidden, 1], dropout)
        self.dec_outcome = mlp([rep_dim + 1, hidden, 1], dropout)

    def encode(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced pass: ``(Phi (n, s, rep_dim), y_hat (n, s))`` from factual ``y``."""
        inputs = torch.cat([x, shift_right(t)[..., None], shift_right(y)[..., None]], dim=-1)
        h, _ = self.encoder(inputs)
        phi = nn.functional.elu(self.enc_rep(h))
        y_hat = self.enc_outcome(torch.cat([phi, t[..., None]], dim=-1)).squeeze(-1)
        return phi, y_hat

    def first_representation(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`\\Phi_0` ``(n, rep_dim)`` from ``x_0`` alone (no past treatment or outcome)."""
        zeros = torch.zeros_like(x[:, :1, :1])
        h, _ = self.encoder(torch.cat([x[:, :1], zeros, zeros], dim=-1))
        return nn.functional.elu(self.enc_rep(h[:, 0]))

    def decode(
        self, x: torch.Tensor, t: torch.Tensor, phi: torch.Tensor, start: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Free-running decoder from per-unit start steps.

        Parameters
        ----------
        x : (n, s, p); t : (n, s) the treatment path to follow (factual or counterfactual).
        phi : (n, s, rep_dim) encoder representations (only ``phi[i, start[i]]`` is read), or
            (n, rep_dim) when every start is 0.
        start : (n,) long, the decoder's first step per unit.

        Returns
        -------
        (Psi (n, s, rep_dim), y_hat (n, s)); entries before ``start`` are zeros.
        """
        n, steps = t.shape
        h = torch.zeros(n, self.hidden, dtype=x.dtype, device=x.device)
        c = torch.zeros_like(h)
        y_prev = torch.zeros(n, dtype=x.dtype, device=x.device)
        reps, preds = [], []
        first = int(start.min())
        for s in range(steps):
            if s < first:
                reps.append(torch.zeros(n, self.dec_rep.out_features, device=x.device))
                preds.append(torch.zeros(n, device=x.device))
                continue
            if s > first:
                t_prev = t[:, s - 1]
                now = [x[:, s]] if self.decoder_covariates else []
                h, c = self.decoder(torch.cat([*now, t_prev[:, None], y_prev[:, None]], -1), (h, c))
            begins = (start == s)[:, None]
            if begins.any():
                phi_s = phi[:, s] if phi.dim() == 3 else phi
                h = torch.where(begins, torch.tanh(self.adapter(phi_s)), h)
                c = torch.where(begins, torch.zeros_like(c), c)
            psi = nn.functional.elu(self.dec_rep(h))
            y_hat = self.dec_outcome(torch.cat([psi, t[:, s, None]], dim=-1)).squeeze(-1)
            active = start <= s
            y_prev = torch.where(active, y_hat, torch.zeros_like(y_hat))
            reps.append(psi * active[:, None])
            preds.append(y_prev)
        return torch.stack(reps, dim=1), torch.stack(preds, dim=1)

    def predict(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Whole-window prediction under path ``t`` (no outcomes observed): ``(n, s)``."""
        start = torch.zeros(t.shape[0], dtype=torch.long, device=t.device)
        return self.decode(x, t, self.first_representation(x), start)[1]

    def forecast(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        r"""Outcomes on the plan steps, ``(n, h)``, after a history ``x (n, k, p)``,
        ``y (n, k)`` under the path ``t (n, k + h)``.

        The encoder reads the history (teacher forcing); the decoder starts from
        :math:`\Phi_{k-1}` at the history's last step, as in training, and rolls over the plan
        fed with its own predictions. Needs ``decoder_covariates=False``: no covariate after
        step ``k`` is read.
        """
        if self.decoder_covariates:  # pragma: no cover - refused by the estimators first
            raise RuntimeError("forecast needs a decoder without covariates")
        n, k = y.shape
        phi, _ = self.encode(x, t[:, :k], y)
        start = torch.full((n,), k - 1, dtype=torch.long, device=t.device)
        unused = x.new_zeros((n, t.shape[1], x.shape[2]))  # the decoder reads no covariate
        return self.decode(unused, t, phi, start)[1][:, k:]


def decoder_mask(start: torch.Tensor, n_steps: int, horizon: int | None) -> torch.Tensor:
    """Float mask ``(n, n_steps)``: 1 on the decoder's trained steps ``k <= t < k + τ``."""
    steps = torch.arange(n_steps, device=start.device)[None, :]
    mask = steps >= start[:, None]
    if horizon is not None:
        mask &= steps < start[:, None] + horizon
    return mask.float()


def check_horizon(horizon: int | None) -> None:
    """Refuse a decoder horizon that is not None or an integer >= 1."""
    bad_type = isinstance(horizon, bool) or not isinstance(horizon, int | np.integer)
    if horizon is not None and (bad_type or horizon < 1):
        raise ConfigError(
            f"horizon must be an integer >= 1 (decoder steps) or None (to the end of the "
            f"window); got {horizon!r}."
        )


def rollout_val_fn(
    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """Validation loss on the prediction effects are made of: MSE of ``predict(x, t)``, a
    whole-window rollout that reads no observed outcome (an :class:`EncoderDecoder`'s
    ``predict``, the Causal Transformer's ``rollout``)."""

    def val_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return (predict(batch["x"], batch["t"]) - batch["y"]).pow(2).mean()

    return val_fn


def autoregressive_rollout(
    step: Callable[[int, torch.Tensor], torch.Tensor], t: torch.Tensor
) -> torch.Tensor:
    r"""Fill outcomes one step at a time from a model that reads past outcomes.

    ``step(s, y_feed)`` returns :math:`\hat y_s` ``(n_units,)`` given ``y_feed``
    ``(n_units, s)``, the predictions for steps ``0..s-1`` (under the same treatment path).
    ``t`` ``(n_units, n_steps)`` is that path; the outcomes take its shape, dtype and device
    (the rollout runs on the training device when it validates). Every unit moves together:
    the loop is over steps only. Returns ``(n_units, n_steps)``.
    """
    y = torch.zeros_like(t)
    for s in range(t.shape[1]):
        y[:, s] = step(s, y[:, :s])
    return y


# --------------------------------------------------------------------------------------------
# The estimator base of the baselines


class NeuralSequenceEstimator(MemberEnsemble, BaseEstimator):
    """Base of the neural time-varying baselines: scaling, seed ensembles, chunked
    prediction, persistence and parameter checks. A subclass supplies the architecture
    (``_build``), its losses (``_loss_fn``, ``_val_fn``; a member is trained on them by
    :func:`kgcm.estimators.training.fit_module`, unless ``_fit_member`` is overridden) and how
    it predicts (``_predict_member``).

    With ``n_ensemble >= 2`` the members' effects are the draws of
    :meth:`effect_interval` (member spread, not a posterior); the class tag stays
    ``intervals=False`` because a single model gives point effects only.
    """

    tags: ClassVar[dict[str, bool]] = {
        "intervals": False,
        "needs_covariates": False,
        "sequence": True,
    }
    #: parameter names checked in ``fit``: integers >= 1, finite numbers >= 0, choices
    _positive_ints: ClassVar[tuple[str, ...]] = ("n_ensemble",)
    _nonnegative: ClassVar[tuple[str, ...]] = ()
    _choices: ClassVar[dict[str, tuple[str, ...]]] = {}
    _label: ClassVar[str] = "model"
    #: a loss weight ramps with training progress (:meth:`_progress`); fit then keeps
    #: ``training.max_epochs`` as ``max_epochs_``, saved with the model
    _ramps_with_progress: ClassVar[bool] = False

    seed: int
    n_ensemble: int
    training: TrainingConfig | dict[str, Any] | None

    # ---- hooks ---------------------------------------------------------------------------
    def _build(self) -> nn.Module:
        raise NotImplementedError

    def _loss_fn(self, net: Any) -> LossFn:
        """Training loss of a batch, ``(batch, epoch) -> (loss, parts)``, for the member ``net``."""
        raise NotImplementedError

    def _val_fn(self, net: Any) -> ValFn:
        """Validation loss of a batch, ``batch -> loss``, for the member ``net``."""
        raise NotImplementedError

    def _fit_member(
        self,
        tensors: dict[str, torch.Tensor] | BatchStream,
        training: TrainingConfig,
        seed: int,
        description: str,
    ) -> tuple[nn.Module, list[dict[str, float]]]:
        """Train one member: ``_build`` on ``_loss_fn`` and ``_val_fn`` in the shared loop."""
        return fit_module(
            self._build,
            tensors,
            loss_fn=self._loss_fn,
            val_fn=self._val_fn,
            config=training,
            seed=seed,
            description=description,
        )

    def _predict_member(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _extra_state(self) -> dict[str, Any]:
        return {"max_epochs": self.max_epochs_} if self._ramps_with_progress else {}

    def _set_extra_state(self, state: dict[str, Any]) -> None:
        if self._ramps_with_progress:
            self.max_epochs_ = int(state["max_epochs"])

    def _progress(self, epoch: int) -> float:
        """Training progress :math:`p = e / (E - 1)` at epoch ``e`` of at most ``E``: 0 at the
        first epoch, 1 at the last (the argument of :func:`dann_schedule`)."""
        return epoch / max(1, self.max_epochs_ - 1)

    # ---- checks --------------------------------------------------------------------------
    def _check_params(self) -> TrainingConfig:
        for key, allowed in self._choices.items():
            value = getattr(self, key)
            if value not in allowed:
                raise ConfigError(
                    f"{key} must be one of {list(allowed)}; got {value!r}."
                    f"{did_you_mean(str(value), allowed)}"
                )
        for key in self._positive_ints:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ConfigError(f"{key} must be an integer >= 1; got {value!r}.")
        for key in self._nonnegative:
            value = getattr(self, key)
            if not isinstance(value, int | float) or not np.isfinite(value) or value < 0:
                raise ConfigError(f"{key} must be a finite number >= 0; got {value!r}.")
        if getattr(self, "dropout", 0.0) >= 1:
            raise ConfigError(f"dropout must be below 1; got {self.dropout!r}.")  # type: ignore[attr-defined]
        return TrainingConfig.coerce(self.training)

    # ---- fit and predict -----------------------------------------------------------------
    def _fit(self, data: ValidatedData) -> None:
        training = self._check_params()
        self._setup(training, data.X.shape[2])
        assert data.Y is not None
        t_scaled = self.t_scaler_.transform(data.T)
        self.threshold_, self.strict_ = median_split(t_scaled)
        tensors = {
            "x": to_tensor(self._covariates(data.X)),
            "t": to_tensor(t_scaled),
            "y": to_tensor(self.y_scaler_.transform(data.Y)),
        }
        self._train_members(tensors, training)

    def _setup(self, training: TrainingConfig, n_features: int) -> None:
        """What a subclass sets from the settings and the number of covariates before its
        members train."""
        if self._ramps_with_progress:
            self.max_epochs_ = training.max_epochs

    def _train_members(
        self, source: dict[str, torch.Tensor] | BatchStream, training: TrainingConfig
    ) -> None:
        self.models_: list[nn.Module] = []
        self.histories_: list[list[dict[str, float]]] = []
        for k in range(self.n_ensemble):
            description = f"{self._label} {k + 1}/{self.n_ensemble}"
            net, history = self._fit_member(source, training, int(self.seed) + k, description)
            self.models_.append(net.cpu().eval())
            self.histories_.append(history)
        self.history_ = self.histories_[0]

    def fit_stream(
        self,
        units: Any,
        *,
        val_fraction: float = 0.15,
        num_workers: int = 0,
        threshold_sample: int = 20_000,
    ) -> Any:
        """Fit on units streamed from a store, never holding it in memory.

        ``units`` is a :class:`kgcm.streaming.StreamedUnits`. A share ``val_fraction`` of its
        spatial tiles is held out for early stopping (:meth:`StreamedUnits.hold_out`); the
        scalers come from one streamed pass over the training tiles; the treatment's median
        split (the balancing groups) from up to ``threshold_sample`` held-out units. Batches of
        ``training.batch_size`` units (256 when unset; in a DDP run each process reads its
        share) are read by a DataLoader with ``num_workers`` spawned workers. Intervals are the
        model's own (``inference="model"``); the refitting strategies refit in memory only.
        """
        from kgcm.inference import Inference
        from kgcm.streaming import StreamedUnits, UnitBatches

        if not isinstance(units, StreamedUnits):
            raise InputError(
                f"fit_stream takes kgcm.streaming.StreamedUnits; got {type(units).__name__}. "
                "For arrays in memory use fit(Y, T, X=...)."
            )
        if type(self)._fit_member is not NeuralSequenceEstimator._fit_member:
            raise ConfigError(
                f"{type(self).__name__} trains in stages on units held in memory and cannot be "
                "fitted from a stream; use fit(Y, T, X=...)."
            )
        training = self._check_params()
        train, held = units.hold_out(val_fraction, seed=int(self.seed))
        first = next((u for b in held.blocks() if (u := held.units(b)) is not None), None)
        if first is None:
            raise InputError("every held-out unit holds NaN; choose another val_fraction or tile.")
        if self.tags.get("needs_covariates") and first.X.shape[2] == 0:
            raise InputError(
                f"{type(self).__name__} needs covariates to infer the hidden state; the units "
                "have none. Pass covariates=(...) (and static=, calendar=) to StreamedUnits."
            )
        scalers = train.fit_scalers()
        train.scalers, held.scalers = scalers, scalers
        self.n_features_in_ = int(first.X.shape[2])
        self.n_steps_in_ = int(units.window)
        self.feature_names_in_ = tuple(str(n) for n in first.feature_names) or None
        self.x_scaler_, self.t_scaler_, self.y_scaler_ = scalers["x"], scalers["t"], scalers["y"]
        self._setup(training, self.n_features_in_)
        sample: list[np.ndarray] = []
        for block in held.blocks():
            if sum(len(t) for t in sample) >= threshold_sample:
                break
            seqs = held.units(block)
            if seqs is not None:
                sample.append(seqs.T)
        self.threshold_, self.strict_ = median_split(
            self.t_scaler_.transform(np.concatenate(sample)[:threshold_sample])
        )
        from kgcm import distributed

        size = distributed.world()[1]
        per_process = -(-(training.batch_size or 256) // size)
        for part in (train, held):  # loader workers cannot see the process group: tell them
            if part.rank is None or part.world_size is None:
                part.rank, part.world_size = distributed.world()
        stream = UnitBatches(train, held, batch_size=per_process, num_workers=num_workers)
        identity = distributed.estimator_identity(self)
        with distributed.fitting(identity):
            self._train_members(stream, training)
        self.inference_, self.bootstrap_ = Inference.coerce("model"), []
        return self

    def _covariates(self, X: np.ndarray) -> np.ndarray:
        """Scaled covariates; one zero column when there are none (recurrent input width)."""
        x = self.x_scaler_.transform(X)
        return x if x.shape[2] else np.zeros((*x.shape[:2], 1))

    @property
    def n_inputs_(self) -> int:
        """Width of the covariate input (at least 1)."""
        return max(1, self.n_features_in_)

    # ---- forecasts (estimators whose decoder can run without covariates) ----------------
    def _forecast_member(
        self, net: nn.Module, x: torch.Tensor, y: torch.Tensor | None, t: torch.Tensor
    ) -> torch.Tensor:
        """Scaled outcomes on the plan steps ``(n, h)`` of one member; see
        :meth:`EncoderDecoder.forecast`. ``y`` is None only where the model reads no
        outcomes (``_forecast_reads_outcomes`` False)."""
        raise NotImplementedError

    #: a forecast reads the observed outcome history ``Y``; False: the model has no outcome
    #: input, so ``Y`` may be None (and is not read)
    _forecast_reads_outcomes: ClassVar[bool] = True

    def _check_forecast(self, Y: np.ndarray | None) -> None:
        """Refuse a forecast this fitted model cannot make, saying how to get one."""
        if getattr(self, "decoder_covariates", False):
            raise InputError(
                f"{type(self).__name__} was fitted with decoder_covariates=True: its decoder "
                f"reads the covariates of every step it predicts, which a forecast does not "
                f"have after the history. Refit with decoder_covariates=False (the paper's "
                f"decoder, fed treatments and its own predictions) to forecast under a plan."
            )
        if Y is None and self._forecast_reads_outcomes:
            raise InputError(
                f"{type(self).__name__} forecasts from the observed history of outcomes as well "
                f"as covariates; pass Y (n_units, k), the outcomes of the history steps of X."
            )

    @torch.no_grad()
    def _forecast_effect_draws(
        self, X: np.ndarray, Y: np.ndarray | None, T0: np.ndarray, T1: np.ndarray
    ) -> np.ndarray:
        """Per member, the forecast under T1 minus under T0: ``(n_members, n, h)`` (the
        members' mean is the effect; their spread the interval with two members or more)."""
        self._check_forecast(Y)
        x = to_tensor(self._covariates(X))
        y = None if Y is None else to_tensor(self.y_scaler_.transform(Y))
        t0 = to_tensor(self.t_scaler_.transform(T0))
        t1 = to_tensor(self.t_scaler_.transform(T1))
        diffs = []
        for net in self.models_:
            net.eval()
            y1 = self._forecast_member(net, x, y, t1)
            y0 = self._forecast_member(net, x, y, t0)
            diffs.append((y1 - y0).numpy())
        return self.y_scaler_.inverse_difference(np.stack(diffs).astype(np.float64))

    @torch.no_grad()
    def _member_predictions(
        self, X: np.ndarray, T: np.ndarray, units_per_chunk: int = 4096
    ) -> np.ndarray:
        """Scaled predictions of every member under path ``T``: ``(n_members, n, s)``."""
        x = to_tensor(self._covariates(X))
        t = to_tensor(self.t_scaler_.transform(T))
        out = np.empty((len(self.models_), *T.shape))
        for m, net in enumerate(self.models_):
            net.eval()
            for start in range(0, T.shape[0], units_per_chunk):
                sl = slice(start, start + units_per_chunk)
                out[m, sl] = self._predict_member(net, x[sl], t[sl]).numpy()
        return out

    # ---- persistence ---------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        return {
            **self._members_state(),
            "threshold": self.threshold_,
            "strict": self.strict_,
            "extra": self._extra_state(),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self.threshold_ = float(state["threshold"])
        self.strict_ = bool(state["strict"])
        self._set_extra_state(state["extra"])
        self._load_members(state)


class PlanForecasts:
    """Forecasts of a model trained to do without covariates it will not have: with
    ``forecast_steps = h > 0`` each training unit's last ``m`` covariate steps, ``m`` uniform
    in ``0..h`` (:func:`unseen_tail`), are replaced by a learned stand-in, and a forecast
    gives the same stand-in for every plan step (:func:`plan_covariates`). Mixed in before
    :class:`NeuralSequenceEstimator` (the Causal Transformer, R-CRN, CF-RNN, TS-TARNet)."""

    forecast_steps: int

    def _check_forecast_steps(self) -> None:
        f = self.forecast_steps
        if isinstance(f, bool) or not isinstance(f, int | np.integer) or f < 0:
            raise ConfigError(
                f"forecast_steps must be an integer >= 0 (0: no forecasts); got {f!r}."
            )

    def _setup(self, training: TrainingConfig, n_features: int) -> None:
        steps = int(self.n_steps_in_)  # type: ignore[attr-defined]
        if self.forecast_steps >= steps:
            raise ConfigError(
                f"forecast_steps={self.forecast_steps} leaves no observed step in a training "
                f"window of {steps} steps; use forecast_steps <= {steps - 1} (plans up to that "
                f"long), or longer windows."
            )
        super()._setup(training, n_features)  # type: ignore[misc]

    def _training_seen(self, x: torch.Tensor) -> torch.Tensor | None:
        """The training mask of observed covariates of a batch ``x (n, s, p)``; None when the
        model is not trained to forecast."""
        if not self.forecast_steps:
            return None
        return unseen_tail(x.shape[0], x.shape[1], int(self.forecast_steps), x.device)

    def _check_forecast(self, Y: np.ndarray | None) -> None:
        if not self.forecast_steps:
            raise InputError(
                f"{type(self).__name__} was fitted with forecast_steps=0: it reads the "
                "covariates of every step it predicts, which a forecast does not have after "
                "the history. Refit with forecast_steps=h (h at least the plan's length) to "
                "forecast."
            )
        super()._check_forecast(Y)  # type: ignore[misc]

    def _forecast_effect_draws(
        self, X: np.ndarray, Y: np.ndarray | None, T0: np.ndarray, T1: np.ndarray
    ) -> np.ndarray:
        horizon = T0.shape[1] - X.shape[1]
        if self.forecast_steps and horizon > self.forecast_steps:
            raise InputError(
                f"the plan runs {horizon} steps past the history, but this "
                f"{type(self).__name__} was trained to forecast at most "
                f"forecast_steps={self.forecast_steps}; refit with forecast_steps={horizon} "
                "or shorten the plan."
            )
        return super()._forecast_effect_draws(X, Y, T0, T1)  # type: ignore[misc]
