r"""CRN: Counterfactual Recurrent Network (Bica, Alaa, Jordon, van der Schaar, ICLR 2020).

History :math:`H_t = (x_{\le t}, T_{<t}, y_{<t})`. An encoder LSTM builds a representation
:math:`\Phi_t = \Phi(H_t)` that is *balancing*: it should not predict the treatment
:math:`T_t` that is then applied, so that the outcome head :math:`\hat y_t = g(\Phi_t, T_t)`
compares treatments on a representation whose distribution does not depend on them. A decoder
started from :math:`\Phi_k` predicts :math:`\tau` steps ahead under a treatment sequence,
feeding back its own predictions (:class:`~kgcm.estimators._recurrent.EncoderDecoder`).

Adversarial balancing by gradient reversal :math:`R_\lambda` (paper, eq. 4-5, adapted):

.. math::

    L = \sum_t \lVert y_t - g(\Phi_t, T_t) \rVert^2
        - \lambda(p)\, w_T \sum_t \log q(T_t \mid R_\lambda(\Phi_t))

The treatment head :math:`q` minimises its negative log-likelihood; the reversed gradient
makes the encoder maximise it, i.e. strip :math:`\Phi_t` of information about :math:`T_t`.
:math:`\lambda(p) = 2 / (1 + e^{-10 p}) - 1` ramps with training progress :math:`p`. The same
loss is applied to the decoder's representations :math:`\Psi_t`.

Continuous-treatment adaptation (ours; CRN is written for categorical treatments with a
softmax classifier and cross-entropy): the classifier becomes a Gaussian regression head
:math:`T_t \mid \Phi_t \sim N(\mu(\Phi_t), \sigma^2(\Phi_t))` and the cross-entropy its
negative log-likelihood. At the adversarial optimum the best head predicts the marginal
treatment distribution (scaled: :math:`N(0, 1)`) whatever :math:`\Phi_t`.

Other departures: encoder and decoder are trained jointly in one run of the shared loop
(the paper trains the encoder first, then the decoder); decoder start steps are drawn at
random per unit, half of them at 0, which is how ``predict`` uses the model: no outcome is
observed in the window, so :math:`\Phi_0` reads :math:`x_0` only and the decoder rolls out the
whole window under the given path. The effect is
:math:`\hat\tau_t = \hat y_t(T^1) - \hat y_t(T^0)`, two rollouts that differ in every
treatment input and every fed-back outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from kgcm.estimators._recurrent import (
    EncoderDecoder,
    GaussianHead,
    NeuralSequenceEstimator,
    check_horizon,
    dann_schedule,
    decoder_mask,
    decoder_starts,
    gaussian_log_density,
    grad_reverse,
    rollout_val_fn,
)
from kgcm.estimators.training import TrainingConfig

__all__ = ["CRN"]


class CRNNet(nn.Module):
    """Encoder-decoder with a treatment head on each part's representation."""

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
        self.seq = EncoderDecoder(
            n_inputs=n_inputs,
            hidden=hidden,
            rep_dim=rep_dim,
            dropout=dropout,
            decoder_covariates=decoder_covariates,
        )
        self.enc_treatment = GaussianHead(rep_dim, hidden)
        self.dec_treatment = GaussianHead(rep_dim, hidden)


class CRN(NeuralSequenceEstimator):
    """Counterfactual Recurrent Network for a continuous, time-varying treatment.

    Parameters
    ----------
    seed : int
        Seeds initialisation, splits, batches and decoder start steps.
    hidden : int
        LSTM width of encoder and decoder (and of the heads).
    rep_dim : int
        Size of the balancing representation Φ_t (and Ψ_t).
    horizon : int or None
        τ, decoder steps trained per start; None: to the end of the window.
    balance_weight : float
        w_T, weight of the adversarial treatment loss (0: no balancing).
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
        Settings of the shared training loop.

    Attributes
    ----------
    models_ : list of CRNNet
    history_ : list of dict
        Per epoch: ``train_encoder``, ``train_decoder`` (outcome MSEs), ``train_treatment``
        (treatment NLL), ``train_lambda``, ``train_total``, ``val_loss`` (rollout MSE).
    """

    name: ClassVar[str] = "crn"
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
    _label: ClassVar[str] = "CRN"
    _ramps_with_progress: ClassVar[bool] = True  # λ(p) of the reversed gradient
    _positive_ints: ClassVar[tuple[str, ...]] = ("hidden", "rep_dim", "n_ensemble")
    _nonnegative: ClassVar[tuple[str, ...]] = ("balance_weight", "dropout")

    def __init__(
        self,
        *,
        seed: int = 0,
        hidden: int = 32,
        rep_dim: int = 16,
        horizon: int | None = None,
        balance_weight: float = 0.1,
        dropout: float = 0.0,
        decoder_covariates: bool = True,
        n_ensemble: int = 1,
        training: TrainingConfig | Mapping[str, Any] | None = None,
    ) -> None:
        self.seed = seed
        self.hidden = hidden
        self.rep_dim = rep_dim
        self.horizon = horizon
        self.balance_weight = balance_weight
        self.dropout = dropout
        self.decoder_covariates = decoder_covariates
        self.n_ensemble = n_ensemble
        self.training = training

    def _check_params(self) -> TrainingConfig:
        training = super()._check_params()
        check_horizon(self.horizon)
        return training

    def _build(self) -> CRNNet:
        return CRNNet(
            n_inputs=self.n_inputs_,
            hidden=self.hidden,
            rep_dim=self.rep_dim,
            dropout=self.dropout,
            decoder_covariates=bool(self.decoder_covariates),
        )

    def _loss_fn(self, net: CRNNet):
        def loss_fn(batch: dict[str, torch.Tensor], epoch: int):
            x, t, y = batch["x"], batch["t"], batch["y"]
            phi, y_enc = net.seq.encode(x, t, y)
            start = decoder_starts(t.shape[0], t.shape[1], t.device)
            psi, y_dec = net.seq.decode(x, t, phi, start)
            mask = decoder_mask(start, t.shape[1], self.horizon)
            encoder = (y_enc - y).pow(2).mean()
            decoder = ((y_dec - y).pow(2) * mask).sum() / mask.sum()
            loss = encoder + decoder
            parts = {"encoder": encoder.item(), "decoder": decoder.item()}
            if self.balance_weight:
                lam = dann_schedule(self._progress(epoch))
                nll_enc = -gaussian_log_density(t, *net.enc_treatment(grad_reverse(phi, lam)))
                nll_dec = -gaussian_log_density(t, *net.dec_treatment(grad_reverse(psi, lam)))
                nll = nll_enc.mean() + (nll_dec * mask).sum() / mask.sum()
                loss = loss + self.balance_weight * nll
                parts.update(treatment=nll.item(), **{"lambda": lam})
            parts["total"] = loss.item()
            return loss, parts

        return loss_fn

    @staticmethod
    def _val_fn(net: CRNNet):
        return rollout_val_fn(net.seq.predict)

    def _predict_member(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert isinstance(net, CRNNet)
        return net.seq.predict(x, t)

    def _forecast_member(
        self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        assert isinstance(net, CRNNet)
        return net.seq.forecast(x, y, t)
