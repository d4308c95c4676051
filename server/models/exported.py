"""Networks that callers export with `jax.export`, checked on the worker before they run.

A request's `ProbabilityFlowModel.exported` carries `jax.export.Exported.serialize()`
bytes: a StableHLO module, its signature (input and output shapes and dtypes, with
symbolic dimensions), the platforms it was lowered for, and optionally its VJP. None of
it is Python and nothing is unpickled; the module can still reach outside XLA through
custom calls (host callbacks call Python functions registered in the process; other
targets run native kernels) and host transfers, so `load` refuses every custom call but
XLA's own linear-algebra and sharding targets, and every send, receive, infeed and
outfeed, in the module and in the VJP it will run.

`load` deserializes (which needs JAX: it runs on the worker, in the call's `run`; the
server process's `parse` checks only the size and the request's own fields) and checks,
each failure an `InvalidArgument` naming the artifact's field:

- the bytes deserialize, for one device;
- the worker's platform (cpu or cuda) is among those it was exported for;
- f(x, t) -> output: two array inputs and one array output, x of shape
  (batch, *event_shape) and the output the same, t of shape (batch,), all in the call's
  float dtype; the batch dimension one symbol, the event dimensions concrete;
- its StableHLO (and, for log-likelihoods, its VJP's) has only allowed dialects,
  custom calls (`ALLOWED_CUSTOM_CALLS`, LAPACK / cuSOLVER kernels) and no host transfer;
- it lowers, and its shapes refine, at the batch sizes the call uses (a symbolic
  constraint such as b >= 16 is found here, not mid-solve);
- for log-likelihoods, a VJP (they differentiate the network in reverse mode).

Equal artifacts share compiled programs (`FunctionModel.from_exported` keys them by
content); distinct ones are bounded by `CACHED_ARTIFACT_BYTES`.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

from monge.server.errors import InvalidArgument

# Custom-call targets an exported network may use: XLA's LAPACK and cuSOLVER / hipSOLVER
# kernels (the FFI targets jax.export guarantees stable), the shape assertions of
# symbolic shapes, sharding annotations, GPU threefry, and StableHLO's dynamic ops. No
# host callback, no Triton, Mosaic or TPU kernel, no TensorFlow call, and no
# uninitialised buffer (lax.empty's AllocateBuffer could show an earlier call's data).
ALLOWED_CUSTOM_CALLS = frozenset({
    "shape_assertion",
    "Sharding", "SPMDFullToShardShape", "SPMDShardToFullShape",
    "cu_threefry2x32_ffi", "hip_threefry2x32_ffi",
    "cu_lu_pivots_to_permutation", "hip_lu_pivots_to_permutation", "cusparse_gtsv2_ffi",
    "stablehlo.dynamic_reduce_window", "stablehlo.dynamic_rng_bit_generator", "stablehlo.dynamic_top_k",
})
_SOLVER_KERNEL = re.compile(r"(lapack|cusolver|hipsolver)_[a-z0-9]+_ffi")
# The dialects of an exported module; an operation of any other is refused (MLIR text
# also parses, so an artifact could name mhlo or other dialects' operations).
ALLOWED_DIALECTS = frozenset({"builtin", "func", "stablehlo", "chlo", "sdy"})
# Operations that move data between the device and the host, in any dialect.
HOST_TRANSFERS = frozenset({"send", "recv", "infeed", "outfeed"})
# Compiled programs of a network keep its weights (constants of the module) in the
# worker's JAX caches; past this many bytes of distinct artifacts the caches are cleared
# before another one is built (the solvers' programs come back from the persistent
# compilation cache).
CACHED_ARTIFACT_BYTES = 1 << 30
_cached: dict[str, int] = {}  # artifact digest -> size, of the networks compiled since the last clear
# The checks that passed, by (artifact digest, event shape, dtype, batch sizes, gradients):
# a network asked for again with the same shapes is not walked and lowered again.
_passed: set[tuple] = set()


def custom_call_allowed(target: str) -> bool:
    return target in ALLOWED_CUSTOM_CALLS or _SOLVER_KERNEL.fullmatch(target) is not None


def module_violation(exported) -> str | None:
    """Why the StableHLO module of `exported` must not run here, or None: the first
    custom call outside the allowlist, or host transfer. Walks every operation, as
    jax.export's own check when it exports."""
    from jax._src.interpreters import mlir
    from jax._src.lib.mlir import ir

    found: list[str] = []

    def visit(op) -> None:
        op = op.operation
        name = op.name
        dialect, _, kind = name.partition(".")
        if kind == "custom_call":
            attributes = op.attributes
            target = ir.StringAttr(attributes["call_target_name"]).value if "call_target_name" in attributes else ""
            if "callback" in target.lower():
                found.append(f"calls back into the host (custom_call @{target}): host callbacks are not accepted")
            elif dialect != "stablehlo" or not custom_call_allowed(target):
                found.append(f"has {name} @{target}, which this server does not run (allowed: XLA's "
                             "linear-algebra kernels, shape assertions, sharding annotations)")
        elif kind in HOST_TRANSFERS:
            found.append(f"has {name}, a host transfer: not accepted")
        elif dialect not in ALLOWED_DIALECTS:
            found.append(f"has operation {name}, of a dialect this server does not run "
                         f"(it runs {', '.join(sorted(ALLOWED_DIALECTS))})")
        for region in op.regions:
            for block in region:
                for child in block:
                    if found:
                        return
                    visit(child)

    with mlir.make_ir_context():
        try:
            module = exported.mlir_module(serialized=False)
        except Exception as error:  # noqa: BLE001 - malformed bytecode fails in many ways
            return f"has a StableHLO module that does not deserialize: {_first_line(error)}"
        visit(module.operation)
    return found[0] if found else None


def _first_line(error: BaseException, limit: int = 300) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:limit] if lines else type(error).__name__


def _shape(aval) -> str:
    return "(" + ", ".join(str(d) for d in aval.shape) + ("," if len(aval.shape) == 1 else "") + ")"


def _signature_violation(exported, event_shape: tuple[int, ...], dtype: np.dtype) -> str | None:
    import jax
    from jax import export

    if exported.nr_devices != 1:
        return f"was exported for {exported.nr_devices} devices; export it for one (no sharding)"
    if exported.in_tree != jax.tree_util.tree_structure(((0, 0), {})):
        return (f"must take exactly two array arguments f(x, t), got {len(exported.in_avals)} inputs "
                f"structured as {exported.in_tree}")
    if exported.out_tree != jax.tree_util.tree_structure(0):
        return f"must return one array (the prediction), got {len(exported.out_avals)} outputs as {exported.out_tree}"
    x, t = exported.in_avals
    (out,) = exported.out_avals
    wanted = f"(batch, {', '.join(str(e) for e in event_shape)})"
    if len(x.shape) != 1 + len(event_shape):
        return f"takes x of shape {_shape(x)}, but the event shape {list(event_shape)} needs x {wanted}"
    batch = x.shape[0]
    if not export.is_symbolic_dim(batch):
        return (f"was exported for a fixed batch of {batch}: export it with a symbolic batch dimension "
                "(b, = jax.export.symbolic_shape(\"b\"); x of shape (b, *event_shape), t of shape (b,))")
    if not str(batch).isidentifier():
        return f"has batch dimension {batch}: it must be one symbol (b), any number of rows"
    if any(export.is_symbolic_dim(e) for e in x.shape[1:]) or tuple(x.shape[1:]) != event_shape:
        return f"takes x of shape {_shape(x)}, but the event shape {list(event_shape)} needs x {wanted}"
    if len(t.shape) != 1 or not export.is_symbolic_dim(t.shape[0]) or not t.shape[0] == batch:
        return f"takes t of shape {_shape(t)}; it must be ({batch},), one time per row of x"
    if not (len(out.shape) == len(x.shape) and out.shape[0] == batch and tuple(out.shape[1:]) == event_shape):
        return f"returns shape {_shape(out)}, but the prediction must have x's shape {_shape(x)}"
    for what, aval in (("x", x), ("t", t), ("the output", out)):
        if np.dtype(aval.dtype) != dtype:
            return (f"has {what} in {np.dtype(aval.dtype).name}, but the call computes in {dtype.name} "
                    "(the request's dtype): export it for that dtype")
    return None


def _lowering_violation(exported, batch_sizes, event_shape, dtype, gradients: bool) -> str | None:
    """Lower the network (and its VJP) at the batch sizes the call uses and refine its
    shapes, as compiling would: the shape assertions of a constrained batch (b >= 16,
    say) fail here, not mid-solve."""
    import io

    import jax
    from jax.extend import mlir as jax_mlir

    def pulled(x, t, cotangent):
        return jax.vjp(lambda y: exported.call(y, t), x)[1](cotangent)

    for n in sorted(set(batch_sizes)):
        x = jax.ShapeDtypeStruct((n, *event_shape), dtype)
        t = jax.ShapeDtypeStruct((n,), dtype)
        try:
            for lowered in (jax.jit(exported.call).lower(x, t),) + ((jax.jit(pulled).lower(x, t, x),)
                                                                   if gradients else ()):
                bytecode = io.BytesIO()
                lowered.compiler_ir("stablehlo").operation.write_bytecode(bytecode)
                jax_mlir.refine_polymorphic_shapes(bytecode.getvalue(), enable_shape_assertions=True,
                                                   validate_static_shapes=True,
                                                   enable_shardy=bool(jax.config.jax_use_shardy_partitioner))
        except Exception as error:  # noqa: BLE001 - whatever JAX says, the artifact does not fit
            return f"does not run on a batch of {n} rows: {_first_line(error)}"
    return None


def _violation(exported, event_shape, dtype, batch_sizes, gradients: bool) -> str | None:
    """What is wrong with the deserialized network for this call, or None."""
    problem = _signature_violation(exported, event_shape, dtype)
    if problem is None and gradients and not exported.has_vjp():
        problem = ("has no VJP, and log-likelihoods differentiate the network: serialize it with "
                   "exported.serialize(vjp_order=1) (requests.exported_model does)")
    if problem is None:
        problem = module_violation(exported)
    if problem is None and gradients:  # the first-order VJP runs too (never a second order)
        vjp_problem = module_violation(exported.vjp())
        problem = None if vjp_problem is None else f"its VJP {vjp_problem}"
    if problem is None:
        problem = _lowering_violation(exported, batch_sizes, event_shape, dtype, gradients)
    return problem


def load(artifact: bytes, *, prediction: str, event_shape: tuple[int, ...], dtype, batch_sizes, gradients: bool,
         field: str):
    """The checked network as a `monge.solvers.pfode.FunctionModel`, or InvalidArgument
    on `field`. `prediction` is a key of PREDICTIONS; `batch_sizes` the row counts the
    call evaluates it at; `gradients`: the call differentiates it (log-likelihoods)."""
    from jax import export

    from monge.solvers.pfode import PREDICTIONS, FunctionModel

    dtype = np.dtype(dtype)
    checked = (hashlib.sha256(artifact).hexdigest(), tuple(event_shape), dtype.str, tuple(sorted(set(batch_sizes))),
               bool(gradients))
    try:
        exported = export.deserialize(bytearray(artifact))
    except Exception as error:  # noqa: BLE001 - malformed bytes fail in many ways
        raise InvalidArgument.field(field, "does not deserialize as a jax.export artifact "
                                           f"(jax.export.Exported.serialize() bytes): {type(error).__name__}: "
                                           f"{_first_line(error, 200)}") from None
    platform = export.default_export_platform()
    platforms = tuple(exported.platforms)
    if platform not in platforms:
        raise InvalidArgument.field(field, f"was exported for {', '.join(platforms)} only, and this server's "
                                           f"worker runs on {platform}: export it for both "
                                           "(platforms=(\"cpu\", \"cuda\"))")
    if checked not in _passed:
        problem = _violation(exported, tuple(event_shape), dtype, batch_sizes, gradients)
        if problem is not None:
            raise InvalidArgument.field(field, problem)
        _passed.add(checked)
    source = FunctionModel.from_exported(exported, PREDICTIONS[prediction]())
    _make_room(source.fn.digest, len(artifact))
    return source


def _make_room(digest: str, size: int) -> None:
    """Clear JAX's caches when compiling one more distinct network would keep more than
    CACHED_ARTIFACT_BYTES of them (a repeated artifact reuses its programs)."""
    import jax

    if digest in _cached:
        return
    if _cached and sum(_cached.values()) + size > CACHED_ARTIFACT_BYTES:
        jax.clear_caches()
        _cached.clear()
        _passed.clear()
    _cached[digest] = size
