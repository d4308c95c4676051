"""SinkhornDivergenceRequest -> three Sinkhorn calls -> SinkhornDivergenceResponse.

S(a, b) = OT(a, b) - (OT(a, a) + OT(b, b)) / 2, with OT the regularised objective of
a balanced Sinkhorn solve (GeomLoss's and ott-jax's debiased divergence, and
`monge.solvers.sinkhorn.sinkhorn_divergence` in-process). The request is checked as
the SinkhornRequest of the pair (x, y), so its fields are refused with the same words;
the x-x and y-y solves are routed (dense or online) for their own shapes. On the
worker the three run one after another through `sinkhorn_call.run`: padded to size
buckets, in chunks that honour a cancel or deadline.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from monge.server import sinkhorn_call
from monge.server.config import ServerConfig
from monge.server.errors import InvalidArgument
from monge.server.sinkhorn_call import SinkhornCall
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
    xy = sinkhorn_call.parse(pair, config)
    xx = sinkhorn_call.for_pair(xy, xy.x, xy.a, xy.x, xy.a, config, "x")
    yy = sinkhorn_call.for_pair(xy, xy.y, xy.b, xy.y, xy.b, config, "y")
    return DivergenceCall(xy, xx, yy)


def run(call: DivergenceCall, stop, progress=None):
    """The three solves in turn; one not started when `stop` is set comes back cancelled."""
    results = {}
    for name in PAIRS:
        one = getattr(call, name)
        if stop.is_set():
            results[name] = (sinkhorn_call._cancelled(one), {}, 0.0)
        else:
            results[name] = sinkhorn_call.run(one, stop, progress)
    return call, results


def _mass(weights) -> float:
    return 1.0 if weights is None else float(np.sum(weights, dtype=np.float64))


def encode_response(result) -> sinkhorn_pb2.SinkhornDivergenceResponse:
    call, results = result
    objective = {name: float(results[name][0]["objective"]) for name in PAIRS}
    # The mass term of the unbalanced formula; zero here up to rounding (balanced only).
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
