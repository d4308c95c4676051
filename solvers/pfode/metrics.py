"""Exact errors of probability-flow samplers on Gaussian targets.

For a Gaussian target the score is affine in x, so every fixed-grid sampler is an
affine map x_T -> A x_T + b; pushing the prior's mean and covariance through it gives
the exact law of the samples, and the Bures formula gives the exact W2 to the target.
Numpy, float64: these are references, not service code.
"""

from __future__ import annotations

import numpy as np


def _psd_sqrt(s):
    w, u = np.linalg.eigh(0.5 * (s + s.T))
    return (u * np.sqrt(np.clip(w, 0.0, None))) @ u.T


def gaussian_w2(mean1, cov1, mean2, cov2) -> float:
    """W2 between N(mean1, cov1) and N(mean2, cov2).

    Bures term as min over rotations U of |cov1^1/2 - cov2^1/2 U|_F (U from the SVD of
    cov2^1/2 cov1^1/2): the same number as tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), without
    its cancellation, so errors down to 1e-12 are resolved instead of 1e-8."""
    r1, r2 = _psd_sqrt(np.asarray(cov1, float)), _psd_sqrt(np.asarray(cov2, float))
    w, _, vt = np.linalg.svd(r2 @ r1)
    bures = np.linalg.norm(r1 - r2 @ (w @ vt), "fro")
    return float(np.sqrt(np.sum((np.asarray(mean1) - np.asarray(mean2)) ** 2) + bures**2))


def affine_pushforward(run, mean, cov):
    """Law of run(x) for x ~ N(mean, cov) when `run` (a batch (n, d) -> (n, d) map) is
    affine: run it on the mean and the mean plus each basis vector."""
    d = mean.shape[0]
    points = np.concatenate([mean[None], mean[None] + np.eye(d)])
    out = np.asarray(run(points), float)
    b = out[0]
    a = (out[1:] - b).T  # column j = A e_j
    return b, a @ cov @ a.T
