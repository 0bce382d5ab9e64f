"""An unpickler for untrusted files that hold plain data and numeric NumPy arrays.

The official CIFAR pickles hold dicts, lists, bytes, ints and uint8/int arrays;
this unpickler accepts what they contain and nothing else, checking each piece
before anything is allocated for it:

- globals: only the NumPy functions that rebuild an array or a dtype (and
  `_codecs.encode`, which Python 3 pickles use to rebuild bytes), each wrapped
  so that it rebuilds plain numeric dtypes and arrays only;
- dtypes: booleans, integers and floats, no fields, no subarrays, no objects,
  and their state exactly that of the plain dtype (a forged state could turn an
  array's raw bytes into object pointers);
- arrays: a shape whose size fits the bytes given, within `max_bytes`;
- lengths: no opcode may ask for more bytes than the stream has left, so a
  declared length of 2**40 is an error, not an allocation.

It is the pure-Python unpickler (the C one cannot be hooked at BUILD), which
costs little here: a CIFAR file is a few large byte strings.
"""

import importlib
import io
import math
import pickle
import struct

import numpy as np

from pipeline.errors import UserError

# Plain numeric type codes, as NumPy pickles them.
PLAIN_TYPE_CODES = frozenset(
    ["b1", "u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f2", "f4", "f8"]
)
# The state NumPy pickles for a plain dtype: (version, byte order, subarray, names,
# fields, element size, alignment, flags); -1 sizes mean "the type's own".
# Python 2 pickles (read with encoding="bytes") hold the byte order as bytes.
PLAIN_DTYPE_STATES = {
    (3, order, None, None, None, -1, -1, 0)
    for order in ["<", ">", "|", "=", b"<", b">", b"|", b"="]
}


def _numpy_core_module(name: str):
    """numpy._core.<name> (NumPy 2, and the forward shim of 1.26) or numpy.core.<name>."""
    try:
        return importlib.import_module(f"numpy._core.{name}")
    except ImportError:
        return importlib.import_module(f"numpy.core.{name}")


_MULTIARRAY = _numpy_core_module("multiarray")
_NUMERIC = _numpy_core_module("numeric")


class Refused(pickle.UnpicklingError):
    """Something a plain-data pickle never holds."""


def plain_dtype(dtype) -> np.dtype:
    """`dtype` if it is a plain boolean, integer or float type; Refused otherwise."""
    if not isinstance(dtype, np.dtype):
        raise Refused(f"{type(dtype).__name__} given where a dtype belongs")
    if dtype.kind not in "biuf" or dtype.hasobject or dtype.fields or dtype.subdtype:
        raise Refused(f"dtype {dtype!s} is not a plain numeric type")
    return dtype


def _dtype(code, align=False, copy=True) -> np.dtype:
    if isinstance(code, bytes):  # a Python 2 pickle's str
        code = code.decode("latin1")
    if not isinstance(code, str) or code not in PLAIN_TYPE_CODES:
        raise Refused(f"dtype {code!r} is not a plain numeric type")
    return np.dtype(code)


def _reconstruct(subtype, shape, type_code):
    """NumPy's array stub; the array's shape and bytes come with BUILD, checked there."""
    if subtype is not np.ndarray or tuple(shape) != (0,):
        raise Refused("an array stub other than NumPy's own")
    return _MULTIARRAY._reconstruct(np.ndarray, (0,), b"b")


def _encode_latin1(text, encoding="latin1") -> bytes:
    """Stand-in for `_codecs.encode`, which Python 3 pickles (protocol <= 2) call to rebuild
    bytes as `encode(text, 'latin1')`; any other use of it is refused."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise Refused(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _empty_bytes(*arguments) -> bytes:
    """Stand-in for `bytes`, which Python 3 protocol-2 pickles call with no argument to
    rebuild b""; with an argument it could allocate any size, so that is refused."""
    if arguments:
        raise Refused("bytes() called with arguments")
    return b""


class SafeUnpickler(pickle._Unpickler):
    """Unpickles plain data and numeric NumPy arrays of at most `max_bytes` each."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, stream, *, size: int, max_bytes: int) -> None:
        self._bounded = _BoundedReader(stream, size)
        # The files are Python 2 pickles: keep their byte strings as bytes.
        super().__init__(self._bounded, encoding="bytes")
        self.max_bytes = max_bytes
        self.globals = {
            ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy.core.numeric", "_frombuffer"): self._frombuffer,
            ("numpy._core.numeric", "_frombuffer"): self._frombuffer,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): _dtype,
            ("_codecs", "encode"): _encode_latin1,
            ("__builtin__", "bytes"): _empty_bytes,
            ("builtins", "bytes"): _empty_bytes,
        }

    def find_class(self, module: str, name: str):
        allowed = self.globals.get((module, name))
        if allowed is None:
            raise Refused(f"global {' '.join(f'{module}.{name}'.split())!r}")
        return allowed

    def _frombuffer(self, buffer, dtype, shape, order):
        self._check_array(shape, plain_dtype(dtype), len(memoryview(buffer).cast("B")))
        return _NUMERIC._frombuffer(buffer, dtype, shape, order)

    def _check_array(self, shape, dtype: np.dtype, num_bytes: int) -> None:
        if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise Refused(f"array shape {shape!r}")
        needed = math.prod(shape) * dtype.itemsize
        if needed > self.max_bytes:
            raise Refused(f"an array of shape {shape} ({needed} bytes, over {self.max_bytes})")
        if needed != num_bytes:
            raise Refused(f"an array of shape {shape} over {num_bytes} bytes of data")

    def load_build(self):
        """BUILD sets an object's state: only a plain dtype's own state, and an array's
        shape, plain dtype and bytes, checked before NumPy sees them."""
        state, target = self.stack[-1], self.stack[-2]
        if isinstance(target, np.dtype):
            if state not in PLAIN_DTYPE_STATES:
                raise Refused(f"a dtype with the forged state {state!r}")
        elif isinstance(target, np.ndarray):
            if not (isinstance(state, tuple) and len(state) == 5):
                raise Refused("an array state that NumPy does not write")
            _version, shape, dtype, _fortran, data = state
            if not isinstance(data, bytes):
                raise Refused("array data that is not bytes")
            self._check_array(shape, plain_dtype(dtype), len(data))
        else:
            raise Refused(f"a state set on {type(target).__name__}")
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build

    def load_bytearray8(self):
        """BYTEARRAY8 allocates before it reads: check the length against the stream first."""
        (length,) = struct.unpack("<Q", self.read(8))
        self._bounded.check(length)
        self.append(bytearray(self.read(length)))

    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8


class _BoundedReader(io.RawIOBase):
    """A stream that refuses any read longer than what is left of it: a pickle that
    declares more bytes than its file holds is forged or damaged, and reading it
    would first allocate that much memory."""

    def __init__(self, stream, size: int) -> None:
        self.stream, self.remaining = stream, size

    def check(self, length: int) -> None:
        if length > self.remaining:
            raise Refused(f"a length of {length} bytes, with {self.remaining} left in the file")

    def read(self, length=-1):
        if length is None or length < 0:
            length = self.remaining
        self.check(length)
        data = self.stream.read(length)
        self.remaining -= len(data)
        return data

    def readline(self, limit=-1):
        line = self.stream.readline(self.remaining if limit is None or limit < 0 else limit)
        self.remaining -= len(line)
        return line

    def readinto(self, buffer):
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True


def load(stream, *, size: int, max_bytes: int, location: str):
    """Unpickle a plain-data pickle of `size` bytes; anything else is a one-line UserError
    naming `location`."""
    try:
        return SafeUnpickler(stream, size=size, max_bytes=max_bytes).load()
    except Refused as refused:
        raise UserError(
            f"{location}: refused to unpickle {refused}; a CIFAR file holds only NumPy "
            f"arrays, lists and bytes, so this is not an official CIFAR file"
        ) from None
    except (
        pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
        KeyError, OverflowError, MemoryError, RecursionError, struct.error,
    ) as error:  # fmt: skip
        message = " ".join(str(error).split()) or type(error).__name__
        raise UserError(
            f"{location} is not a readable CIFAR pickle ({message}); download it again"
        ) from None
