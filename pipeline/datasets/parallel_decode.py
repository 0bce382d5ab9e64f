"""Decoding image files on all cores into ordered batches, with bounded memory.

Workers are forked processes. For raw splits they write each decoded image
straight into a shared-memory slot and send back only its pixel moments (a
4x4 matrix), because pickling every image through a pipe costs more than
decoding a small JPEG. JPEG-encoded splits send back the bytes to store.
A few batches are in flight at once, so the workers decode ahead while the
main process writes, and memory holds only those batches.
"""

import contextlib
import dataclasses
import mmap
import multiprocessing
from collections import deque
from collections.abc import Iterator

import numpy as np

from pipeline.datasets.images import (
    BadImage,
    encode_jpeg,
    is_jpeg,
    read_image_file,
    resize_and_center_crop,
)
from pipeline.datasets.statistics import PixelMoments

# Images per batch handed to the writer; only affects speed and memory.
WRITE_BATCH = 256
BATCHES_IN_FLIGHT = 4
# Tasks a worker takes at a time: fewer round trips than one by one.
TASKS_PER_CHUNK = 16

# What the forked workers need, set by the parent before it forks them
# (fork shares it, including the shared-memory slots, without pickling).
_worker_state: dict = {}


@dataclasses.dataclass
class PreparedBatch:
    """One batch ready to write: images (array or JPEG bytes), labels, summed moments, skips."""

    payloads: np.ndarray | list[bytes]
    labels: np.ndarray
    moments: PixelMoments
    skipped: list[tuple[str, str]]  # (path, reason)


def prepare(task):
    """Decode one file: (None, moments, payload), or (reason, None, None) when unusable.

    A raw image goes into its shared slot and the payload returned is None.
    """
    slot, path = task
    image_size, encoding = _worker_state["image_size"], _worker_state["encoding"]
    try:
        data, image = read_image_file(path)
    except BadImage as error:
        return error.reason, None, None
    if image_size:
        image = resize_and_center_crop(image, image_size)
    moments = PixelMoments.of(image)
    if encoding == "raw":
        _worker_state["slots"][slot] = image
        return None, moments, None
    keep_original = not image_size and is_jpeg(data)
    return None, moments, data if keep_original else encode_jpeg(image)


@contextlib.contextmanager
def decoder(*, image_size: int | None, encoding: str, workers: int):
    """A `submit(tasks) -> get_results` function backed by `workers` processes (1: in-process)."""
    state = {"image_size": image_size, "encoding": encoding, "slots": None}
    if encoding == "raw":
        shape = (BATCHES_IN_FLIGHT * WRITE_BATCH, image_size, image_size, 3)
        # An anonymous shared mapping: forked workers write into the parent's memory.
        buffer = mmap.mmap(-1, int(np.prod(shape)))
        state["slots"] = np.frombuffer(buffer, dtype=np.uint8).reshape(shape)
    _worker_state.clear()
    _worker_state.update(state)
    try:
        if workers <= 1:
            yield (lambda tasks: lambda: [prepare(task) for task in tasks]), state["slots"]
        else:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                yield (
                    (lambda tasks: pool.map_async(prepare, tasks, chunksize=TASKS_PER_CHUNK).get),
                    state["slots"],
                )
    finally:
        _worker_state.clear()


def prepared_batches(records, submit, slots) -> Iterator[PreparedBatch]:
    """Decode `records` (with .path and .label) in order, yielding one PreparedBatch per batch."""
    in_flight = deque()
    for number, start in enumerate(range(0, len(records), WRITE_BATCH)):
        batch = records[start : start + WRITE_BATCH]
        first_slot = (number % BATCHES_IN_FLIGHT) * WRITE_BATCH
        tasks = [(first_slot + index, str(record.path)) for index, record in enumerate(batch)]
        in_flight.append((batch, first_slot, submit(tasks)))
        # The slots of the batch yielded here are reused only after the caller
        # has written it and asked for the next one.
        if len(in_flight) == BATCHES_IN_FLIGHT:
            yield _collect(*in_flight.popleft(), slots)
    while in_flight:
        yield _collect(*in_flight.popleft(), slots)


def _collect(batch, first_slot, get_results, slots) -> PreparedBatch:
    results = get_results()
    usable = [index for index, (reason, _, _) in enumerate(results) if reason is None]
    moments = PixelMoments()
    for index in usable:
        moments.add(results[index][1])
    if slots is not None:
        payloads = slots[first_slot + np.asarray(usable, dtype=np.int64)]
    else:
        payloads = [results[index][2] for index in usable]
    return PreparedBatch(
        payloads=payloads,
        labels=np.asarray([batch[index].label for index in usable], dtype=np.int32),
        moments=moments,
        skipped=[
            (str(record.path), reason)
            for record, (reason, _, _) in zip(batch, results, strict=True)
            if reason is not None
        ],
    )
