"""A video file for Chromium's fake camera (``--use-file-for-fake-video-capture``), showing a real QR code.

Y4M is a text header and raw frames: ``YUV4MPEG2 W.. H.. F..:1 Ip A1:1 C420jpeg``, then per
frame ``FRAME\\n`` + the luma plane (W*H bytes) + two chroma planes (W/2*H/2 each; 128 is grey).
The code is drawn from segno's module matrix (black on white, quiet zone included).
"""

from __future__ import annotations

from pathlib import Path

import segno

WIDTH, HEIGHT = 640, 480


def qr_luma(text: str, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """One frame's luma plane: the code centred on a white page, as large as fits."""
    qr = segno.make(text, error="m", micro=False)
    matrix = [list(row) for row in qr.matrix_iter(scale=1, border=4)]
    size = len(matrix)
    scale = min(width, height) // size
    left, top = (width - size * scale) // 2, (height - size * scale) // 2
    plane = bytearray(b"\xeb" * (width * height))  # white paper under room light, not pure white
    for y in range(size * scale):
        row = matrix[y // scale]
        offset = (top + y) * width + left
        for x in range(size * scale):
            if row[x // scale]:
                plane[offset + x] = 0x14
    return bytes(plane)


def blank_luma(width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """A frame with no code: a grey desk."""
    return bytes([0x70]) * (width * height)


def write_y4m(path: Path, frames: list[bytes], width: int = WIDTH, height: int = HEIGHT, fps: int = 30) -> Path:
    chroma = bytes([128]) * ((width // 2) * (height // 2) * 2)
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for luma in frames:
            out.write(b"FRAME\n" + luma + chroma)
    return path


def code_video(path: Path, text: str, *, blank_frames: int = 15, code_frames: int = 30) -> Path:
    """The desk, then the code held up to the camera (Chromium loops the file)."""
    code = qr_luma(text)
    return write_y4m(path, [blank_luma()] * blank_frames + [code] * code_frames)
