"""Where the bridge's card comes from: a PC/SC reader, or the issuing side's software card.

- :class:`PcscCardSource`: the first (or the named) PC/SC reader through ``pyscard``,
  an optional dependency (``pip install 'permit-verifier[card-reader]'``; it needs the
  PC/SC daemon, ``pcscd``). Imported only when asked for.
- :class:`AppletCardSource`: a software chip behind the same commands
  (:mod:`verifier.cardbridge.applet`): a card folder written by ``verifier mint card``
  (``--card DIR``) or a card of the upstream simulator (``--simulator URL --pn PN``, what
  the demo does: the simulator holds its cards' keys and signs for them).

:func:`choose_source` picks a reader when one is present and a software card otherwise.
"""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import Any, Protocol

import httpx

from verifier.cardbridge.applet import SW_OK, CardError, SoftwareApplet, Transmit, read_card
from verifier.issuing.card import SoftwareCard

__all__ = [
    "AppletCardSource", "CardError", "CardSource", "NoCard", "PcscCardSource", "SimulatorApplet",
    "choose_source", "pcsc_readers",
]

CARD_KEY_FILE = "card-key.json"  # the names `verifier mint card --out DIR` writes
CARD_CERTIFICATE_FILE = "card-certificate.cbor"


class NoCard(Exception):
    """No card on the reader."""


class CardSource(Protocol):
    kind: str
    """``pcsc``, ``software`` or ``simulator``."""

    def reader(self) -> str: ...

    def card_present(self) -> bool: ...

    def read(self, challenge: bytes) -> tuple[bytes, bytes]:
        """``(certificate, signature)``; raises NoCard or CardError."""
        ...

    def close(self) -> None: ...


class AppletCardSource:
    """A software chip: always on its (imaginary) reader."""

    def __init__(self, kind: str, label: str, transmit: Transmit, close: Any = None) -> None:
        self.kind = kind
        self.label = label
        self.transmit = transmit
        self._close = close
        self._lock = threading.Lock()  # one card, one command sequence at a time

    @classmethod
    def from_folder(cls, folder: Path) -> "AppletCardSource":
        card = SoftwareCard.load(folder / CARD_KEY_FILE)
        card.certificate = (folder / CARD_CERTIFICATE_FILE).read_bytes()
        return cls("software", f"software card ({folder.name})", SoftwareApplet(card).transmit)

    @classmethod
    def from_simulator(cls, upstream_url: str, pn: str) -> "AppletCardSource":
        applet = SimulatorApplet(upstream_url, pn)
        return cls("simulator", "upstream simulator's card", applet.transmit, close=applet.client.close)

    def reader(self) -> str:
        return self.label

    def card_present(self) -> bool:
        return True

    def read(self, challenge: bytes) -> tuple[bytes, bytes]:
        with self._lock:
            return read_card(self.transmit, challenge)

    def close(self) -> None:
        if self._close is not None:
            self._close()


class SimulatorApplet:
    """The upstream simulator's card of permit ``pn``: its certificate from ``POST /issue/card``, signatures from
    ``POST /cards/{cn}/sign`` (the simulator derives each card's key and keeps it), answering the applet's commands."""

    def __init__(self, upstream_url: str, pn: str, client: httpx.Client | None = None) -> None:
        self.client = client or httpx.Client(base_url=upstream_url, timeout=10.0)
        issued = self.client.post("/issue/card", json={"pn": pn})
        issued.raise_for_status()
        body = issued.json()
        self.cn = str(body["cn"])
        card = SoftwareCard.generate()  # the key stays in the simulator; this object only carries the certificate
        card.certificate = base64.b64decode(body["certificate"])
        self._local = SoftwareApplet(card)

    def transmit(self, apdu: bytes) -> tuple[bytes, int, int]:
        if apdu[:4] == bytes([0x00, 0x88, 0x00, 0x00]) and self._local.selected and len(apdu) == 38:
            reply = self.client.post(f"/cards/{self.cn}/sign", json={"challenge": base64.b64encode(apdu[5:37]).decode()})
            if reply.status_code != 200:
                return b"", 0x6F, 0x00  # the chip failed
            return (base64.b64decode(reply.json()["signature"]), *SW_OK)
        return self._local.transmit(apdu)


def pcsc_readers() -> list[Any]:
    """The PC/SC readers present; none when pyscard or the PC/SC daemon is missing."""
    try:
        from smartcard.System import readers  # type: ignore[import-not-found]
    except ImportError:
        return []
    try:
        return list(readers())
    except Exception:  # no pcscd: pyscard raises its own EstablishContextException
        return []


class PcscCardSource:
    """A card on a real reader. ``reader_name``: a substring of the reader's name (default: the first reader)."""

    kind = "pcsc"

    def __init__(self, reader_name: str | None = None) -> None:
        self.reader_name = reader_name
        self._lock = threading.Lock()

    def _reader(self) -> Any:
        for reader in pcsc_readers():
            if self.reader_name is None or self.reader_name in str(reader):
                return reader
        raise CardError("no PC/SC reader" + (f" named like {self.reader_name!r}" if self.reader_name else ""))

    def reader(self) -> str:
        try:
            return str(self._reader())
        except CardError as exc:
            return str(exc)

    def _connect(self) -> Any:
        from smartcard.Exceptions import CardConnectionException, NoCardException  # type: ignore[import-not-found]

        connection = self._reader().createConnection()
        try:
            connection.connect()
        except (NoCardException, CardConnectionException) as exc:
            raise NoCard(str(exc)) from None
        return connection

    def card_present(self) -> bool:
        try:
            with self._lock:
                self._connect().disconnect()
            return True
        except (NoCard, CardError):
            return False

    def read(self, challenge: bytes) -> tuple[bytes, bytes]:
        with self._lock:
            connection = self._connect()
            try:
                def transmit(apdu: bytes) -> tuple[bytes, int, int]:
                    data, sw1, sw2 = connection.transmit(list(apdu))
                    return bytes(data), sw1, sw2

                return read_card(transmit, challenge)
            except Exception as exc:
                if isinstance(exc, (CardError, ValueError)):
                    raise
                raise CardError(f"{type(exc).__name__}: {exc}") from None  # the card was pulled mid-read, ...
            finally:
                connection.disconnect()

    def close(self) -> None:
        pass  # a connection lives for one read only


def choose_source(*, card_folder: Path | None = None, simulator: str | None = None, pn: str | None = None,
                  reader: str | None = None, use_reader: bool | None = None) -> CardSource:
    """A PC/SC reader when one is present (or ``use_reader``), else the software card asked for."""
    if use_reader or (use_reader is None and pcsc_readers()):
        return PcscCardSource(reader)
    if card_folder is not None:
        return AppletCardSource.from_folder(card_folder)
    if simulator and pn:
        return AppletCardSource.from_simulator(simulator, pn)
    raise CardError("no PC/SC reader and no software card: pass --card DIR (verifier mint card) "
                    "or --simulator URL --pn PERMIT_NUMBER")


