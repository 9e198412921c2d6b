r"""Loss terms of the models: pure functions on tensors.

- :func:`gaussian_kl`: :math:`\mathrm{KL}(N(\mu_q, \sigma_q^2) \,\|\, N(\mu_p, \sigma_p^2))`
  summed over the last dimension.
- :func:`mmd_rbf`: unbiased squared maximum mean discrepancy with a sum of RBF kernels
  :math:`k(a, b) = \sum_s \exp(-\lVert a - b\rVert^2 / (2 s^2))` (bandwidths ``s``), as in the
  paper (s in 0.5, 1, 2).
- :func:`wasserstein_sinkhorn`: entropy-regularised Wasserstein-1 distance between two samples
  by Sinkhorn iterations, the IPM of CFR-Wass (Shalit et al. 2017).
- :func:`hsic_rbf`: the Hilbert-Schmidt independence criterion between two samples with
  Gaussian kernels whose bandwidths are the median pairwise distances (median heuristic), for
  balancing a representation against a continuous treatment and its history.
- :func:`warmup`: a linear ramp from 0 to 1 over a number of epochs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["gaussian_kl", "hsic_rbf", "mmd_rbf", "warmup", "wasserstein_sinkhorn"]


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


def hsic_rbf(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""Biased HSIC estimate between paired samples ``a`` (n, d) and ``b`` (n, q), n >= 4:

    .. math::

        \mathrm{HSIC} = \frac{1}{(n-1)^2} \operatorname{tr}(K H L H),

    with :math:`K, L` Gaussian kernels on each sample standardised per column, bandwidth the
    median pairwise distance (detached, so the bandwidth does not chase the gradient) and
    :math:`H` the centring matrix. Zero in expectation when ``a`` and ``b`` are independent;
    it captures any dependence, not only between the means of two groups (as a median-split
    MMD does), which suits a continuous treatment and its history.
    """
    if a.shape[0] != b.shape[0] or a.shape[0] < 4:
        raise ValueError(
            f"hsic_rbf needs paired samples of at least 4 rows; got {a.shape[0]} and {b.shape[0]}."
        )
    n = a.shape[0]

    def gram(x: torch.Tensor) -> torch.Tensor:
        x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
        d2 = torch.cdist(x, x).pow(2)
        off = d2[~torch.eye(n, dtype=torch.bool, device=x.device)]
        width2 = off.detach().median().clamp_min(1e-6)
        return torch.exp(-d2 / width2)

    k, l_ = gram(a), gram(b)
    kc = k - k.mean(0, keepdim=True)  # K H
    lc = l_ - l_.mean(0, keepdim=True)  # L H
    return (kc * lc.T).sum() / (n - 1) ** 2


def wasserstein_sinkhorn(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    p: float = 0.5,
    lam: float = 10.0,
    iterations: int = 10,
) -> torch.Tensor:
    r"""Entropic Wasserstein-1 distance between samples ``a`` (n, d) and ``b`` (m, d).

    The IPM of CFR-Wass (Shalit, Johansson, Sontag 2017, after Cuturi & Doucet 2014), computed
    as the paper's code describes it:

    - costs :math:`M_{ij} = \lVert a_i - b_j \rVert_2`, plus one slack point on each side whose
      cost to every real point is :math:`\delta = \max M` (and 0 to the other slack point);
    - masses :math:`p/n` on each point of ``a`` and :math:`1 - p` on its slack point,
      :math:`(1 - p)/m` on each point of ``b`` and :math:`p` on its slack point;
    - the entropic plan :math:`P = \mathrm{diag}(u)\,K\,\mathrm{diag}(v)` with
      :math:`K = \exp(-\lambda M / \bar M)` (the regularisation scales with the mean cost
      :math:`\bar M`), after ``iterations`` Sinkhorn updates, done here in the log domain so
      that no entry of :math:`K` underflows;
    - the distance :math:`2 \sum_{ij} P_{ij} M_{ij}` (the factor 2 is the paper code's, so that
      its weights ``alpha`` carry over).

    The plan is held fixed for the gradient, which flows through the costs (the
    envelope-theorem gradient of the transport cost). The value is close to 0 for identical
    samples (up to the entropic blur, which shrinks as ``lam`` grows) and grows as the samples
    move apart.

    Parameters
    ----------
    a, b : Tensor, shapes (n, d) and (m, d)
        The two samples (treated and control representations); n, m >= 1.
    p : float
        Share of mass on the real points of ``a``, in (0, 1) (the paper's code uses 0.5).
    lam : float
        Sharpness relative to the mean cost, > 0 (the paper's ``wass_lambda``, 10).
    iterations : int
        Sinkhorn updates, >= 1 (the paper's ``wass_iterations``, 10).

    Returns
    -------
    Tensor, shape ()
    """
    n, m = a.shape[0], b.shape[0]
    if n < 1 or m < 1:
        raise ValueError(f"wasserstein_sinkhorn needs at least 1 sample per group; got {n}, {m}.")
    if not 0.0 < p < 1.0 or not lam > 0 or iterations < 1:
        raise ValueError(
            f"wasserstein_sinkhorn needs 0 < p < 1, lam > 0, iterations >= 1; got p={p!r}, "
            f"lam={lam!r}, iterations={iterations!r}."
        )
    sq = (a * a).sum(1, keepdim=True) + (b * b).sum(1) - 2.0 * a @ b.t()
    # the square root is infinitely steep at 0: keep distances off zero, as the paper's code does
    cost = torch.sqrt(sq.clamp_min(1e-10))
    delta = cost.max().detach()
    full = torch.cat(
        [
            torch.cat([cost, delta.expand(n, 1)], dim=1),
            torch.cat([delta.expand(1, m), cost.new_zeros(1, 1)], dim=1),
        ],
        dim=0,
    )
    log_a = torch.log(torch.cat([cost.new_full((n,), p / n), cost.new_full((1,), 1.0 - p)]))
    log_b = torch.log(torch.cat([cost.new_full((m,), (1.0 - p) / m), cost.new_full((1,), p)]))
    with torch.no_grad():
        log_k = -lam * full / cost.mean()
        g = torch.zeros_like(log_b)
        for _ in range(iterations):
            f = log_a - torch.logsumexp(log_k + g[None, :], dim=1)
            g = log_b - torch.logsumexp(log_k + f[:, None], dim=0)
        plan = torch.exp(f[:, None] + log_k + g[None, :])
    return 2.0 * (plan * full).sum()


def warmup(epoch: int, epochs: int) -> float:
    """Linear warm-up factor in [0, 1]: ``min(1, (epoch + 1) / epochs)``; 1 when epochs <= 0."""
    if epochs <= 0:
        return 1.0
    return min(1.0, (epoch + 1) / epochs)
