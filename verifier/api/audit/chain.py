"""The audit's hash chain and its signed checkpoints: what makes the audit tamper-evident.

Shards. Every writer of audit records (one API worker) chains its own records, in
its own shard, so that no two processes ever coordinate on the hot path: a shard is
named ``<node>-w<n>`` (the node: a random id kept in the audit folder of a host; n:
the worker's slot there, see :mod:`verifier.api.audit.files`), and a worker that
restarts takes its slot's chain up where its predecessor left it.

Links. Record ``n`` of shard ``S`` carries ``id = "S:n"`` (n = 1, 2, ...) and
``h = SHA-256(h(n-1) || content(n))`` in hex, where ``content`` is the record without
``h`` as JSON with sorted keys and no whitespace (UTF-8; the values are strings and
integers, which JSON carries exactly) and ``h(0) = SHA-256("PV-AUDIT-CHAIN-1" || S)``.
So an edited record no longer matches its ``h``; a deleted one leaves a gap in the
ids; a moved one comes out of order; and a whole rewritten tail no longer matches the
next checkpoint.

Checkpoints. At a fixed interval (:data:`CHECKPOINT_INTERVAL_S`) and on a clean stop
each writer appends a record of kind ``checkpoint`` to its shard: ``covers`` (the id
number it seals) and ``head`` (that record's ``h``), signed with Ed25519 over
``"PV-AUDIT-CHECKPOINT-1" 0 S 0 covers 0 head 0 t`` (``sig``, base64url; ``kid``, the
key's id). The checkpoint key is the audit's own, not the receipts' (those live in the
store): each host keeps its seed in its audit folder, readable by the service only,
so whoever can write the store of record cannot also re-sign a rewritten chain. The
public keys are published in the store (``{pv:audit}:keys``) and printed by
``verifier audit keys``; an auditor pins them (``verifier audit verify --keys``).

Hashing happens at flush time, in each worker's maintenance task, never on the
request path (:mod:`verifier.api.audit.log`). :class:`ChainVerifier` is the check of
``verifier audit verify``.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing
import orjson

__all__ = [
    "CHECKPOINT_INTERVAL_S",
    "CHECKPOINT_KIND",
    "Break",
    "Chain",
    "ChainVerifier",
    "CheckpointSigner",
    "Link",
    "ShardReport",
    "content_of",
    "genesis",
    "keys_of_jwks",
    "parse_id",
]

CHECKPOINT_INTERVAL_S = 60.0
"""How often a writer seals its shard with a signed checkpoint (and once more on a clean stop)."""
CHECKPOINT_KIND = "checkpoint"
_CHAIN_CONTEXT = b"PV-AUDIT-CHAIN-1"
_CHECKPOINT_CONTEXT = b"PV-AUDIT-CHECKPOINT-1"
_SORTED = orjson.OPT_SORT_KEYS


def genesis(shard: str) -> bytes:
    """The hash before a shard's first record."""
    return hashlib.sha256(_CHAIN_CONTEXT + shard.encode()).digest()


def content_of(record: Mapping[str, Any]) -> bytes:
    """The bytes a record's ``h`` covers (with the previous record's hash)."""
    return orjson.dumps({k: v for k, v in record.items() if k != "h"}, option=_SORTED)


def parse_id(record_id: object) -> tuple[str, int] | None:
    """``(shard, n)`` of an id ``"S:n"``, or None if it is not one."""
    if not isinstance(record_id, str):
        return None
    shard, _, number = record_id.rpartition(":")
    if not shard or not number.isdigit():
        return None
    return shard, int(number)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _checkpoint_message(shard: str, covers: int, head: str, t: int) -> bytes:
    return b"\0".join((_CHECKPOINT_CONTEXT, shard.encode(), str(covers).encode(), head.encode(), str(t).encode()))


@dataclass(frozen=True, slots=True)
class Link:
    """Where a shard's chain stands: its last record's number and hash (0 and the genesis hash when empty)."""

    shard: str
    seq: int
    hash: bytes

    @classmethod
    def start(cls, shard: str) -> "Link":
        return cls(shard, 0, genesis(shard))


class Chain:
    """One writer's shard: appends records to the chain and encodes them as stored (one JSON line each)."""

    __slots__ = ("shard", "seq", "head")

    def __init__(self, link: Link) -> None:
        self.shard = link.shard
        self.seq = link.seq
        self.head = link.hash

    @property
    def link(self) -> Link:
        return Link(self.shard, self.seq, self.head)

    def extend(self, records: Iterable[dict[str, Any]]) -> list[bytes]:
        """Give each record its id and hash; returns their stored lines (JSON, no newline), in order.

        One JSON encoding per record: the line is the hashed content with ``h`` spliced
        in before its closing brace (JSON objects are unordered: the content is the line
        read back without ``h``).
        """
        lines = []
        prefix = self.shard + ":"
        seq, head = self.seq, self.head
        sha256 = hashlib.sha256
        for record in records:
            seq += 1
            record["id"] = prefix + str(seq)
            content = orjson.dumps(record, option=_SORTED)
            head = sha256(head + content).digest()
            lines.append(b"".join((content[:-1], b',"h":"', head.hex().encode(), b'"}')))
        self.seq, self.head = seq, head
        return lines

    def checkpoint(self, signer: "CheckpointSigner", t_ms: int) -> bytes:
        """Seal the chain as it stands with a signed checkpoint record; returns its stored line."""
        head = self.head.hex()
        record = {
            "t": t_ms, "key": "", "role": "", "terminal": "", "kind": CHECKPOINT_KIND, "profile": "", "pn": "",
            "result": "", "covers": self.seq, "head": head, "kid": signer.kid,
            "sig": signer.sign(_checkpoint_message(self.shard, self.seq, head, t_ms)),
        }
        return self.extend([record])[0]


class CheckpointSigner:
    """The Ed25519 key that signs one host's checkpoints (its seed in the audit folder, mode 0600)."""

    __slots__ = ("_key", "public_key", "kid")

    def __init__(self, seed: bytes) -> None:
        self._key = nacl.signing.SigningKey(seed)
        self.public_key = bytes(self._key.verify_key)
        self.kid = _b64url(hashlib.sha256(self.public_key).digest()[:8])

    @classmethod
    def load_or_create(cls, path: Path) -> "CheckpointSigner":
        """The key in ``path``, made by whichever worker of the host starts first."""
        if not path.exists():
            partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, nacl.signing.SigningKey.generate().encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(partial, path)  # fails if another worker was first: then its key it is
            except FileExistsError:
                pass
            finally:
                partial.unlink(missing_ok=True)
        seed = path.read_bytes()
        if len(seed) != 32:
            raise ValueError(f"{path} does not hold a 32-byte Ed25519 seed")
        return cls(seed)

    @classmethod
    def ephemeral(cls) -> "CheckpointSigner":
        """A key for a worker without a writable audit folder (published like the others)."""
        return cls(nacl.signing.SigningKey.generate().encode())

    def sign(self, message: bytes) -> str:
        return _b64url(self._key.sign(message).signature)

    def jwk(self) -> dict[str, str]:
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(self.public_key), "kid": self.kid,
                "alg": "EdDSA", "use": "sig"}


@dataclass
class ShardReport:
    """What the check saw of one shard."""

    shard: str
    first: int = 0
    """The first record's number (1 unless the records start later: a partial export, a trimmed stream)."""
    last: int = 0
    records: int = 0
    checkpoints: int = 0
    last_checkpoint: int = 0
    """The number of the last record a valid checkpoint seals (0: none)."""


@dataclass
class Break:
    """The first broken link of the records checked."""

    where: str
    """The source and position (``file:line`` or a stream entry id)."""
    shard: str
    seq: int
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: shard {self.shard} record {self.seq}: {self.problem}"


@dataclass
class ChainVerifier:
    """Checks records in their stored order, shard by shard; keeps the first broken link and counts the rest.

    ``keys``: the trusted checkpoint keys by kid (public key bytes); a checkpoint by
    another key is a break. ``anchors``: shards known to start after record 0 (a
    trimmed stream: the number and hash of the last record trimmed). Without an anchor,
    a shard's first record must be record 1, unless ``partial`` (an export from a time
    on): then the first record seen is taken as it is and the chain is checked from it.
    """

    keys: Mapping[str, bytes]
    anchors: Mapping[str, Link] = field(default_factory=dict)
    partial: bool = False
    shards: dict[str, ShardReport] = field(default_factory=dict)
    first_break: Break | None = None
    breaks: int = 0
    unchained: int = 0
    """Records without an id (written before the chain existed): reported, not judged."""
    _heads: dict[str, tuple[int, bytes]] = field(default_factory=dict)

    def _broken(self, where: str, shard: str, seq: int, problem: str) -> None:
        self.breaks += 1
        if self.first_break is None:
            self.first_break = Break(where, shard, seq, problem)

    def check(self, record: Mapping[str, Any], where: str) -> None:
        parsed = parse_id(record.get("id"))
        if parsed is None:
            if "h" in record or "id" in record:
                self._broken(where, "?", 0, "an id that is not SHARD:NUMBER")
            else:
                self.unchained += 1
            return
        shard, seq = parsed
        report = self.shards.get(shard)
        if report is None:
            report = self.shards[shard] = ShardReport(shard, first=seq)
            anchor = self.anchors.get(shard)
            if anchor is not None:
                self._heads[shard] = (anchor.seq, anchor.hash)
            elif seq == 1 or not self.partial:
                self._heads[shard] = (0, genesis(shard))
        stated = record.get("h")
        try:
            stated_hash = bytes.fromhex(stated) if isinstance(stated, str) else b""
        except ValueError:
            stated_hash = b""
        previous = self._heads.get(shard)
        report.records += 1
        report.last = max(report.last, seq)
        if previous is None:  # a partial export's first record of this shard: it anchors the rest
            self._heads[shard] = (seq, stated_hash)
        else:
            expected_seq, head = previous[0] + 1, previous[1]
            if seq != expected_seq:
                if seq > expected_seq:
                    missing = seq - expected_seq
                    self._broken(where, shard, seq, f"records {expected_seq}..{seq - 1} are missing "
                                 f"({missing} deleted or never written) before it" if missing > 1 else
                                 f"record {expected_seq} is missing (deleted or never written) before it")
                    # carry on from this record, so that one gap is one break, not a break per record
                    self._heads[shard] = (seq, stated_hash)
                else:
                    # a record from before: the chain carries on from where it stood
                    self._broken(where, shard, seq, f"out of order: it comes after record {previous[0]}")
            else:
                computed = hashlib.sha256(head + content_of(record)).digest()
                if computed != stated_hash:
                    self._broken(where, shard, seq, "its hash does not match its content and the record "
                                 "before it (edited, or the one before it was)")
                self._heads[shard] = (seq, stated_hash)
        if record.get("kind") == CHECKPOINT_KIND:
            self._check_checkpoint(record, shard, seq, previous, where, report)

    def _check_checkpoint(self, record: Mapping[str, Any], shard: str, seq: int,
                          previous: tuple[int, bytes] | None, where: str, report: ShardReport) -> None:
        report.checkpoints += 1
        covers, head, kid, sig, t = (record.get(k) for k in ("covers", "head", "kid", "sig", "t"))
        if not (isinstance(covers, int) and isinstance(head, str) and isinstance(kid, str)
                and isinstance(sig, str) and isinstance(t, int)):
            self._broken(where, shard, seq, "a checkpoint without covers, head, kid, sig and t")
            return
        public_key = self.keys.get(kid)
        if public_key is None:
            self._broken(where, shard, seq, f"a checkpoint signed by key {kid!r}, which is not a trusted key")
            return
        try:
            nacl.signing.VerifyKey(public_key).verify(_checkpoint_message(shard, covers, head, t), _b64url_decode(sig))
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            self._broken(where, shard, seq, "a checkpoint whose signature does not verify")
            return
        if previous is not None and (covers != seq - 1 or head != previous[1].hex()):
            self._broken(where, shard, seq, f"a checkpoint sealing record {covers} with another hash than the "
                         "chain holds (the records before it were rewritten)")
            return
        report.last_checkpoint = covers

    def finish(self, heads: Mapping[str, Link] | None = None, where: str = "the end") -> None:
        """After the last record: with the store's ``heads``, a shard whose last records are gone is a break too."""
        for shard, link in (heads or {}).items():
            seen = self._heads.get(shard)
            last = seen[0] if seen is not None else self.anchors.get(shard, Link.start(shard)).seq
            if last < link.seq:
                self._broken(where, shard, last + 1, f"the store's head of this shard is record {link.seq}: "
                             f"records {last + 1}..{link.seq} are missing (deleted at the end)")
            elif seen is not None and last == link.seq and seen[1] != link.hash:
                self._broken(where, shard, last, "the last record's hash differs from the store's head")

    @property
    def ok(self) -> bool:
        return self.breaks == 0


def keys_of_jwks(jwks: Mapping[str, Any]) -> dict[str, bytes]:
    """Public checkpoint keys by kid from a JWK Set (``verifier audit keys``)."""
    keys = {}
    for key in jwks.get("keys", ()):
        if key.get("kty") == "OKP" and key.get("crv") == "Ed25519" and isinstance(key.get("kid"), str):
            keys[key["kid"]] = _b64url_decode(key["x"])
    return keys
