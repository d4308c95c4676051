"""Decode and check request fields, naming the field at fault in every error.

Each function answers one question about one field and raises `InvalidArgument`;
`Violations` collects several so a caller learns about all bad fields at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import numpy as np

from monge.v1.codec import TensorError, check, decode, encode
from monge.server.config import ServerConfig
from monge.server.errors import InvalidArgument
from monge.solvers.exact import ExactConfig
from monge.v1 import sinkhorn_pb2, tensor_pb2

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Violations:
    """Collects field violations; `raise_if_any()` raises them together."""

    def __init__(self):
        self.items: list[tuple[str, str]] = []

    @contextlib.contextmanager
    def check(self):
        try:
            yield
        except InvalidArgument as error:
            self.items += error.violations

    def add(self, field: str, description: str):
        self.items.append((field, description))

    def raise_if_any(self):
        if self.items:
            raise InvalidArgument(*self.items)


def float_tensor(message, field: str, *, ndim: int, prefix: str = "", max_points: int | None = None,
                 point_axes: tuple[int, ...] = (0,), length: int | None = None,
                 limit: str = "max_points", required: str | None = None) -> np.ndarray | None:
    """A float32/float64 tensor of the given rank with finite entries, or None if unset
    (`required`: refused when unset, with this message, e.g. "is required (n, d)").

    Everything that the header (dtype, shape, byte count) can tell is checked before the
    bytes are decoded: the rank, `max_points` on the `point_axes` (the server's limit
    named `limit`: `max_points`, or `max_samples` for probability-flow data), and
    `length`, the extent a 1-D tensor must have."""
    if not message.HasField(field):
        if required is not None:
            raise InvalidArgument.field(prefix + field, required)
        return None
    name = prefix + field
    tensor: tensor_pb2.Tensor = getattr(message, field)
    try:
        dtype, shape = check(tensor, name)
    except TensorError as error:
        raise InvalidArgument.field(error.field, error.description) from None
    if dtype not in FLOAT_DTYPES:
        raise InvalidArgument.field(name, f"dtype must be float32 or float64, got {dtype.name}")
    if len(shape) != ndim:
        shown = list(shape) if len(shape) <= 8 else f"of {len(shape)} dimensions"
        raise InvalidArgument.field(name, f"must have {ndim} dimension(s), got shape {shown}")
    if max_points is not None:
        for axis in point_axes:
            if shape[axis] > max_points:
                per = " per measure" if limit == "max_points" else ""
                raise InvalidArgument.field(
                    name, f"has {shape[axis]:,} points (shape {list(shape)}), over this server's "
                          f"limit of {max_points:,} points{per} ({limit})")
    if length is not None and shape[0] != length:
        raise InvalidArgument.field(name, f"has {shape[0]} entries but the measure has {length} points")
    if math.prod(shape) == 0:
        raise InvalidArgument.field(name, f"is empty (shape {list(shape)})")
    array = decode(tensor, name)
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise InvalidArgument.field(name, f"has {bad} NaN or infinite entries")
    return array


def weights(message, field: str, size: int, *, prefix: str = "") -> np.ndarray | None:
    """Nonnegative weights of the given length with a positive total, or None if unset."""
    w = float_tensor(message, field, ndim=1, prefix=prefix, length=size)
    if w is None:
        return None
    name = prefix + field
    if np.any(w < 0):
        raise InvalidArgument.field(name, f"has {int(np.sum(w < 0))} negative entries")
    if not w.sum() > 0:
        raise InvalidArgument.field(name, "total mass is zero")
    return w


def both_weights(message, shape: tuple[int, int], errors: Violations, *, balanced: bool = False):
    """Weights a (n,) and b (m,), None where unset (uniform); `balanced`: with equal totals."""
    a = b = None
    with errors.check():
        a = weights(message, "a", shape[0])
    with errors.check():
        b = weights(message, "b", shape[1])
    if balanced and not errors.items:
        check_equal_mass(a, b, errors)
    return a, b


def positive_setting(message, field: str, default, errors: Violations) -> float | None:
    """An optional positive setting (its default when unset); None when it is refused."""
    with errors.check():
        return positive(optional_value(message, field, default), field)
    return None


def iteration_cap(message, default: int, errors: Violations, config: ServerConfig) -> int | None:
    """`max_iterations` in [1, the server's limit] (the default when unset); None when refused."""
    with errors.check():
        return integer_in_range(optional_value(message, "max_iterations", default), "max_iterations", 1,
                                config.max_iterations, limit="max_iterations")
    return None


def positive(value: float, field: str, *, allow_inf: bool = False) -> float:
    """A positive number (finite unless allowed)."""
    if math.isnan(value) or value <= 0 or (math.isinf(value) and not allow_inf):
        kind = "a positive number" if allow_inf else "a positive finite number"
        raise InvalidArgument.field(field, f"must be {kind}, got {value}")
    return float(value)


def optional_value(message, field: str, default):
    return getattr(message, field) if message.HasField(field) else default


def integer_in_range(value: int, field: str, low: int, high: int, *, limit: str | None = None) -> int:
    """`limit`: the name of the server's limit that `high` is, said when `value` is over it."""
    if not low <= value <= high:
        over = f" ({high:,} is this server's limit, {limit})" if limit and value > high else ""
        raise InvalidArgument.field(field, f"must be in [{low}, {high}], got {value}{over}")
    return int(value)


def known_enum(value: int, enum_type, field: str) -> int:
    """An enum value this server knows (proto3 keeps unknown numbers as plain ints)."""
    if value not in enum_type.values():
        raise InvalidArgument.field(field, f"unknown value {value}")
    return value


def choice(message, field: str, table: dict, errors: Violations, fallback, *, name: str | None = None):
    """`table[message.<field>]` for an enum field; a value not in the table (proto3 keeps
    unknown numbers as plain ints) is a violation of `name` (default: the field) and
    `fallback` stands in so that the rest of the request is still checked."""
    value = getattr(message, field)
    if value in table:
        return table[value]
    errors.add(name or field, f"unknown value {value}")
    return fallback


# -- what the static OT calls share (Sinkhorn, exact, sparsity-constrained) ------------

# Balanced solvers accept totals that differ by this relative amount (the exact solver's).
MASS_TOLERANCE = ExactConfig().mass_tolerance

COSTS = {
    sinkhorn_pb2.COST_FUNCTION_UNSPECIFIED: "sqeuclidean",
    sinkhorn_pb2.COST_FUNCTION_SQEUCLIDEAN: "sqeuclidean",
    sinkhorn_pb2.COST_FUNCTION_EUCLIDEAN: "euclidean",
}


@dataclasses.dataclass(frozen=True)
class TransportArrays:
    """A validated problem's arrays: points x, y or a cost matrix, and weights a, b
    (None: uniform). The calls of Sinkhorn, exact and sparsity-constrained OT extend it."""

    x: np.ndarray | None
    y: np.ndarray | None
    cost_matrix: np.ndarray | None
    a: np.ndarray | None
    b: np.ndarray | None

    @property
    def shape(self) -> tuple[int, int]:
        if self.cost_matrix is not None:
            return self.cost_matrix.shape
        return self.x.shape[0], self.y.shape[0]

    @property
    def dtype(self) -> np.dtype:
        return (self.cost_matrix if self.cost_matrix is not None else self.x).dtype


def arrays_in(dtype, **arrays) -> dict:
    """The arrays (None stays None) in one dtype, for a TransportArrays."""
    return {name: None if array is None else np.asarray(array).astype(dtype, copy=False)
            for name, array in arrays.items()}


def points_or_matrix(request, errors: Violations, config: ServerConfig):
    """(x, y, cost_matrix, shape, dtype) of a request with fields x, y and cost_matrix
    (Sinkhorn's, and the exact and sparsity-constrained calls'): either points with
    the same dimension, or a matrix, with at most `config.max_points` points per
    measure (checked on the shapes, before decoding). Raises the violations found so
    far if not."""
    x = y = cost_matrix = None
    limit = config.max_points
    with errors.check():
        x = float_tensor(request, "x", ndim=2, max_points=limit)
    with errors.check():
        y = float_tensor(request, "y", ndim=2, max_points=limit)
    with errors.check():
        cost_matrix = float_tensor(request, "cost_matrix", ndim=2, max_points=limit, point_axes=(0, 1))
    errors.raise_if_any()

    if cost_matrix is not None:
        if x is not None or y is not None:
            errors.add("cost_matrix", "give either x and y, or cost_matrix, not both")
        shape = cost_matrix.shape
        dtype = cost_matrix.dtype
    elif x is None or y is None:
        errors.add("x" if x is None else "y", "is required (or give cost_matrix)")
        errors.raise_if_any()
    else:
        if x.shape[1] != y.shape[1]:
            errors.add("y", f"has dimension {y.shape[1]} but x has dimension {x.shape[1]}")
        shape = (x.shape[0], y.shape[0])
        dtype = np.result_type(x, y)
    errors.raise_if_any()
    return x, y, cost_matrix, shape, dtype


def check_equal_mass(a, b, errors: Violations, tolerance: float = MASS_TOLERANCE, *,
                     remedy: str = ""):
    """Balanced solvers need equal total masses (uniform weights have mass 1). `remedy`,
    when the call has an unbalanced form, says how to ask for it."""
    total_a = float(a.sum()) if a is not None else 1.0
    total_b = float(b.sum()) if b is not None else 1.0
    if abs(total_a - total_b) > tolerance * max(total_a, total_b):
        errors.add("b", f"total mass {total_b!r} differs from a's {total_a!r}; this solver is "
                        "balanced (both measures must have the same total mass)" + remedy)


def check_costs_finite(x, y, p: float, dtype, errors: Violations):
    """The largest cost |x - y|^p between the points is at most (bounding-box diameter)^p;
    refuse points whose costs could overflow `dtype` (NaN or infinite costs)."""
    span = np.maximum(x.max(0), y.max(0)).astype(np.float64) - np.minimum(x.min(0), y.min(0))
    with np.errstate(over="ignore", invalid="ignore"):
        diameter = float(np.sqrt(np.sum(np.square(span / 2.0))) * 2.0)
        bound = diameter**p if math.isfinite(diameter) else math.inf
    if not bound <= np.finfo(dtype).max:
        errors.add("x", f"costs between these points reach about {bound:.3g}, over the largest "
                        f"{np.dtype(dtype).name} ({np.finfo(dtype).max:.3g}): they would not be finite")


def encode_sparse(shape, rows, cols, values) -> tensor_pb2.SparseMatrix:
    return tensor_pb2.SparseMatrix(
        shape=list(shape),
        rows=encode(np.asarray(rows, dtype=np.int64)),
        cols=encode(np.asarray(cols, dtype=np.int64)),
        values=encode(np.asarray(values)),
    )
