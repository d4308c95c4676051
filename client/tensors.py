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
    array = np.asarray(array, dtype=dtype)
    if array.dtype.kind == "f" and array.dtype.itemsize < 4:
        array = array.astype(np.float32)
    elif array.dtype.kind in "bu":
        array = array.astype(np.int64)
    native = array.dtype.newbyteorder("=")
    if native not in _FROM_NUMPY:
        raise TypeError(f"cannot send arrays of dtype {array.dtype}")
    wire = _TO_NUMPY[_FROM_NUMPY[native]]
    data = np.ascontiguousarray(array, dtype=wire).tobytes()
    return tensor_pb2.Tensor(dtype=_FROM_NUMPY[native], shape=array.shape, data=data)


def decode(tensor: tensor_pb2.Tensor, field: str) -> np.ndarray:
    """The array a Tensor carries (read-only view of its bytes, native byte order)."""
    if tensor.dtype not in _TO_NUMPY:
        name = tensor_pb2.Dtype.Name(tensor.dtype) if tensor.dtype in tensor_pb2.Dtype.values() else tensor.dtype
        raise TensorError(field, f"unknown or unspecified dtype {name}")
    shape = tuple(tensor.shape)
    if any(extent < 0 for extent in shape):
        raise TensorError(field, f"negative extent in shape {list(shape)}")
    dtype = _TO_NUMPY[tensor.dtype]
    expected = math.prod(shape) * dtype.itemsize
    if len(tensor.data) != expected:
        raise TensorError(
            field,
            f"has {len(tensor.data)} bytes but shape {list(shape)} of "
            f"{np.dtype(dtype).name} needs {expected}",
        )
    array = np.frombuffer(tensor.data, dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)
