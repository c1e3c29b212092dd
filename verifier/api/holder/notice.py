"""The Notice of Foreigner's Work Permit as a file: PNG (the QR code) or PDF (fields and QR).

The QR symbol is made by ``segno`` from the upstream's signed ``WP1:`` code (base45 is
QR's alphanumeric alphabet, so segno encodes it in alphanumeric mode), error
correction level M.

The PDF is written here, by hand (~100 lines), rather than with a PDF library: one A4
page, the standard Helvetica fonts (nothing embedded), the permit's fields as text and
the QR drawn as filled vector squares, so it prints sharp at any resolution and the
file is the same for the same code (~35 KB for a 400-character code). A library (fpdf2, reportlab)
would bring image handling and fonts this page does not need. The symbol is
:data:`QR_SIZE_MM` wide with its quiet zone: ~0.75 mm a module for a 400-character
code (QR version 12, 65 modules), well above the ~0.5 mm a module that printed codes
are usually given for phone and counter scanners. Text is encoded in WinAnsi (Latin-1); names are in Latin letters on
the permit (WIRE-FORMAT 3), anything else is shown as ``?``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import segno

__all__ = ["QR_SIZE_MM", "qr_png", "notice_pdf"]

QR_SIZE_MM = 55.0
"""The printed symbol's side, quiet zone included."""
_QUIET_ZONE = 4  # modules, ISO/IEC 18004
_PT_PER_MM = 72 / 25.4
_A4 = (595.28, 841.89)


def _symbol(qr_text: str) -> segno.QRCode:
    return segno.make(qr_text, error="m", micro=False, boost_error=False)


def qr_png(qr_text: str, scale: int = 8) -> bytes:
    """The QR code alone, ``scale`` pixels a module, with its quiet zone."""
    out = io.BytesIO()
    _symbol(qr_text).save(out, kind="png", scale=scale, border=_QUIET_ZONE)
    return out.getvalue()


def _pdf_text(text: str) -> bytes:
    raw = text.encode("cp1252", errors="replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _qr_squares(qr_text: str, left: float, top: float, size: float) -> bytes:
    """The symbol as filled rectangles: one per run of dark modules in a row."""
    matrix = _symbol(qr_text).matrix
    modules = len(matrix) + 2 * _QUIET_ZONE
    step = size / modules
    parts = [b"0 0 0 rg"]
    for row, line in enumerate(matrix):
        y = top - (row + _QUIET_ZONE + 1) * step
        column = 0
        while column < len(line):
            if line[column]:
                start = column
                while column < len(line) and line[column]:
                    column += 1
                x = left + (start + _QUIET_ZONE) * step
                parts.append(b"%.3f %.3f %.3f %.3f re" % (x, y, (column - start) * step, step))
            else:
                column += 1
    parts.append(b"f")
    return b"\n".join(parts)


def notice_pdf(title: str, fields: Sequence[tuple[str, str]], qr_text: str, footer: Sequence[str]) -> bytes:
    """One A4 page: ``title``, the ``fields`` as label and value, the QR code, ``footer`` lines."""
    width, height = _A4
    margin = 20 * _PT_PER_MM
    text = [b"BT", b"/F2 18 Tf", b"%.2f %.2f Td" % (margin, height - margin - 18), _pdf_text(title) + b" Tj", b"ET"]
    y = height - margin - 60
    for label, value in fields:
        text += [b"BT", b"/F1 10 Tf", b"%.2f %.2f Td" % (margin, y), _pdf_text(label) + b" Tj", b"ET",
                 b"BT", b"/F2 12 Tf", b"%.2f %.2f Td" % (margin + 130, y), _pdf_text(value) + b" Tj", b"ET"]
        y -= 22
    size = QR_SIZE_MM * _PT_PER_MM
    qr_top = y - 10
    squares = _qr_squares(qr_text, margin, qr_top, size)
    y = qr_top - size - 16
    for line in footer:
        text += [b"BT", b"/F1 9 Tf", b"%.2f %.2f Td" % (margin, y), _pdf_text(line) + b" Tj", b"ET"]
        y -= 13
    content = b"\n".join([*text, squares])
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.2f %.2f] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R /F2 6 0 R >> >> >>" % (width, height),
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
        b"<< /Title " + _pdf_text(title) + b" /Producer (permit-verifier) >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 7 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
