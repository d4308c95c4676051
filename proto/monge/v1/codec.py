"""numpy <-> `monge.v1.Tensor`: raw little-endian C-order bytes with dtype and shape.

Shared by the client and the server, so both sides agree byte for byte. Decoding checks
everything a peer could get wrong (unknown dtype, negative extents, a byte count that
disagrees with the shape) and names the field at fault.
"""

from __future__ import annotations

import math

import numpy as np

from monge.v1 import tensor_pb2

_TO_NUMPY = {
    tensor_pb2.DTYPE_FLOAT32: np.dtype("<f4"),
    tensor_pb2.DTYPE_FLOAT64: np.dtype("<f8"),
    tensor_pb2.DTYPE_INT32: np.dtype("<i4"),
    tensor_pb2.DTYPE_INT64: np.dtype("<i8"),
}
_FROM_NUMPY = {dtype.newbyteorder("="): code for code, dtype in _TO_NUMPY.items()}


class TensorError(ValueError):
    """A tensor that cannot be decoded or has the wrong form; `field` names it."""

    def __init__(self, field: str, description: str):
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


def encode(array, *, dtype=None) -> tensor_pb2.Tensor:
    """A numpy-convertible array as a Tensor; float16 and bools are widened, others kept."""
    return encode_into(tensor_pb2.Tensor(), array, dtype=dtype)


def encode_into(tensor: tensor_pb2.Tensor, array, *, dtype=None) -> tensor_pb2.Tensor:
    """`encode` written into an existing Tensor field (`response.plan`), which saves
    copying a large array's bytes once more into the message that holds it."""
    array = np.asarray(array, dtype=dtype)
    if array.dtype.kind == "f" and array.dtype.itemsize < 4:
        array = array.astype(np.float32)
    elif array.dtype.kind in "bu":
        array = array.astype(np.int64)
    native = array.dtype.newbyteorder("=")
    if native not in _FROM_NUMPY:
        raise TypeError(f"cannot send arrays of dtype {array.dtype}")
    wire = _TO_NUMPY[_FROM_NUMPY[native]]
    tensor.dtype = _FROM_NUMPY[native]
    tensor.shape[:] = array.shape
    tensor.data = np.ascontiguousarray(array, dtype=wire).tobytes()
    return tensor


# numpy allows 64 axes; no array in this protocol has more than a handful.
MAX_NDIM = 32
# Largest byte size numpy can describe (its sizes are signed 64-bit).
_MAX_BYTES = (1 << 63) - 1


def check(tensor: tensor_pb2.Tensor, field: str) -> tuple[np.dtype, tuple[int, ...]]:
    """The wire dtype and shape of a Tensor, after checking its header against its byte
    count; touches no element and allocates nothing, so a caller can check limits on
    the shape before decoding."""
    if tensor.dtype not in _TO_NUMPY:
        name = tensor_pb2.Dtype.Name(tensor.dtype) if tensor.dtype in tensor_pb2.Dtype.values() else tensor.dtype
        raise TensorError(field, f"unknown or unspecified dtype {name}")
    shape = tuple(tensor.shape)
    if len(shape) > MAX_NDIM:
        raise TensorError(field, f"has {len(shape)} dimensions; at most {MAX_NDIM} are accepted")
    if any(extent < 0 for extent in shape):
        raise TensorError(field, f"negative extent in shape {_show(shape)}")
    dtype = _TO_NUMPY[tensor.dtype]
    # An empty array with huge other extents still has to be describable by numpy.
    nonzero = math.prod(extent for extent in shape if extent) * dtype.itemsize
    if nonzero > _MAX_BYTES:
        raise TensorError(field, f"shape {_show(shape)} is too large for any array")
    expected = math.prod(shape) * dtype.itemsize
    if len(tensor.data) != expected:
        raise TensorError(
            field,
            f"has {len(tensor.data)} bytes but shape {_show(shape)} of "
            f"{np.dtype(dtype).name} needs {expected}",
        )
    return dtype, shape


def decode(tensor: tensor_pb2.Tensor, field: str) -> np.ndarray:
    """The array a Tensor carries (read-only view of its bytes, native byte order)."""
    dtype, shape = check(tensor, field)
    array = np.frombuffer(tensor.data, dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _show(shape) -> str:
    """A shape for a message: in full when short, else its rank and first extents."""
    if len(shape) <= 8:
        return str(list(shape))
    return f"[{', '.join(map(str, shape[:4]))}, ...] ({len(shape)} dimensions)"
