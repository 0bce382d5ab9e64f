"""Decoding image files on all cores into ordered batches, with bounded memory.

Workers are forked processes, each handed chunks of a few files. For raw
splits they write every decoded image straight into a shared-memory slot and
send back only the chunk's pixel moments (a short list of numbers), because
pickling images through a pipe costs more than decoding small JPEGs.
JPEG-encoded splits send back the bytes to store. A few batches are in
flight at once, so the workers decode ahead while the main process writes,
and memory holds only those batches.
"""

import contextlib
import ctypes
import dataclasses
import mmap
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from pipeline.datasets.images import (
    BadImage,
    encode_jpeg,
    is_jpeg,
    read_image_file,
    read_image_file_into,
    resize_and_center_crop,
)
from pipeline.datasets.statistics import PixelMoments
from pipeline.errors import UserError

# Images per batch handed to the writer; only affects speed and memory.
WRITE_BATCH = 256
BATCHES_IN_FLIGHT = 4
# The shared slots of the batches in flight stay within this many bytes: batches
# of large images are smaller (a power of two, so they still fill whole HDF5
# chunks). Besides bounding memory, fewer slots are reused sooner, and the first
# write into a fresh shared page costs more than it does later (measured here:
# a 256x256 image decoded into a fresh slot cost 25% more than into a used one).
SLOT_BYTES = 64 << 20
# Files per task sent to a worker: about CHUNK_SOURCE_BYTES of files, within these
# bounds. Small files travel in large chunks (task traffic costs the main process
# per task, as much as writing does), large ones in small chunks (so that the
# workers finish a batch together). The file size is estimated from a sample.
CHUNK_SOURCE_BYTES = 128 << 10
FILES_PER_CHUNK_BOUNDS = (4, 64)
SIZE_SAMPLE = 32

PR_SET_PDEATHSIG = 1  # prctl option: a signal for this process when its parent dies

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


def prepare_chunk(task):
    """Decode records[split][start:stop], the images into slots first_slot on:
    returns (reasons, moment values, payloads).

    Tasks name records by position (the workers inherited the lists when forked),
    so that no path is pickled. Reasons: None when every file was usable, else
    one per file (None for a usable one). Raw images go into their shared slots
    (payloads is None); JPEG payloads come back in order, None for skipped
    files. The moments travel as a plain list: cheaper to pickle than arrays.
    """
    split, start, stop, first_slot = task
    image_size, encoding, slots, records = (
        _worker_state[key] for key in ("image_size", "encoding", "slots", "records")
    )
    reasons, payloads, moments, usable_slots = [], [], PixelMoments(), []
    for slot, record in enumerate(records[split][start:stop], start=first_slot):
        try:
            if encoding == "raw":
                read_image_file_into(record.path, image_size, slots[slot])
            else:
                data, image = read_image_file(record.path)
        except BadImage as error:
            reasons.append(error.reason)
            payloads.append(None)
            continue
        reasons.append(None)
        if encoding == "raw":
            usable_slots.append(slot)
        else:
            if image_size:
                image = resize_and_center_crop(image, image_size)
            moments.add(PixelMoments.of(image))
            keep_original = not image_size and is_jpeg(data)
            payloads.append(data if keep_original else encode_jpeg(image))
    if usable_slots:
        # One pass over the chunk's images in their slots, not one per image.
        first, last = usable_slots[0], usable_slots[-1]
        contiguous = last - first + 1 == len(usable_slots)
        moments = PixelMoments.of(slots[first : last + 1] if contiguous else slots[usable_slots])
    return (
        reasons if any(reasons) else None,
        moments.values.tolist(),
        None if encoding == "raw" else payloads,
    )


def files_per_chunk(records) -> int:
    """Files per task for these records, from the mean size of a few of them (the
    records are in random order, so the first ones are a fair sample)."""
    sizes = []
    for record in records[:SIZE_SAMPLE]:
        with contextlib.suppress(OSError):
            sizes.append(os.path.getsize(record.path))
    low, high = FILES_PER_CHUNK_BOUNDS
    mean_size = max(np.mean(sizes), 1.0) if sizes else CHUNK_SOURCE_BYTES / low
    return int(np.clip(CHUNK_SOURCE_BYTES // mean_size, low, high))


def write_batch_size(image_size: int | None, encoding: str) -> int:
    """Images per batch: WRITE_BATCH, less for raw images too large for SLOT_BYTES."""
    if encoding != "raw":
        return WRITE_BATCH
    fitting = SLOT_BYTES // (BATCHES_IN_FLIGHT * image_size * image_size * 3)
    return max(1, min(WRITE_BATCH, 1 << (max(fitting, 1).bit_length() - 1)))


@contextlib.contextmanager
def decoder(records: dict, *, image_size: int | None, encoding: str, workers: int):
    """Yield (submit, slots): submit(tasks) starts decoding and returns a get_results function.

    `records` maps each split to its ImageRecords; the workers are forked with it.
    With workers <= 1 everything runs in this process, with the same code.
    """
    state = {"image_size": image_size, "encoding": encoding, "slots": None, "records": records}
    if encoding == "raw":
        batch_size = write_batch_size(image_size, encoding)
        shape = (BATCHES_IN_FLIGHT * batch_size, image_size, image_size, 3)
        # An anonymous shared mapping: forked workers write into the parent's memory.
        buffer = mmap.mmap(-1, int(np.prod(shape)))
        state["slots"] = np.frombuffer(buffer, dtype=np.uint8).reshape(shape)
    _worker_state.clear()
    _worker_state.update(state)
    try:
        if workers <= 1:
            yield (
                (lambda tasks: lambda: [prepare_chunk(task) for task in tasks]),
                state["slots"],
            )
        else:
            # An executor rather than multiprocessing.Pool: when a worker dies (killed
            # for memory, or a decoder crashing on a hostile file) its tasks fail with
            # BrokenProcessPool instead of waiting forever.
            context = multiprocessing.get_context("fork")
            executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker)
            try:
                # Fork every worker now, before the writer opens any file: a worker
                # forked later would inherit the HDF5 file's descriptor and its lock.
                try:
                    executor.submit(int).result()
                except BrokenProcessPool:
                    raise UserError("a decoding worker died as it started") from None
                yield (
                    (lambda tasks: _results_of([executor.submit(prepare_chunk, t) for t in tasks])),
                    state["slots"],
                )
            except BaseException:
                # Ctrl+c or an error: drop the queued tasks, do not wait for them.
                executor.shutdown(wait=False, cancel_futures=True)
                raise
            executor.shutdown(wait=True)
    finally:
        _worker_state.clear()


def _start_worker() -> None:
    """In each worker: ctrl+c is the main process's to handle (it stops the pool), and
    a worker whose parent dies (even by SIGKILL) is ended rather than left waiting."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(AttributeError, OSError):  # Linux only
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _results_of(futures):
    return lambda: [future.result() for future in futures]


def prepared_batches(split: str, records, submit, slots) -> Iterator[PreparedBatch]:
    """Decode a split's `records` (with .path and .label, the list the workers were
    forked with) in order, yielding one PreparedBatch per batch."""
    try:
        yield from _prepared_batches(split, records, submit, slots)
    except BrokenProcessPool:
        # Every batch in flight fails together, so the file cannot be named here.
        raise UserError(
            f"a decoding worker died (killed, out of memory, or a decoder crash) while "
            f"decoding the {split} split; rerun with --workers 1 to find the file"
        ) from None


def _prepared_batches(split, records, submit, slots) -> Iterator[PreparedBatch]:
    in_flight = deque()
    files_per_task = files_per_chunk(records)
    labels = np.fromiter((record.label for record in records), dtype=np.int32, count=len(records))
    batch_size = WRITE_BATCH if slots is None else len(slots) // BATCHES_IN_FLIGHT
    for number, start in enumerate(range(0, len(records), batch_size)):
        stop = min(start + batch_size, len(records))
        first_slot = (number % BATCHES_IN_FLIGHT) * batch_size
        tasks = [
            (split, first, min(first + files_per_task, stop), first_slot + first - start)
            for first in range(start, stop, files_per_task)
        ]
        batch = (records[start:stop], labels[start:stop], first_slot, tasks)
        in_flight.append((*batch, submit(tasks)))
        # The slots of the batch yielded here are reused only after the caller
        # has written it and asked for the next one.
        if len(in_flight) == BATCHES_IN_FLIGHT:
            yield _collect(*in_flight.popleft(), slots)
    while in_flight:
        yield _collect(*in_flight.popleft(), slots)


def _collect(batch, labels, first_slot, tasks, get_results, slots) -> PreparedBatch:
    results = get_results()
    moments = PixelMoments(np.sum([values for _, values, _ in results], axis=0))
    if all(reasons is None for reasons, _, _ in results):  # the common case: all usable
        reasons = None
        usable = np.arange(len(batch))
    else:
        reasons = []
        for (_, start, stop, _), (chunk_reasons, _, _) in zip(tasks, results, strict=True):
            reasons.extend(chunk_reasons or [None] * (stop - start))
        usable = np.flatnonzero([reason is None for reason in reasons])
    if slots is None:
        payloads = [payload for _, _, chunk in results for payload in chunk if payload is not None]
    elif len(usable) == len(batch):
        payloads = slots[first_slot : first_slot + len(batch)]
    else:
        payloads = slots[first_slot + usable]
    skipped = []
    if reasons is not None:
        skipped = [
            (record.path, reason)
            for record, reason in zip(batch, reasons, strict=True)
            if reason is not None
        ]
    return PreparedBatch(payloads, labels[usable], moments, skipped)
