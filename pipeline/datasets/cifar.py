"""Reading the official CIFAR-10 and CIFAR-100 "python version" downloads, safely.

Accepted sources: the archive (`cifar-10-python.tar.gz`, `cifar-100-python.tar.gz`),
its extracted folder (`cifar-10-batches-py/`, `cifar-100-python/`) or the folder
holding that one. The files are Python 2 pickles of dicts with bytes keys;
cifar_batches turns their contents into images, labels and class names, and
cifar_builder writes them as HDF5 splits.

Safety rules, because a download is untrusted input:
- pickles are loaded by an unpickler (safe_pickle) that accepts plain data and
  numeric NumPy arrays only, checked before anything is allocated, so a
  tampered file can neither run code nor forge an array of object pointers;
- sizes are bounded (MAX_MEMBER_BYTES, MAX_TOTAL_BYTES, MAX_ARCHIVE_MEMBERS)
  from the tar headers and the files' sizes, before anything is unpacked;
- an archive is never extracted: its members are read in memory, found by
  their folder and file name, so a member named `../x` or `/x` writes nothing.
"""

import dataclasses
import os
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from pipeline.datasets import safe_pickle
from pipeline.datasets.source_files import MAX_ARCHIVE_BYTES, open_source_file
from pipeline.errors import UserError

DOWNLOAD_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"


@dataclasses.dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant keeps its files and which keys hold its labels."""

    archive_name: str
    folder_name: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    # label mode -> (key of the labels in a batch, key of the class names in meta)
    label_keys: dict[str, tuple[bytes, bytes]]

    @property
    def file_names(self) -> tuple[str, ...]:
        return (*self.train_files, self.test_file, self.meta_file)

    def describe(self) -> str:
        """The accepted layouts, in one line, for error messages."""
        return (
            f"{self.archive_name}, its extracted folder {self.folder_name}/ "
            f"(holding {', '.join(self.file_names)}) or the folder that holds {self.folder_name}/"
        )


LAYOUTS = {
    "cifar10": CifarLayout(
        archive_name="cifar-10-python.tar.gz",
        folder_name="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{number}" for number in range(1, 6)),
        test_file="test_batch",
        meta_file="batches.meta",
        label_keys={"fine": (b"labels", b"label_names")},
    ),
    "cifar100": CifarLayout(
        archive_name="cifar-100-python.tar.gz",
        folder_name="cifar-100-python",
        train_files=("train",),
        test_file="test",
        meta_file="meta",
        label_keys={
            "fine": (b"fine_labels", b"fine_label_names"),
            "coarse": (b"coarse_labels", b"coarse_label_names"),
        },
    ),
}


# ---------------------------------------------------------------------------
# Limits: a download is untrusted, and a small archive can unpack to any size
# ---------------------------------------------------------------------------

# The largest official file is CIFAR-100's train pickle, 155 MB.
MAX_MEMBER_BYTES = 256 << 20
# The whole download unpacked: CIFAR-10 is 178 MB, CIFAR-100 184 MB.
MAX_TOTAL_BYTES = 512 << 20
# The official archives hold 8 (CIFAR-10) and 5 (CIFAR-100) members.
MAX_ARCHIVE_MEMBERS = 10_000


def one_line(text) -> str:
    """Collapse a message from a library (which may span lines) into one line."""
    return " ".join(str(text).split())


def load_cifar_pickle(stream, location: str, size: int):
    """Unpickle one CIFAR file of `size` bytes from a binary stream (safe_pickle: plain
    data and numeric arrays only); `location` names it in errors."""
    if size > MAX_MEMBER_BYTES:
        raise UserError(
            f"{location} holds {size} bytes, over the {MAX_MEMBER_BYTES} an official CIFAR "
            f"file stays under (cifar.MAX_MEMBER_BYTES); this is not an official CIFAR file"
        )
    return safe_pickle.load(stream, size=size, max_bytes=MAX_MEMBER_BYTES, location=location)


# ---------------------------------------------------------------------------
# Finding and reading the files
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PickledFile:
    """The unpickled contents of one CIFAR file and where it came from (for errors)."""

    location: str
    contents: object


def read_source(source_path: Path, layout: CifarLayout) -> dict[str, PickledFile]:
    """Read every file of `layout` from an archive or a folder; file name -> contents."""
    if not source_path.exists():
        raise UserError(f"--source {source_path} does not exist; expected {layout.describe()}")
    if source_path.is_dir():
        return read_folder(source_path, layout)
    return read_archive(source_path, layout)


def read_folder(source_path: Path, layout: CifarLayout) -> dict[str, PickledFile]:
    """Read the files from the extracted folder, or from the folder that holds it."""
    data_dir = source_path / layout.folder_name
    if not data_dir.is_dir():
        # The extracted folder itself (possibly renamed).
        data_dir = source_path
    paths = {name: data_dir / name for name in layout.file_names}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise UserError(f"missing {', '.join(missing)}; expected {layout.describe()}")
    files = {}
    _check_total({name: path.stat().st_size for name, path in paths.items()}, source_path)
    for name, path in paths.items():
        try:
            with open_source_file(path, "CIFAR file", MAX_TOTAL_BYTES) as stream:
                size = os.fstat(stream.fileno()).st_size
                files[name] = PickledFile(str(path), load_cifar_pickle(stream, str(path), size))
        except OSError as error:
            raise UserError(f"cannot read {path}: {one_line(error)}") from None
    return files


def _check_total(sizes: dict[str, int], source_path: Path) -> None:
    total = sum(sizes.values())
    if total > MAX_TOTAL_BYTES:
        raise UserError(
            f"{source_path} holds {total} bytes of CIFAR files, over the {MAX_TOTAL_BYTES} "
            f"of the official download (cifar.MAX_TOTAL_BYTES); this is not an official download"
        )


def find_archive_members(
    archive: tarfile.TarFile, layout: CifarLayout
) -> dict[str, tarfile.TarInfo]:
    """The regular-file members `<folder_name>/<file name>`, by file name.

    A member's name is only compared, never used as a path, so names such as
    `../evil` or `/etc/x` are harmless. A later member of the same name replaces
    an earlier one, as it would on extraction.
    """
    wanted = set(layout.file_names)
    members = {}
    for count, member in enumerate(archive, start=1):
        if count > MAX_ARCHIVE_MEMBERS:
            raise UserError(
                f"{archive.name} has over {MAX_ARCHIVE_MEMBERS} members; the official CIFAR "
                f"archives have fewer than 10"
            )
        parts = PurePosixPath(member.name).parts
        if (
            member.isfile()
            and len(parts) >= 2
            and parts[-2] == layout.folder_name
            and parts[-1] in wanted
        ):
            members[parts[-1]] = member
    return members


def read_archive(archive_path: Path, layout: CifarLayout) -> dict[str, PickledFile]:
    """Read the files straight out of the tar archive, without extracting anything."""
    # A regular file, opened without blocking (a FIFO or /dev/zero would hang tarfile).
    handle = open_source_file(archive_path, "--source", MAX_ARCHIVE_BYTES)
    try:
        with handle, tarfile.open(str(archive_path), "r:*", fileobj=handle) as archive:
            members = find_archive_members(archive, layout)
            missing = [
                f"{archive_path}:{layout.folder_name}/{name}"
                for name in layout.file_names
                if name not in members
            ]
            if missing:
                raise UserError(f"missing {', '.join(missing)}; expected {layout.describe()}")
            # Sizes from the headers, checked before anything is unpacked.
            _check_total({name: member.size for name, member in members.items()}, archive_path)
            # In archive order: a compressed archive can only seek forward cheaply.
            ordered = sorted(members.items(), key=lambda item: item[1].offset_data)
            files = {}
            for name, member in ordered:
                location = f"{archive_path}:{member.name}"
                with archive.extractfile(member) as stream:
                    contents = load_cifar_pickle(stream, location, member.size)
                files[name] = PickledFile(location, contents)
            return files
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise UserError(
            f"cannot read {archive_path} as a tar archive ({one_line(error)}); "
            f"expected {layout.describe()}"
        ) from None
