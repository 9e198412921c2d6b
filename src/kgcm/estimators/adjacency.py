"""Physical knowledge for the decoder: which covariate may explain which.

Each covariate gets a *role* from its name (:data:`ROLES`); the allowed edges between roles
come from a list of physical edges, by default

    ssh → velocity → ice,   ssh → ice

(SSH gradients drive geostrophic surface currents; currents and SSH-linked ocean heat move and
melt the ice). The mask ``M`` is ``(n_features, n_features)`` with ``M[i, j] = 1`` when feature
``i`` may feed the decoder of feature ``j``; the diagonal is always 1 (a feature decodes from its
own latent block). Features of one role may feed each other (``uo`` and ``vo`` are one current).

Covariates without a known role (latitude, day-of-year, anything unnamed) get no fixed edges:
their entries are *learnable* (a sigmoid gate with an L1 penalty), so without names the whole
mask is learned.

Edges may also name features directly (``("zos", "uo")``) and replace the default list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kgcm.errors import ConfigError

__all__ = ["DEFAULT_EDGES", "ROLES", "AdjacencySpec", "build_adjacency", "role_of"]

#: Known covariate names (lower case) for each physical role.
ROLES: dict[str, frozenset[str]] = {
    "ssh": frozenset({"zos", "ssh", "sossheig", "sla", "adt", "sea_surface_height"}),
    "velocity": frozenset(
        {
            "uo", "vo", "uoe", "von", "total_vel", "speed", "velocity", "treatment_speed",
            "usi", "vsi", "vxo", "vyo", "vxsi", "vysi", "vozocrtx", "vomecrty",
            "iicevelu", "iicevelv", "u", "v", "ice_speed",
        }
    ),
    "ice": frozenset(
        {"sithick", "siconc", "sivol", "heff", "hiday", "iicethic", "sea_ice_extent",
         "sea_ice_thickness", "analysis_sea_ice_thickness"}
    ),
}  # fmt: skip

#: The default physical structure: SSH → velocity → SIT, and SSH → SIT.
DEFAULT_EDGES: tuple[tuple[str, str], ...] = (
    ("ssh", "velocity"),
    ("velocity", "ice"),
    ("ssh", "ice"),
)


def role_of(name: str) -> str | None:
    """The physical role of a covariate name, or None."""
    key = name.strip().lower()
    for role, names in ROLES.items():
        if key in names:
            return role
    return None


@dataclass(frozen=True)
class AdjacencySpec:
    """Allowed and learnable entries of the decoder mask, each ``(n_features, n_features)``."""

    fixed: np.ndarray  # 1 where an edge is fixed on (physics or diagonal)
    learnable: np.ndarray  # 1 where an edge is gated by a learned sigmoid

    @property
    def n_features(self) -> int:
        return int(self.fixed.shape[0])


def build_adjacency(
    feature_names: Sequence[str] | None,
    n_features: int,
    *,
    edges: Sequence[Sequence[str]] | None = None,
    learn_within_allowed: bool = False,
) -> AdjacencySpec:
    """Mask spec from covariate names and physical edges.

    Parameters
    ----------
    feature_names : names of the covariates in X's order, or None (everything learned).
    edges : (parent, child) pairs of roles or feature names; default :data:`DEFAULT_EDGES`.
    learn_within_allowed : physical edges become learnable gates (initialised open) instead
        of fixed ones; forbidden edges stay 0.
    """
    fixed = np.eye(n_features)
    learnable = np.zeros((n_features, n_features))
    if feature_names is None:
        learnable = 1.0 - np.eye(n_features)
        return AdjacencySpec(fixed=fixed, learnable=learnable)
    names = [str(n) for n in feature_names]
    roles = [role_of(n) for n in names]
    edge_list = [tuple(e) for e in (DEFAULT_EDGES if edges is None else edges)]
    known_tokens = set(ROLES) | {n.lower() for n in names}
    for edge in edge_list:
        if len(edge) != 2:
            raise ConfigError(f"each edge must be a (parent, child) pair; got {edge!r}.")
        for token in edge:
            if str(token).lower() not in known_tokens:
                raise ConfigError(
                    f"edge {edge!r} names {token!r}, which is neither a role {sorted(ROLES)} nor "
                    f"a covariate {names}; fix the edge list or the covariate names."
                )

    def matches(token: str, i: int) -> bool:
        t = token.lower()
        return t == names[i].lower() or (roles[i] is not None and t == roles[i])

    allowed = np.zeros((n_features, n_features))
    for parent, child in edge_list:
        for i in range(n_features):
            if not matches(parent, i):
                continue
            for j in range(n_features):
                if i != j and matches(child, j):
                    allowed[i, j] = 1.0
    for i in range(n_features):
        for j in range(n_features):
            if i != j and roles[i] is not None and roles[i] == roles[j]:
                allowed[i, j] = 1.0
    unknown = np.array([r is None for r in roles])
    free = (unknown[:, None] | unknown[None, :]) & ~np.eye(n_features, dtype=bool)
    if learn_within_allowed:
        learnable = np.maximum(allowed, free)
    else:
        fixed = np.maximum(fixed, allowed)
        learnable = free.astype(float) * (1 - fixed)
    return AdjacencySpec(fixed=fixed, learnable=learnable.astype(float))
