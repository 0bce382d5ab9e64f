"""Hostile image files: a decompression bomb, a FIFO and a link to /dev/zero named like
images are skipped and reported, within bounded memory and time, never decoded or waited on."""

import json
import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from pipeline.datasets import images
from pipeline.datasets.image_folders import LINK_OUTSIDE

REPO = Path(__file__).resolve().parents[2]


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height RGB pixels: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        checksum = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checksum)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(bytes(100_000), 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def test_an_image_declaring_too_many_pixels_is_refused_from_its_header():
    with pytest.raises(images.BadImage) as refused:
        images.decode_image(png_declaring(30000, 30000))
    assert refused.value.reason == images.TOO_LARGE


def test_fifos_devices_and_oversized_files_are_not_read(tmp_path, monkeypatch):
    # A read that waits on the FIFO would hang: the alarm turns that into a failure.
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("reading a FIFO waited"))
    signal.alarm(20)
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.jpg"
    zero.symlink_to("/dev/zero")
    for path in (fifo, zero, tmp_path):
        with pytest.raises(images.BadImage) as refused:
            images.read_image_file(path)
        assert refused.value.reason == images.NOT_A_FILE
    big = tmp_path / "big.jpg"
    big.write_bytes(bytes(2000))
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 1000)
    with pytest.raises(images.BadImage) as refused:
        images.read_image_file(big)
    assert refused.value.reason == images.TOO_LARGE
    signal.alarm(0)


HOSTILE_BUILD = """
import json, resource, sys
from pipeline.datasets import folder
summary = folder.build(sys.argv[2], source=sys.argv[1], image_size=8, workers=2)
print("SUMMARY " + json.dumps(summary["skipped"]))
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking process.
main = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) // 1024
print("peak MiB", main, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
"""


def test_a_build_skips_and_reports_hostile_files_in_bounded_memory_and_time(tmp_path):
    import cv2

    root = tmp_path / "source"
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        for index in range(3):
            image = np.full((16, 16, 3), 40 * index, np.uint8)
            cv2.imwrite(str(root / name / f"{index}.png"), image)
    # 30000 x 30000 declared: 2.5 GiB of pixels if decoded; the file is 110 bytes.
    (root / "cats" / "bomb.png").write_bytes(png_declaring(30000, 30000))
    os.mkfifo(root / "cats" / "fifo.jpg")
    (root / "dogs" / "zero.jpg").symlink_to("/dev/zero")
    completed = subprocess.run(
        [sys.executable, "-c", HOSTILE_BUILD, str(root), str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    line = next(text for text in completed.stdout.splitlines() if text.startswith("SUMMARY "))
    skipped = json.loads(line.removeprefix("SUMMARY "))
    assert [Path(path).name for path in skipped[images.TOO_LARGE]] == ["bomb.png"]
    assert [Path(path).name for path in skipped[images.NOT_A_FILE]] == ["fifo.jpg"]
    # /dev/zero is outside the source: left out when the source is listed.
    assert [Path(path).name for path in skipped[LINK_OUTSIDE]] == ["zero.jpg"]
    main, workers = map(int, completed.stdout.split("peak MiB")[1].split())
    # Python with NumPy, h5py and OpenCV is about 150 MiB; a decoded bomb would be 2.5 GiB.
    assert main < 400 and workers < 400, completed.stdout


@pytest.mark.parametrize("extension", [".png", ".jpg", ".bmp", ".webp"])
def test_the_declared_size_is_read_from_the_header_of_each_format(extension):
    import cv2

    ok, encoded = cv2.imencode(extension, np.zeros((37, 53, 3), np.uint8))
    assert ok and images.declared_size(encoded.tobytes()) == (53, 37)


def test_a_jpeg_declaring_too_many_pixels_is_refused_before_decoding():
    import cv2

    data = bytearray(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    start = data.index(b"\xff\xc0")  # baseline start of frame: length, precision, height, width
    data[start + 5 : start + 9] = struct.pack(">HH", 60000, 60000)
    with pytest.raises(images.BadImage) as refused:
        images.decode_image(bytes(data))
    assert refused.value.reason == images.TOO_LARGE and "60000x60000" in str(refused.value)
