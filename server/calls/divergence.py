"""SinkhornDivergenceRequest -> three Sinkhorn calls -> SinkhornDivergenceResponse.

S(a, b) = OT(a, b) - (OT(a, a) + OT(b, b)) / 2 + epsilon (|a| - |b|)^2 / 2, with OT the
regularised objective of a Sinkhorn solve (GeomLoss's and ott-jax's debiased divergence,
and `monge.solvers.sinkhorn.sinkhorn_divergence` in-process). With reg_m the divergence
is unbalanced, with ott-jax's semantics: each solve uses the weights
`sinkhorn.divergence_weights` gives and its term is `sinkhorn.divergence_term`, both
computed on the worker. The request is checked as
the SinkhornRequest of the pair (x, y), so its fields are refused with the same words;
the x-x and y-y solves are routed (dense or online) for their own shapes. On the
worker the three run one after another through `sinkhorn_call.run`: padded to size
buckets, in chunks that honour a cancel or deadline.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from monge.server.calls import sinkhorn as sinkhorn_call
from monge.server.config import ServerConfig
from monge.server.errors import InvalidArgument
from monge.server.calls.sinkhorn import SinkhornCall
from monge.v1 import sinkhorn_pb2

_TENSORS = ("x", "y", "a", "b")
_OPTIONAL = ("epsilon", "threshold", "max_iterations")
PAIRS = ("xy", "xx", "yy")


@dataclasses.dataclass(frozen=True)
class DivergenceCall:
    """The three solves, each a validated Sinkhorn call."""

    xy: SinkhornCall
    xx: SinkhornCall
    yy: SinkhornCall


def parse(request: sinkhorn_pb2.SinkhornDivergenceRequest, config: ServerConfig) -> DivergenceCall:
    missing = [(name, "is required (points only: a divergence needs the cost within each cloud too)")
               for name in ("x", "y") if not request.HasField(name)]
    if missing:
        raise InvalidArgument(*missing)
    pair = sinkhorn_pb2.SinkhornRequest(cost=request.cost)
    for name in _TENSORS:  # set fields only: an unset one stays unset ("is required")
        if request.HasField(name):
            getattr(pair, name).CopyFrom(getattr(request, name))
    for name in _OPTIONAL:
        if request.HasField(name):
            setattr(pair, name, getattr(request, name))
    if request.HasField("reg_m"):
        pair.reg_m.CopyFrom(request.reg_m)
    xy = sinkhorn_call.parse(pair, config)
    xx = sinkhorn_call.for_pair(xy, xy.x, xy.a, xy.x, xy.a, config, "x")
    yy = sinkhorn_call.for_pair(xy, xy.y, xy.b, xy.y, xy.b, config, "y")
    return DivergenceCall(xy, xx, yy)


def _unbalanced(call: SinkhornCall) -> bool:
    return call.reg_m is not None and not all(math.isinf(r) for r in call.reg_m)


def run(call: DivergenceCall, stop, progress=None):
    """The three solves in turn; one not started when `stop` is set comes back cancelled.
    Each result's "term" is what enters the divergence (its objective when balanced)."""
    results = {}
    for name in PAIRS:
        one = getattr(call, name)
        if stop.is_set():
            results[name] = (sinkhorn_call._cancelled(one), {}, 0.0)
        elif _unbalanced(one):
            results[name] = _run_unbalanced(one, stop, progress)
        else:
            results[name] = sinkhorn_call.run(one, stop, progress)
        output = results[name][0]
        output.setdefault("term", float(output["objective"]))
    return call, results


def _run_unbalanced(call: SinkhornCall, stop, progress):
    """One term of ott-jax's unbalanced divergence: the solve with weights w^tau, and
    ott-jax's reg_ot_cost from its potentials (`sinkhorn.divergence_term`)."""
    from monge.solvers.sinkhorn import divergence_term, divergence_weights

    n, m = call.shape
    a = np.full(n, 1.0 / n, call.dtype) if call.a is None else call.a
    b = np.full(m, 1.0 / m, call.dtype) if call.b is None else call.b
    (rho_a, rho_b), eps = call.reg_m, call.epsilon
    solved = dataclasses.replace(call, a=np.asarray(divergence_weights(a, rho_a, eps)),
                                 b=np.asarray(divergence_weights(b, rho_b, eps)))
    output, views, seconds = sinkhorn_call.run(solved, stop, progress)
    output["term"] = float(divergence_term(a, b, output["f"], output["g"], call.reg_m, eps))
    return output, views, seconds


def _mass(weights) -> float:
    return 1.0 if weights is None else float(np.sum(weights, dtype=np.float64))


def encode_response(result) -> sinkhorn_pb2.SinkhornDivergenceResponse:
    call, results = result
    objective = {name: float(results[name][0]["term"]) for name in PAIRS}
    # The mass term of the unbalanced formula (zero up to rounding when balanced).
    gap = _mass(call.xy.a) - _mass(call.xy.b)
    divergence = objective["xy"] - 0.5 * (objective["xx"] + objective["yy"]) + 0.5 * call.xy.epsilon * gap**2

    def term(name):
        output, _, seconds = results[name]
        return sinkhorn_pb2.SinkhornDivergenceTerm(
            objective=objective[name], cost=float(output["cost"]),
            diagnostics=sinkhorn_call.diagnostics(output, seconds),
        )

    terms = {name: term(name) for name in PAIRS}
    return sinkhorn_pb2.SinkhornDivergenceResponse(
        divergence=divergence, converged=all(t.diagnostics.converged for t in terms.values()), **terms,
    )
