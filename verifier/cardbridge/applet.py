"""The chip commands the bridge sends (ISO 7816-4 APDUs), and a software chip that answers them.

The command set of this project's reference card applet (docs/card-bridge.md):

    SELECT        00 A4 04 00 07 F0 50 56 53 53 43 01 00      -> 90 00
    READ CERT     80 B0 <offset hi> <offset lo> F0             -> up to 240 bytes of the certificate, 90 00
                                                                 (fewer than 240: the last chunk)
    INTERNAL AUTH 00 88 00 00 20 <32-byte challenge> 40        -> 64-byte Ed25519 signature of
                                                                 "SSC-AUTH-1" || challenge, 90 00

:func:`read_card` drives any ``transmit(apdu) -> (data, sw1, sw2)``: a PC/SC
connection (cards.py) or :class:`SoftwareApplet`, the issuing side's
:class:`~verifier.issuing.card.SoftwareCard` answering the same commands, so the
demo and the tests run the very code a real reader runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from verifier.issuing.card import CHALLENGE_LENGTH, SoftwareCard

__all__ = ["AID", "CardError", "SoftwareApplet", "Transmit", "read_card"]

AID: Final = bytes.fromhex("F0505653534301")  # proprietary RID F0, "PVSSC", version 1
CHUNK: Final = 0xF0
MAX_CERTIFICATE: Final = 4096  # the API takes certificates up to 4096 bytes
SW_OK: Final = (0x90, 0x00)

Transmit = Callable[[bytes], tuple[bytes, int, int]]


class CardError(Exception):
    """The card did not answer as the applet should (not our applet, a failed command, a short answer)."""


def _expect_ok(what: str, data: bytes, sw1: int, sw2: int) -> bytes:
    if (sw1, sw2) != SW_OK:
        raise CardError(f"{what}: the card answered {sw1:02X} {sw2:02X}")
    return data


def read_card(transmit: Transmit, challenge: bytes) -> tuple[bytes, bytes]:
    """Select the applet, read the certificate, have the card sign ``challenge``: ``(certificate, signature)``."""
    if len(challenge) != CHALLENGE_LENGTH:
        raise ValueError(f"a challenge is {CHALLENGE_LENGTH} bytes")
    _expect_ok("select", *transmit(bytes([0x00, 0xA4, 0x04, 0x00, len(AID)]) + AID + b"\x00"))
    certificate = bytearray()
    while True:
        offset = len(certificate)
        chunk = _expect_ok("read certificate", *transmit(bytes([0x80, 0xB0, offset >> 8, offset & 0xFF, CHUNK])))
        certificate += chunk
        if len(certificate) > MAX_CERTIFICATE:
            raise CardError("the certificate is longer than 4096 bytes")
        if len(chunk) < CHUNK:
            break
    signature = _expect_ok("internal authenticate", *transmit(bytes([0x00, 0x88, 0x00, 0x00, CHALLENGE_LENGTH]) + challenge + b"\x40"))
    if len(signature) != 64:
        raise CardError(f"the card's signature is {len(signature)} bytes, not 64")
    if not certificate:
        raise CardError("the card holds no certificate")
    return bytes(certificate), signature


class SoftwareApplet:
    """A software card's chip: answers the three commands above, and nothing else."""

    def __init__(self, card: SoftwareCard) -> None:
        if not card.certificate:
            raise ValueError("a software applet needs a card with its certificate")
        self.card = card
        self.selected = False

    def transmit(self, apdu: bytes) -> tuple[bytes, int, int]:
        if len(apdu) < 4:
            return b"", 0x67, 0x00  # wrong length
        cla, ins, p1, p2 = apdu[:4]
        if (cla, ins, p1, p2) == (0x00, 0xA4, 0x04, 0x00):
            self.selected = apdu[5:5 + apdu[4]] == AID if len(apdu) > 5 else False
            return (b"", *SW_OK) if self.selected else (b"", 0x6A, 0x82)  # file not found
        if not self.selected:
            return b"", 0x69, 0x85  # conditions of use not satisfied
        certificate = self.card.certificate or b""
        if (cla, ins) == (0x80, 0xB0) and len(apdu) == 5:
            offset = (p1 << 8) | p2
            return (certificate[offset:offset + (apdu[4] or 256)], *SW_OK)
        if (cla, ins, p1, p2) == (0x00, 0x88, 0x00, 0x00) and len(apdu) == 6 + CHALLENGE_LENGTH \
                and apdu[4] == CHALLENGE_LENGTH:
            return (self.card.sign_challenge(apdu[5:5 + CHALLENGE_LENGTH]), *SW_OK)
        return b"", 0x6D, 0x00  # instruction not supported
