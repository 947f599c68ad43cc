"""The one image decoder: every image the network sees, and every image the scan verifies, goes through it.

:func:`read_image` decodes with OpenCV to 8-bit BGR (EXIF orientation applied; grey, palette,
alpha and 16-bit converted). The data scan calls it with ``verify=True`` so that whatever passes
the scan decodes later in training, validation and predict, and what OpenCV cannot decode (TGA,
PCX, ICO, SGI, DDS, QOI data under an image suffix, 32-bit float or integer TIFFs, ...) is
reported with its format instead of killing a run at its first batch.

Truncated JPEGs: libjpeg fills the missing part of a cut file with grey and only *prints* a
warning ("Corrupt JPEG data: premature end of data segment"); ``cv2.imdecode`` and PIL both
return the image, also when the cut file ends with a valid end-of-image marker. ``verify=True``
detects the cut deterministically: the file is decoded a second time with 256 filler bytes
inserted before its last end-of-image marker (or at its end). In a complete file those bytes lie
after the last scan and are skipped (libjpeg only warns about "extraneous bytes"), so both decodes
are identical; in a cut file the entropy decoder consumes them as image data and the pixels of
the missing part change. Known limit: a JPEG with restart markers cut inside its last restart
interval can still decode identically (the filler is skipped while resynchronising).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator

import cv2
import numpy as np

_JPEG_START = b"\xff\xd8"
_JPEG_END = b"\xff\xd9"
# Entropy-decodable filler: fixed pseudo-random bytes without 0xff (which would start a marker).
_FILLER = bytes((37 * i + 11) % 255 for i in range(256))
# Native-library messages that the verification itself provokes (and reports better itself).
_EXPECTED_NOISE = ("Corrupt JPEG data", "Premature end of JPEG file", "grfmt_", "imgcodecs", "TIFFRGBAImageOK")


class UnreadableImageError(OSError):
    """An image file cannot be read or decoded (the message names the file and the reason)."""


def _describe_undecodable(data: np.ndarray) -> str:
    """Why OpenCV could not decode ``data``: the format PIL recognises in its header, if any."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data.tobytes())) as image:
            kind, mode = image.format, image.mode
    except Exception:  # noqa: BLE001 - PIL does not know it either
        return "not a decodable image (unknown or damaged data)"
    if kind in ("TIFF", "PNG") and mode in ("F", "I", "I;32", "I;32B", "I;32S"):
        return (
            f"{kind} with 32-bit samples (PIL mode {mode}) cannot be decoded to 8-bit colour; "
            "convert it to 8 or 16 bits"
        )
    return f"{kind} data (mode {mode}) that OpenCV cannot decode; convert it to PNG or JPEG"


def _jpeg_is_truncated(data: np.ndarray, decoded: np.ndarray) -> bool:
    """Whether a JPEG whose decode gave ``decoded`` is cut short (see the module docstring)."""
    raw = data.tobytes()
    end = raw.rfind(_JPEG_END)
    end = len(raw) if end < 2 else end
    patched = np.frombuffer(raw[:end] + _FILLER + raw[end:], np.uint8)
    again = cv2.imdecode(patched, cv2.IMREAD_COLOR)
    return again is None or again.shape != decoded.shape or not np.array_equal(again, decoded)


def read_image(path: str | os.PathLike[str], verify: bool = False) -> np.ndarray:
    """Decode an image to 8-bit BGR, applying EXIF orientation (grey, alpha and 16-bit converted).

    Args:
        path: The image file.
        verify: Also reject JPEGs that are cut short (one more decode; the data scan uses this).

    Returns:
        ``uint8 (H, W, 3)`` BGR image.

    Raises:
        UnreadableImageError: If the file cannot be read, is empty, cannot be decoded (the message
            names the format), or (``verify``) is a truncated JPEG.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise UnreadableImageError(f"cannot read image {path}: {error.strerror or error}") from error
    if not data.size:
        raise UnreadableImageError(f"cannot read image {path}: empty file")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise UnreadableImageError(f"cannot decode image {path}: {_describe_undecodable(data)}")
    if verify and data[:2].tobytes() == _JPEG_START and _jpeg_is_truncated(data, image):
        raise UnreadableImageError(
            f"truncated JPEG {path}: the data ends before the last scanline (the decoder would fill the rest with grey)"
        )
    return image


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Hold back what libjpeg/libtiff/OpenCV print to the process's stderr (file descriptor 2).

    The verification provokes such messages for every file it checks ("Corrupt JPEG data: 256
    extraneous bytes before marker 0xd9") and reports each problem itself, file by file. Lines of
    other origin are passed on to stderr afterwards. Use around a phase in which no other thread
    logs (the scan's worker threads only decode).
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable file descriptor 2: nothing to hold back
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            other = [
                line
                for line in sink.read().decode("utf-8", "replace").splitlines()
                if line.strip() and not any(noise in line for noise in _EXPECTED_NOISE)
            ]
            if other:
                print("\n".join(other), file=sys.stderr)
