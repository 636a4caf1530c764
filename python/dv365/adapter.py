"""Downstream adapters: the DV365 embedding inside another model."""
import ctypes

import numpy as np

from ._base import (ArgumentError, Handle, Status, array, check, fspath, new_handle, nthreads_arg,
                    ptr, size, u64, workspace)
from ._lib import lib

#: dv365_adapter_kind by name.
ADAPTER_KINDS = {"linear": 0, "gatenet_vector": 1, "gatenet_bit": 2, "prefix": 3}


class Adapter(Handle):
    """An adapter turning U [K, D] per user into a downstream model's input:

    * "linear":          y = W vec(U) + b, P = out_dim floats per user
    * "gatenet_vector":  one sigmoid gate per token (K*D floats)
    * "gatenet_bit":     one gate per element (K*D floats)
    * "prefix":          K tokens for a sequence model, projected to width
                         out_dim (K*out_dim floats; K*D when out_dim is 0)

    forward/backward only read the adapter: share it between threads."""
    _free_fn = "adapter_free"
    LINEAR, GATENET_VECTOR, GATENET_BIT, PREFIX = 0, 1, 2, 3

    def __init__(self, p, name):
        super().__init__(p)
        self.name = name
        kind, k, dim, out_dim = ctypes.c_int(), ctypes.c_size_t(), ctypes.c_size_t(), ctypes.c_size_t()
        check(lib.adapter_info(p, ctypes.byref(kind), ctypes.byref(k), ctypes.byref(dim), ctypes.byref(out_dim)))
        self.kind_code, self.k, self.dim, self.out_dim = kind.value, k.value, dim.value, out_dim.value
        self.kind = {v: n for n, v in ADAPTER_KINDS.items()}.get(self.kind_code, str(self.kind_code))
        self.output_size = lib.adapter_output_size(p)
        self.num_params = lib.adapter_num_params(p)

    @classmethod
    def create(cls, kind, name, k, dim, out_dim=0, seed=0):
        """A new adapter (kind: a name of ADAPTER_KINDS or its code) for
        embeddings of k tokens of dim; seeded U(-1/sqrt(fan_in), ..) weights."""
        if isinstance(kind, str):
            if kind not in ADAPTER_KINDS:
                raise ArgumentError(Status.E_INVALID, "adapter kind must be one of %s, got %r"
                                    % (", ".join(ADAPTER_KINDS), kind))
            kind = ADAPTER_KINDS[kind]
        p = new_handle(lib.adapter_create, int(kind), name.encode(), size(k, "k"), size(dim, "dim"),
                       size(out_dim, "out_dim"), u64(seed, "seed"))
        return cls(p, name)

    @classmethod
    def load(cls, path, name):
        """Adapter ``name`` from a safetensors file (other tensors ignored)."""
        return cls(new_handle(lib.adapter_load, fspath(path), name.encode()), name)

    def save(self, path):
        """Save as safetensors, atomically."""
        check(lib.adapter_save(self.ptr, fspath(path)))

    @property
    def params(self):
        """A copy of the parameter block (weight then bias) [num_params]."""
        p = lib.adapter_params(self.ptr)
        if not p or self.num_params == 0:
            return np.zeros(0, dtype=np.float32)
        return np.ctypeslib.as_array((ctypes.c_float * self.num_params).from_address(p)).copy()

    def set_params(self, values):
        """Overwrite the parameter block (do not call while other threads use the adapter)."""
        v = array(values, np.float32, "values", [(self.num_params,)])
        if not np.all(np.isfinite(v)):
            raise ArgumentError(Status.E_NONFINITE, "values hold NaN or infinity")
        p = lib.adapter_params(self.ptr)
        if self.num_params:
            ctypes.memmove(p, v.ctypes.data, v.nbytes)

    def _u(self, U):
        U = array(U, np.float32, "U", [(self.k, self.dim), (None, self.k, self.dim)])
        return U, U.ndim == 2, (1 if U.ndim == 2 else U.shape[0])

    def forward(self, U, nthreads=1):
        """U [K, D] -> [output_size]; U [B, K, D] -> [B, output_size]."""
        U, single, b = self._u(U)
        out = np.empty((b, self.output_size), dtype=np.float32)
        check(lib.adapter_forward(self.ptr, workspace(), b, ptr(U), ptr(out), nthreads_arg(nthreads)))
        return out[0] if single else out

    def backward(self, U, dout, nthreads=1):
        """Gradients for the same U given dL/dout: (grad_params [num_params],
        dU shaped like U), freshly zeroed then accumulated by the library."""
        U, single, b = self._u(U)
        dout = array(dout, np.float32, "dout", [(self.output_size,)] if single else [(b, self.output_size)])
        gp = np.zeros(self.num_params, dtype=np.float32)
        dU = np.zeros(U.shape, dtype=np.float32)
        check(lib.adapter_backward(self.ptr, workspace(), b, ptr(U), ptr(dout),
                                   ptr(gp) if self.num_params else None, ptr(dU), nthreads_arg(nthreads)))
        return gp, dU
