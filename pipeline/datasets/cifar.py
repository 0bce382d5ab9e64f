"""CIFAR-10 and CIFAR-100 from the official "python version" downloads, as HDF5 splits.

Accepted sources: the archive (`cifar-10-python.tar.gz`, `cifar-100-python.tar.gz`),
its extracted folder (`cifar-10-batches-py/`, `cifar-100-python/`) or the folder
holding that one. The files are Python 2 pickles of dicts with bytes keys whose
`data` rows are channel-planar (1024 R, 1024 G, then 1024 B values, each plane a
row-major 32x32 image); they become (N, 32, 32, 3) RGB images.

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

import numpy as np
from sklearn.model_selection import train_test_split

from pipeline.datasets import safe_pickle
from pipeline.datasets.builder import write_in_memory_dataset
from pipeline.datasets.source_files import MAX_ARCHIVE_BYTES, open_source_file
from pipeline.errors import UserError

IMAGE_SIDE = 32
PLANE_SIZE = IMAGE_SIDE * IMAGE_SIDE
ROW_SIZE = 3 * PLANE_SIZE
DOWNLOAD_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"
# Without --val-size, this share of train becomes the validation split (5,000 of 50,000).
DEFAULT_VAL_SHARE = 0.1


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


def _one_line(text) -> str:
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
            raise UserError(f"cannot read {path}: {_one_line(error)}") from None
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
            f"cannot read {archive_path} as a tar archive ({_one_line(error)}); "
            f"expected {layout.describe()}"
        ) from None


# ---------------------------------------------------------------------------
# Decoding the contents
# ---------------------------------------------------------------------------


def get_entry(pickled: PickledFile, key: bytes):
    """One entry of a CIFAR file's dict, or a UserError naming the file and the key."""
    contents = pickled.contents
    if not isinstance(contents, dict) or key not in contents:
        raise UserError(
            f"{pickled.location} has no {key.decode()!r} entry; "
            f"is it a file of the CIFAR data set asked for?"
        )
    return contents[key]


def planar_rows_to_rgb(data, location: str) -> np.ndarray:
    """Channel-planar uint8 rows (N, 3072) as RGB images (N, 32, 32, 3)."""
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2):
        raise UserError(f"{location}: 'data' is not a uint8 array of rows; download it again")
    if data.shape[1] != ROW_SIZE:
        raise UserError(
            f"{location}: 'data' rows hold {data.shape[1]} values, expected {ROW_SIZE} "
            f"(3 planes of {IMAGE_SIDE}x{IMAGE_SIDE})"
        )
    # Each row is R plane, G plane, B plane, each row-major: (N, channel, y, x) -> (N, y, x, C).
    return data.reshape(-1, 3, IMAGE_SIDE, IMAGE_SIDE).transpose(0, 2, 3, 1)


def decode_class_names(pickled: PickledFile, names_key: bytes) -> list[str]:
    """The class names (stored as Python 2 byte strings) as text: distinct, non-empty,
    printable UTF-8 (a name ends up in file names, reports and terminals)."""
    names = get_entry(pickled, names_key)
    key = names_key.decode()
    if not isinstance(names, list | tuple) or not names:
        raise UserError(f"{pickled.location}: {key!r} is not a list of names")
    decoded = []
    for index, name in enumerate(names):
        try:
            text = name.decode("utf-8") if isinstance(name, bytes) else name
        except UnicodeDecodeError:
            text = None
        if not isinstance(text, str) or not text.strip() or not text.isprintable():
            raise UserError(
                f"{pickled.location}: {key!r} entry {index} ({_one_line(repr(name))[:60]}) is "
                f"not a printable UTF-8 name"
            )
        decoded.append(text)
    if len(set(decoded)) != len(decoded):
        repeated = sorted({name for name in decoded if decoded.count(name) > 1})
        raise UserError(f"{pickled.location}: {key!r} repeats {', '.join(repeated)[:80]}")
    return decoded


def read_batch(
    pickled: PickledFile, labels_key: bytes, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """A batch file's images (N, 32, 32, 3) and labels (N,) checked against the class count."""
    images = planar_rows_to_rgb(get_entry(pickled, b"data"), pickled.location)
    try:
        labels = np.asarray(get_entry(pickled, labels_key))
    except (TypeError, ValueError):
        labels = None
    if labels is not None and labels.size == 0:
        # An empty list becomes a float array; it is still a valid (empty) list of ids.
        labels = labels.astype(np.int64)
    label_name = labels_key.decode()
    if labels is None or labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{pickled.location}: {label_name!r} is not a list of class ids")
    if len(labels) != len(images):
        raise UserError(
            f"{pickled.location}: {len(images)} images but {len(labels)} {label_name!r}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(
            f"{pickled.location}: {label_name!r} run from {labels.min()} to {labels.max()}, "
            f"outside the {num_classes} classes"
        )
    return images, labels.astype(np.int32)


def join_batches(batches: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate batches in order into one contiguous (images, labels) pair."""
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    return np.ascontiguousarray(images), labels


# ---------------------------------------------------------------------------
# Splits and the entry point
# ---------------------------------------------------------------------------


def check_options(dataset: str, label_mode: str, val_size, source) -> CifarLayout:
    """Refuse bad options before touching any file; returns the data set's layout."""
    if dataset not in LAYOUTS:
        raise UserError(f"unknown CIFAR data set {dataset!r}; choose one of {', '.join(LAYOUTS)}")
    layout = LAYOUTS[dataset]
    if label_mode not in layout.label_keys:
        raise UserError(
            f"label mode {label_mode!r} does not exist for {dataset}; "
            f"choose one of {', '.join(layout.label_keys)}"
        )
    if val_size is not None and (
        isinstance(val_size, bool) or not isinstance(val_size, int | np.integer) or val_size < 0
    ):
        raise UserError(f"--val-size must be a whole number >= 0, got {val_size!r}")
    if source is None or str(source) == "":
        raise UserError(
            f"{dataset} is built from the official download ({DOWNLOAD_PAGE}); pass --source "
            f"with the downloaded archive or folder: {layout.describe()}"
        )
    return layout


def default_val_size(labels: np.ndarray) -> int:
    """The validation images carved when --val-size is not given: a tenth of train (the
    papers' 45k/5k split of CIFAR's 50,000), and at least one image per class."""
    return max(round(DEFAULT_VAL_SHARE * len(labels)), len(np.unique(labels)))


def carve_validation(images: np.ndarray, labels: np.ndarray, val_size: int, seed: int) -> dict:
    """Split `val_size` images off train, stratified by class; returns train and val."""
    if val_size >= len(images):
        raise UserError(
            f"--val-size {val_size} must be smaller than the {len(images)} training images"
        )
    try:
        train_images, val_images, train_labels, val_labels = train_test_split(
            images, labels, test_size=val_size, stratify=labels, random_state=seed
        )
    except ValueError as error:
        raise UserError(
            f"--val-size {val_size} cannot be carved stratified from {len(images)} training "
            f"images of {len(np.unique(labels))} classes: {_one_line(error)} (--val-size 0 "
            f"keeps all of train and builds no validation split)"
        ) from None
    return {"train": (train_images, train_labels), "val": (val_images, val_labels)}


def build(
    output_dir,
    *,
    source,
    dataset: str = "cifar10",
    label_mode: str = "fine",
    val_size: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Build CIFAR-10 or CIFAR-100 from the official download into `output_dir`.

    `source` is the archive, its extracted folder or the folder that holds it.
    `label_mode` picks CIFAR-100's "fine" (100) or "coarse" (20) classes.
    `val_size` > 0 carves a stratified validation split of that many images out
    of train (seeded by `seed`); 0 keeps all of train, in file order; None (the
    default) carves a tenth of train: 5,000 images of the official 50,000.
    Returns the build summary of `write_in_memory_dataset`.
    """
    layout = check_options(dataset, label_mode, val_size, source)
    labels_key, names_key = layout.label_keys[label_mode]
    source_path = Path(source).absolute()
    files = read_source(source_path, layout)
    class_names = decode_class_names(files[layout.meta_file], names_key)
    train = join_batches(
        [read_batch(files[name], labels_key, len(class_names)) for name in layout.train_files]
    )
    test = join_batches([read_batch(files[layout.test_file], labels_key, len(class_names))])
    splits = {"train": train}
    if val_size is None:
        val_size = default_val_size(train[1])
    if val_size > 0:
        splits = carve_validation(*train, int(val_size), seed)
    splits["test"] = test
    return write_in_memory_dataset(
        output_dir,
        splits,
        class_names=class_names,
        source=f"{dataset}:{source_path}",
        overwrite=overwrite,
    )
