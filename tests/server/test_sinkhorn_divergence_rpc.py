"""SinkhornDivergence through the real server, against ott-jax (the in-process
`sinkhorn_divergence` is checked against it in tests/solvers)."""

import jax.numpy as jnp
import numpy as np
import pytest
from ott.geometry import pointcloud
from ott.tools import sinkhorn_divergence as ott_divergence

from monge.client import InvalidArgumentError


def _problem(seed, n=12, m=15, d=2):
    rng = np.random.default_rng(seed)
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    return rng.normal(size=(n, d)), rng.normal(size=(m, d)) + 1.0, a / a.sum(), b / b.sum()


def test_divergence_matches_ott(client):
    x, y, a, b = _problem(0)
    r = client.sinkhorn_divergence(x, y, a, b, epsilon=0.5, threshold=1e-12)
    assert r.converged and all(t.diagnostics.converged for t in (r.xy, r.xx, r.yy))
    reference, _ = ott_divergence.sinkhorn_divergence(
        pointcloud.PointCloud, jnp.asarray(x), jnp.asarray(y), a=jnp.asarray(a), b=jnp.asarray(b),
        epsilon=0.5, solve_kwargs=dict(threshold=1e-12, max_iterations=100_000))
    assert r.divergence == pytest.approx(float(reference), rel=1e-9)
    assert r.divergence == pytest.approx(r.xy.objective - (r.xx.objective + r.yy.objective) / 2, rel=1e-12)


def test_divergence_of_a_measure_with_itself_is_zero(client):
    x, _, a, _ = _problem(1)
    r = client.sinkhorn_divergence(x, x, a, a, epsilon=0.5, threshold=1e-12, cost="euclidean")
    assert r.converged and abs(r.divergence) < 1e-12


def test_divergence_refusals_name_the_field(client):
    x, y, a, b = _problem(2)
    with pytest.raises(InvalidArgumentError) as caught:
        client.sinkhorn_divergence(x, y, a, 2 * b)
    assert caught.value.field == "b" and "total mass" in caught.value.violations[0].description
    with pytest.raises(InvalidArgumentError) as caught:
        client.sinkhorn_divergence(x, y[:, :1])
    assert caught.value.field == "y" and "dimension" in caught.value.violations[0].description
    with pytest.raises(InvalidArgumentError) as caught:
        client.sinkhorn_divergence(x, y, epsilon=-1.0, threshold=0.0)
    assert {v.field for v in caught.value.violations} == {"epsilon", "threshold"}


def test_unbalanced_divergence_matches_ott(client):
    # Unequal masses are accepted once reg_m is set; ott-jax's tau = rho / (rho + epsilon).
    x, y, a, b = _problem(3)
    a, b, eps, reg_m = 1.5 * a, 0.7 * b, 0.5, (0.5, 2.0)
    r = client.sinkhorn_divergence(x, y, a, b, epsilon=eps, threshold=1e-12, max_iterations=100_000, reg_m=reg_m)
    assert r.converged
    tau_a, tau_b = (rho / (rho + eps) for rho in reg_m)
    reference, _ = ott_divergence.sinkhorn_divergence(
        pointcloud.PointCloud, jnp.asarray(x), jnp.asarray(y), a=jnp.asarray(a), b=jnp.asarray(b),
        epsilon=eps, solve_kwargs=dict(threshold=1e-12, max_iterations=100_000, tau_a=tau_a, tau_b=tau_b))
    assert r.divergence == pytest.approx(float(reference), rel=1e-9)
    mass_term = 0.5 * eps * (a.sum() - b.sum()) ** 2
    assert r.divergence == pytest.approx(r.xy.objective - (r.xx.objective + r.yy.objective) / 2 + mass_term,
                                         rel=1e-12)
