"""The associative solve of affine maps, ``h_t = A_t h_{t-1} + b_t``, parallel over time.

The linear cells' ``associative`` path (``rnnlab.linear``) and Newton's iterations and adjoint
(``rnnlab.newton``) both solve with it: ``jax.lax.associative_scan`` over the composition of
affine maps ``(A1, b1) then (A2, b2) = (A2 A1, A2 b1 + b2)``, O(log T) depth.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def apply_coefficient(a, v, diagonal: bool = True):
    """``A v``: elementwise for diagonal coefficients ``[..., D]``, a matrix product for ``[..., D, D]``."""
    return a * v if diagonal else jnp.einsum("...ij,...j->...i", a, v)


def solve_affine(a_t, b_t, diagonal: bool = True):
    """``h_t = A_t h_{t-1} + b_t`` from ``h_{-1} = 0`` (fold a nonzero start into ``b_0``) along axis 0,
    by ``jax.lax.associative_scan`` over the composition of affine maps
    ``(A1, b1) then (A2, b2) = (A2 A1, A2 b1 + b2)``; ``A_t`` diagonal ``[T, ..., D]`` or full ``[T, ..., D, D]``."""

    def compose(earlier, later):
        (a1, b1), (a2, b2) = earlier, later
        return (a2 * a1 if diagonal else a2 @ a1), apply_coefficient(a2, b1, diagonal) + b2

    return jax.lax.associative_scan(compose, (a_t, b_t), axis=0)[1]
