r"""CEVAE, the causal effect variational autoencoder (Louizos, Shalit, Mooij, Sontag, Zemel, Welling
2017, "Causal Effect Inference with Deep Latent-Variable Models", NeurIPS).

Generative story, per sample (covariates split into binary :math:`x_b` and continuous
:math:`x_c`; binary treatment :math:`t`; outcome :math:`y` in standardised units):

.. math::

    z &\sim p(z) = N(0, I_d) \\
    x_b \mid z &\sim \mathrm{Bernoulli}(\sigma(f_b(z))) \\
    x_c \mid z &\sim N(\mu_c(z), \sigma_c^2(z)) \\
    t \mid z &\sim \mathrm{Bernoulli}(\sigma(f_t(z))) \\
    y \mid t, z &\sim N(t\, f_1(z) + (1 - t)\, f_0(z),\ 1)

``z`` stands for the hidden confounders of which ``x`` are noisy proxies; ``f_0, f_1`` are two
outcome heads (the TARNet-style split of the paper).

Inference network, with the same head split on ``t``:

.. math::

    q(t \mid x) &= \mathrm{Bernoulli}(\sigma(g_t(x))) \\
    q(y \mid x, t) &= N(t\, g_1(x) + (1 - t)\, g_0(x),\ 1) \\
    q(z \mid x, t, y) &= N(t\, \mu_1(x, y) + (1 - t)\, \mu_0(x, y),\
                            (t\, \sigma_1(x, y) + (1 - t)\, \sigma_0(x, y))^2)

Loss (per sample, averaged): the negative ELBO plus the two auxiliary log-likelihoods that train
:math:`q(t \mid x)` and :math:`q(y \mid x, t)` for test time,

.. math::

    -\mathbb{E}_{q(z \mid x, t, y)}[\log p(x_b, x_c \mid z) + \log p(t \mid z)
        + \log p(y \mid t, z)] + \mathrm{KL}(q(z \mid x, t, y) \,\|\, p(z))
    - \log q(t \mid x) - \log q(y \mid x, t).

Effects. At test time only ``x`` is known: draw :math:`t^{(s)} \sim q(t \mid x)`,
:math:`y^{(s)} \sim q(y \mid x, t^{(s)})`, :math:`z^{(s)} \sim q(z \mid x, t^{(s)}, y^{(s)})`,
and compare the heads,

.. math::

    \hat\tau = \frac1S \sum_{s=1}^S f_{T^1}(z^{(s)}) - f_{T^0}(z^{(s)}),

with intervals from the quantiles of those ``S`` draws (latent uncertainty only, not the
uncertainty of the fitted weights).

Static method: each ``(unit, step)`` is one independent sample with covariates ``X[unit, step]``;
the history is ignored.

Settings follow the paper's IHDP experiments: latent size 20, ELU networks of 200 units with 3
hidden layers on each path, L2 weight decay 1e-4, mini-batches of 100, 100 draws at test time.
Departures, and why: Adam with the shared loop's plateau schedule and early stopping on the
validation objective (the paper used Adamax with exponential decay and selected on the
validation objective too); continuous covariates are standardised on the training data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from kgcm.errors import ConfigError, InputError
from kgcm.estimators._static import (
    NeuralStaticEstimator,
    check_binary_paths,
    check_binary_treatment,
    check_positive_int,
    elu_mlp,
    merge_training,
)
from kgcm.estimators.base import ValidatedData
from kgcm.estimators.training import TrainingConfig, to_tensor
from kgcm.losses import gaussian_kl

__all__ = ["CEVAE"]

_TRAINING_DEFAULTS: dict[str, Any] = {
    "batch_size": 100,
    "learning_rate": 1e-3,
    "weight_decay": 1e-4,
    "max_epochs": 300,
    "patience": 30,
    "min_epochs": 20,
    "lr_patience": 10,
    "val_fraction": 0.3,
}
_LOG_2PI = float(np.log(2.0 * np.pi))
_MIN_SCALE = 1e-3


# --------------------------------------------------------------------------------------------
# Building blocks


def _normal_log_prob(x: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(x; mean, scale^2)."""
    return -0.5 * (((x - mean) / scale) ** 2 + _LOG_2PI) - torch.log(scale)


def _bernoulli_log_prob(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Elementwise log Bernoulli(x; sigmoid(logits))."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none")


def _by_arm(t: torch.Tensor, a0: torch.Tensor, a1: torch.Tensor) -> torch.Tensor:
    """``t * a1 + (1 - t) * a0`` with ``t`` (...,) broadcast over a trailing dim of ``a``."""
    w = t.unsqueeze(-1)
    return w * a1 + (1.0 - w) * a0


class TwoHeads(nn.Module):
    """Two heads of one architecture, one per treatment arm."""

    def __init__(self, sizes: Sequence[int]) -> None:
        super().__init__()
        self.h0 = elu_mlp(sizes)
        self.h1 = elu_mlp(sizes)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.h0(h), self.h1(h)


# --------------------------------------------------------------------------------------------
# Generative model and inference network


class CEVAENet(nn.Module):
    """The generative model p and the inference network q of CEVAE."""

    def __init__(self, binary: np.ndarray, *, latent_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        p = int(binary.size)
        n_bin, n_cont = int(binary.sum()), int((~binary).sum())
        d, h = latent_dim, hidden
        self.latent_dim = latent_dim
        self.register_buffer("binary", torch.as_tensor(binary, dtype=torch.bool))
        # p(x | z), p(t | z), p(y | t, z)
        self.x_bin = elu_mlp([d] + [h] * (layers - 1) + [n_bin]) if n_bin else None
        self.x_cont = elu_mlp([d] + [h] * (layers - 1) + [2 * n_cont]) if n_cont else None
        self.t_logit = elu_mlp([d, h, 1])
        self.y_heads = TwoHeads([d] + [h] * layers + [1])
        # q(t | x), q(y | x, t), q(z | x, t, y)
        self.q_t = elu_mlp([p, d, 1])
        self.q_y_trunk = elu_mlp([p] + [h] * (layers - 1), activate_last=True)
        self.q_y_heads = TwoHeads([h, h, 1])
        self.q_z_trunk = elu_mlp([p + 1] + [h] * (layers - 1), activate_last=True)
        self.q_z_heads = TwoHeads([h, h, 2 * d])

    # ---- inference network -------------------------------------------------------------
    def q_t_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(t = 1 | x), shape (...,)."""
        return self.q_t(x).squeeze(-1)

    def q_y_means(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Means of q(y | x, t = 0) and q(y | x, t = 1), each (...,)."""
        y0, y1 = self.q_y_heads(self.q_y_trunk(x))
        return y0.squeeze(-1), y1.squeeze(-1)

    def q_z(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and scale of q(z | x, t, y), each (..., latent_dim)."""
        h = self.q_z_trunk(torch.cat([x, y.unsqueeze(-1)], dim=-1))
        out0, out1 = self.q_z_heads(h)
        out = _by_arm(t, out0, out1)
        mean, raw = out.chunk(2, dim=-1)
        return mean, F.softplus(raw) + _MIN_SCALE

    # ---- generative model --------------------------------------------------------------
    def y_means(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Means of p(y | t = 0, z) and p(y | t = 1, z), each (...,)."""
        y0, y1 = self.y_heads(z)
        return y0.squeeze(-1), y1.squeeze(-1)

    def log_px(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) summed over covariates, (...,)."""
        total = torch.zeros(z.shape[:-1], device=z.device)
        if self.x_bin is not None:
            total = total + _bernoulli_log_prob(x[..., self.binary], self.x_bin(z)).sum(-1)
        if self.x_cont is not None:
            mean, raw = self.x_cont(z).chunk(2, dim=-1)
            scale = F.softplus(raw) + _MIN_SCALE
            total = total + _normal_log_prob(x[..., ~self.binary], mean, scale).sum(-1)
        return total

    def objective(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, *, sample: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-sample loss (...,): negative ELBO minus the auxiliary log-likelihoods.

        ``sample=False`` takes z at its posterior mean (a deterministic validation score).
        """
        mean, scale = self.q_z(x, t, y)
        z = mean + scale * torch.randn_like(mean) if sample else mean
        log_px = self.log_px(x, z)
        log_pt = _bernoulli_log_prob(t, self.t_logit(z).squeeze(-1))
        y0, y1 = self.y_means(z)
        log_py = _normal_log_prob(y, t * y1 + (1 - t) * y0, torch.ones_like(y))
        kl = gaussian_kl(mean, 2.0 * torch.log(scale))
        log_qt = _bernoulli_log_prob(t, self.q_t_logits(x))
        q0, q1 = self.q_y_means(x)
        log_qy = _normal_log_prob(y, t * q1 + (1 - t) * q0, torch.ones_like(y))
        loss = -(log_px + log_pt + log_py - kl) - (log_qt + log_qy)
        parts = {
            "log_px": log_px,
            "log_pt": log_pt,
            "log_py": log_py,
            "kl": kl,
            "aux_t": log_qt,
            "aux_y": log_qy,
        }
        return loss, parts

    def sample_z(self, x: torch.Tensor, draws: int, gen: torch.Generator) -> torch.Tensor:
        """Draws of z ~ q(z | x) through t ~ q(t | x), y ~ q(y | x, t): (draws, ..., latent)."""
        shape = (draws, *x.shape[:-1])
        p_t = torch.sigmoid(self.q_t_logits(x))
        t = (torch.rand(shape, generator=gen) < p_t).float()
        q0, q1 = self.q_y_means(x)
        y = t * q1 + (1 - t) * q0 + torch.randn(shape, generator=gen)
        xs = x.expand(draws, *x.shape)
        mean, scale = self.q_z(xs, t, y)
        return mean + scale * torch.randn(mean.shape, generator=gen)


# --------------------------------------------------------------------------------------------
# The estimator


class CEVAE(NeuralStaticEstimator):
    """Causal effect VAE (Louizos et al. 2017) for a binary treatment.

    Parameters
    ----------
    seed : int
        Seeds initialisation, split, batches and the test-time draws. Same seed, same numbers.
    latent_dim : int
        Size of z (paper: 20).
    hidden : int
        Units per hidden layer (paper: 200).
    layers : int
        Hidden layers on each path (paper: 3).
    n_draws : int
        Draws of z ~ q(z | x) for predictions, effects and intervals (paper: 100).
    binary_features : sequence of int, optional
        Columns of X modelled as Bernoulli (values 0/1); None takes every column whose
        training values are all 0 or 1. The others are standardised and modelled as Gaussian.
    training : TrainingConfig or dict, optional
        Settings of the shared loop; a dict overrides single fields of this model's defaults
        (batch 100, learning rate 1e-3, weight decay 1e-4, up to 300 epochs, patience 30, 30%
        validation).

    Attributes
    ----------
    model_ : CEVAENet
        The fitted networks (CPU, eval mode).
    binary_mask_ : ndarray of bool, shape (n_features,)
        Which covariates are Bernoulli.
    history_ : list of dict
        Per-epoch means of ``train_log_px``, ``train_log_pt``, ``train_log_py``, ``train_kl``,
        ``train_aux_t``, ``train_aux_y``, ``train_total``; ``val_loss`` (the objective at the
        posterior mean), ``lr``.
    """

    name: ClassVar[str] = "cevae"
    #: fast settings for the test suite (about a second a fit)
    test_params: ClassVar[dict[str, Any]] = {
        "latent_dim": 4,
        "hidden": 16,
        "layers": 2,
        "n_draws": 8,
        "training": {"max_epochs": 3, "progress": False},
    }
    tags: ClassVar[dict[str, bool]] = {
        "intervals": True,
        "needs_covariates": True,
        "sequence": False,
        "binary_treatment": True,
    }

    model_: CEVAENet

    def __init__(
        self,
        *,
        seed: int = 0,
        latent_dim: int = 20,
        hidden: int = 200,
        layers: int = 3,
        n_draws: int = 100,
        binary_features: Sequence[int] | None = None,
        training: TrainingConfig | Mapping[str, Any] | None = None,
    ) -> None:
        self.seed = seed
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.layers = layers
        self.n_draws = n_draws
        self.binary_features = binary_features
        self.training = training

    def _check_params(self) -> TrainingConfig:
        for key in ("latent_dim", "hidden", "layers", "n_draws"):
            check_positive_int(getattr(self, key), key)
        return merge_training(self.training, _TRAINING_DEFAULTS)

    def _binary_mask(self, X: np.ndarray) -> np.ndarray:
        p = X.shape[2]
        is01 = np.all((X == 0.0) | (X == 1.0), axis=(0, 1))
        if self.binary_features is None:
            return is01
        mask = np.zeros(p, dtype=bool)
        for j in self.binary_features:
            if isinstance(j, bool) or not isinstance(j, int | np.integer) or not 0 <= j < p:
                raise ConfigError(
                    f"binary_features must list column indices in 0..{p - 1}; got {j!r}."
                )
            if not is01[j]:
                raise InputError(
                    f"binary_features names column {j}, but X[..., {j}] holds values other "
                    f"than 0 and 1; recode it to 0/1 or leave it out of binary_features."
                )
            mask[j] = True
        return mask

    def _inputs(self, X: np.ndarray) -> torch.Tensor:
        """Binary covariates as given (0/1), continuous ones standardised."""
        return to_tensor(np.where(self.binary_mask_, X, self.x_scaler_.transform(X)))

    def _build(self) -> CEVAENet:
        return CEVAENet(
            self.binary_mask_,
            latent_dim=self.latent_dim,
            hidden=self.hidden,
            layers=self.layers,
        )

    # ---- fit (the loop itself: NeuralStaticEstimator) ------------------------------------
    def _prepare(self, data: ValidatedData) -> None:
        self.binary_mask_ = self._binary_mask(data.X)

    @staticmethod
    def _loss_fn(net: CEVAENet):
        def step(batch: dict[str, torch.Tensor], epoch: int):
            del epoch
            loss, parts = net.objective(batch["x"], batch["t"], batch["y"], sample=True)
            total = loss.mean()
            record = {k: v.detach().mean().item() for k, v in parts.items()}
            record["total"] = total.item()
            return total, record

        return step

    @staticmethod
    def _val_fn(net: CEVAENet):
        def score(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            loss, _ = net.objective(batch["x"], batch["t"], batch["y"], sample=False)
            return loss.mean()

        return score

    # ---- prediction ----------------------------------------------------------------------
    @torch.no_grad()
    def _outcome_draws(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Draws of both outcome means, each (n_draws, n_units, n_steps), standardised."""
        net = self.model_
        x = self._inputs(X)
        gen = torch.Generator().manual_seed(int(self.seed))
        draws = int(self.n_draws)
        # about 65k (draw, sample) rows per chunk keeps memory bounded on large grids
        chunk = max(1, 65536 // (draws * x.shape[1]))
        out0, out1 = [], []
        for start in range(0, x.shape[0], chunk):
            z = net.sample_z(x[start : start + chunk], draws, gen)
            y0, y1 = net.y_means(z)
            out0.append(y0.double().numpy())
            out1.append(y1.double().numpy())
        return np.concatenate(out0, axis=1), np.concatenate(out1, axis=1)

    def _predict(self, X: np.ndarray, T: np.ndarray) -> np.ndarray:
        check_binary_treatment(T, "T", type(self).__name__)
        y0, y1 = self._outcome_draws(X)
        return self.y_scaler_.inverse(np.where(T > 0.5, y1, y0).mean(axis=0))

    def _effect_draws(self, X: np.ndarray, T0: np.ndarray, T1: np.ndarray) -> np.ndarray:
        check_binary_paths(T0, T1, type(self).__name__)
        y0, y1 = self._outcome_draws(X)
        diff = np.where(T1 > 0.5, y1, y0) - np.where(T0 > 0.5, y1, y0)
        return self.y_scaler_.inverse_difference(diff)

    # ---- persistence (the network, history and device: NeuralStaticEstimator) -----------
    def _extra_state(self) -> dict[str, Any]:
        return {"binary_mask": self.binary_mask_.tolist()}

    def _set_extra_state(self, state: dict[str, Any]) -> None:
        self.binary_mask_ = np.asarray(state["binary_mask"], dtype=bool)
