r"""Loss terms of the models: pure functions on tensors.

- :func:`gaussian_kl`: :math:`\mathrm{KL}(N(\mu_q, \sigma_q^2) \,\|\, N(\mu_p, \sigma_p^2))`
  summed over the last dimension.
- :func:`mmd_rbf`: unbiased squared maximum mean discrepancy with a sum of RBF kernels
  :math:`k(a, b) = \sum_s \exp(-\lVert a - b\rVert^2 / (2 s^2))` (bandwidths ``s``), as in the
  paper (s in 0.5, 1, 2).
- :func:`warmup`: a linear ramp from 0 to 1 over a number of epochs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["gaussian_kl", "mmd_rbf", "warmup"]


def gaussian_kl(
    mu_q: torch.Tensor,
    logvar_q: torch.Tensor,
    mu_p: torch.Tensor | None = None,
    logvar_p: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL divergence between diagonal Gaussians, summed over the last dim.

    With ``mu_p``/``logvar_p`` left out the prior is ``N(0, I)``.
    """
    if mu_p is None or logvar_p is None:
        return 0.5 * torch.sum(mu_q.pow(2) + logvar_q.exp() - 1.0 - logvar_q, dim=-1)
    var_ratio = (logvar_q - logvar_p).exp()
    diff = (mu_q - mu_p).pow(2) * (-logvar_p).exp()
    return 0.5 * torch.sum(var_ratio + diff - 1.0 - (logvar_q - logvar_p), dim=-1)


def mmd_rbf(
    a: torch.Tensor, b: torch.Tensor, bandwidths: Sequence[float] = (0.5, 1.0, 2.0)
) -> torch.Tensor:
    """Unbiased MMD² between samples ``a`` (n, d) and ``b`` (m, d); needs n, m >= 2."""
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(
            f"mmd_rbf needs at least 2 samples per group; got {a.shape[0]} and {b.shape[0]}."
        )
    n, m = a.shape[0], b.shape[0]

    def kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(x, y).pow(2)
        return sum(torch.exp(-d2 / (2.0 * s * s)) for s in bandwidths)

    kaa, kbb, kab = kernel(a, a), kernel(b, b), kernel(a, b)
    sum_aa = (kaa.sum() - kaa.diagonal().sum()) / (n * (n - 1))
    sum_bb = (kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1))
    return sum_aa + sum_bb - 2.0 * kab.mean()


def warmup(epoch: int, epochs: int) -> float:
    """Linear warm-up factor in [0, 1]: ``min(1, (epoch + 1) / epochs)``; 1 when epochs <= 0."""
    if epochs <= 0:
        return 1.0
    return min(1.0, (epoch + 1) / epochs)
