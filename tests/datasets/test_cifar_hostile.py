"""Hostile CIFAR downloads: forged dtypes, lying lengths and shapes, archive bombs and bad
class names are one-line errors naming the file, before anything large is allocated."""

import os
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.datasets import cifar, cifar_builder
from pipeline.datasets.safe_pickle import _numpy_core_module
from tests.datasets.test_cifar import dump_protocol_2, error_of, make_archive, write_cifar10

REPO = Path(__file__).resolve().parents[2]
_reconstruct = _numpy_core_module("multiarray")._reconstruct


class Reduces:
    """Pickles as `function(*arguments)` with `state` set by BUILD: a forger's tool."""

    def __init__(self, function, arguments, state) -> None:
        self.reduced = (function, arguments, state)

    def __reduce__(self):
        return self.reduced


def build_with_meta(tmp_path, meta_bytes_or_contents):
    download = write_cifar10(tmp_path / "download")
    meta = download.folder / "batches.meta"
    if isinstance(meta_bytes_or_contents, bytes):
        meta.write_bytes(meta_bytes_or_contents)
    else:
        dump_protocol_2(meta, meta_bytes_or_contents)
    return error_of(lambda: cifar_builder.build(tmp_path / "out", source=download.folder))


FORGED_DTYPE_STATE = (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 63)
FORGED = {
    # A plain dtype name with the state of a structured dtype holding an object field:
    # NumPy would read the array's raw bytes as object pointers.
    "forged dtype state": Reduces(np.dtype, ("u8", False, True), FORGED_DTYPE_STATE),
    "structured dtype": np.zeros(2, dtype=[("a", "O")]),
    "object array": np.array([1, None], dtype=object),
    "shape of 1e9 x 3072": Reduces(
        _reconstruct, (np.ndarray, (0,), b"b"), (1, (10**9, 3072), np.dtype("u1"), False, b"x")
    ),
    "shape that the bytes do not fill": Reduces(
        _reconstruct, (np.ndarray, (0,), b"b"), (1, (4, 4), np.dtype("u1"), False, b"x" * 15)
    ),
}


@pytest.mark.parametrize("forgery", list(FORGED))
def test_forged_arrays_and_dtypes_are_refused_naming_the_file(tmp_path, forgery):
    message = build_with_meta(tmp_path, {b"label_names": FORGED[forgery]})
    assert "batches.meta: refused to unpickle" in message


# Opcodes that declare a length: BINBYTES8, FRAME (protocol 4), BYTEARRAY8 (protocol 5).
LYING_LENGTHS = {
    "BINBYTES8": b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"tiny",
    "FRAME": b"\x80\x04\x95" + struct.pack("<Q", 2**40) + b"tiny",
    "BYTEARRAY8": b"\x80\x05\x96" + struct.pack("<Q", 2**40) + b"tiny",
}


@pytest.mark.parametrize("opcode", list(LYING_LENGTHS))
def test_a_declared_length_beyond_the_file_is_refused_before_it_is_allocated(tmp_path, opcode):
    message = build_with_meta(tmp_path, LYING_LENGTHS[opcode])
    assert "batches.meta: refused to unpickle a length of 1099511627776 bytes" in message


@pytest.mark.parametrize(
    "names, message",
    [
        ([b"cat", None], "entry 1 (None) is not a printable UTF-8 name"),
        ([b"cat", b"cat"], "repeats cat"),
        ([b"cat", b"dog\nerror: forged"], "entry 1"),
        ([b"cat", b""], "entry 1"),
        ([b"cat", b"\xff\xfe"], "entry 1"),
    ],
)
def test_class_names_must_be_distinct_printable_utf8(tmp_path, names, message):
    assert message in build_with_meta(tmp_path, {b"label_names": names})


def test_a_member_over_the_limit_is_refused_from_its_header(tmp_path, monkeypatch):
    download = write_cifar10(tmp_path / "download")
    archive = make_archive(download.folder, tmp_path / "cifar-10-python.tar.gz")
    monkeypatch.setattr(cifar, "MAX_TOTAL_BYTES", 1000)
    assert "over the 1000 of the official download" in error_of(
        lambda: cifar_builder.build(tmp_path / "out", source=archive)
    )
    monkeypatch.setattr(cifar, "MAX_MEMBER_BYTES", 100)
    monkeypatch.setattr(cifar, "MAX_TOTAL_BYTES", 10**9)
    assert "over the 100 an official CIFAR file stays under" in error_of(
        lambda: cifar_builder.build(tmp_path / "out", source=archive)
    )


class Zeros:
    """A file object of `size` zero bytes, produced as it is read."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, size=-1):
        size = self.left if size is None or size < 0 else min(size, self.left)
        self.left -= size
        return bytes(size)


BOMB_BUILD = """
import sys
from pipeline.datasets import cifar_builder
from pipeline.errors import UserError
try:
    cifar_builder.build(sys.argv[2], source=sys.argv[1])
except UserError as error:
    print("refused:", error)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking process.
status = open("/proc/self/status").read()
print("peak MiB", int(status.split("VmHWM:")[1].split()[0]) // 1024)
"""


def test_an_archive_bomb_is_refused_within_bounded_memory(tmp_path):
    # A 300 MiB member of zeros packs into about 1 MiB: over the member limit (256 MiB).
    download = write_cifar10(tmp_path / "download")
    archive_path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive_path, "w:gz", compresslevel=1) as archive:
        archive.add(download.folder, arcname=download.folder.name)
        # A later member of the same name stands for the file, as on extraction.
        member = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        member.size = 300 << 20
        archive.addfile(member, Zeros(member.size))
    assert archive_path.stat().st_size < 2 << 20
    completed = subprocess.run(
        [sys.executable, "-c", BOMB_BUILD, str(archive_path), str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "refused:" in completed.stdout and "data_batch_1 holds 314572800 bytes" in (
        completed.stdout
    )
    peak = int(completed.stdout.split("peak MiB")[1])
    # The interpreter with NumPy, h5py, OpenCV and scikit-learn loaded takes about 150 MiB;
    # unpacking the member would take 300 MiB more.
    assert peak < 250, completed.stdout
    assert not os.path.exists(tmp_path / "out" / "train.h5")
