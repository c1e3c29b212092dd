"""The simulated upstream's issuing desk: its signing keys and trust list, and real
signed WP1/ES1 codes, card certificates and software cards for its permits (for the
tests, the demo and the load tests). The issuing itself is :mod:`verifier.issuing`'s.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from verifier.index.records import PermitRecord
from verifier.lib.upstream_notice import Notice
from verifier.upstream.feed import EventNotApplicable, PermitFeed

if TYPE_CHECKING:
    from verifier.issuing import IssuerKey, KeyRing, SoftwareCard

__all__ = ["IssuingDesk", "KeySet"]


@dataclass(slots=True)
class KeySet:
    """The desk's key ring and the version of the trust list it makes."""

    ring: KeyRing
    version: int = 1
    rotations: int = 0


class IssuingDesk:
    """Keys, trust list and issuing for the permits of ``feed``.

    ``secret`` (from the simulator's seed) derives the first issuer key, the keys of
    rotations and every software card's key, so a simulator rebuilt from its seed
    issues the same; ``key_ring``, when given, is used instead of the derived keys.
    """

    def __init__(self, feed: PermitFeed, secret: bytes, key_ring: KeyRing | None = None) -> None:
        self.feed = feed
        self._key_secret = secret
        self._card_master_seed = hashlib.sha256(b"cards" + secret).digest()
        self._keys = KeySet(ring=key_ring) if key_ring is not None else None

    def issuers(self) -> list[str]:
        from verifier.upstream.population import _REGIONS

        return [f"CN-{code}" for code, _ in _REGIONS]

    @property
    def keys(self) -> KeySet:
        if self._keys is None:
            from verifier.issuing import IssuerKey, KeyRing

            seed = hashlib.sha256(b"issuer-key-0" + self._key_secret).digest()
            ring = KeyRing([IssuerKey.from_seed(seed, self.issuers(), created=0)])
            self._keys = KeySet(ring=ring)
        return self._keys

    def trust_list(self) -> dict[str, Any]:
        """The JWK Set of the keys (WIRE-FORMAT 4) with its version."""
        with self.feed.lock:
            keys = self.keys
            return {**keys.ring.trust_list(), "version": keys.version}

    def rotate_key(self) -> dict[str, Any]:
        """A new active key; the previous active key is retired (still verifies)."""
        with self.feed.lock:
            keys = self.keys
            keys.rotations += 1
            seed = hashlib.sha256(b"issuer-key-%d" % keys.rotations + self._key_secret).digest()
            issuers = list(keys.ring.active.issuers) if any(k.status == "active" for k in keys.ring) else self.issuers()
            keys.ring.rotate(issuers, seed=seed, created=int(self.feed.clock()))
            keys.version += 1
            return self.trust_list()

    def revoke_key(self, kid: str) -> dict[str, Any]:
        with self.feed.lock:
            keys = self.keys
            keys.ring.revoke(kid)
            keys.version += 1
            return self.trust_list()

    def _signing_key(self, record: PermitRecord) -> tuple[IssuerKey, str]:
        key = self.keys.ring.active
        iss = f"CN-{record.pn[2:8]}"
        return key, (iss if iss in key.issuers else key.issuers[0])

    def _signer_of(self, pn: str) -> tuple[PermitRecord, IssuerKey, str]:
        """The permit ``pn`` and the key and issuer that sign its codes."""
        with self.feed.lock:
            record = self.feed.permit(pn)
            key, iss = self._signing_key(record)
        return record, key, iss

    def mint_wp1(self, pn: str, *, iat: int | None = None, exp: int | None = None) -> tuple[str, PermitRecord]:
        from verifier.issuing import mint_wp1

        record, key, iss = self._signer_of(pn)
        now = int(self.feed.clock()) if iat is None else iat
        return mint_wp1(key, record, iat=now, exp=exp, iss=iss), record

    def mint_es1(self, pn: str, *, iat: int | None = None, lifetime: int = 60) -> tuple[str, PermitRecord]:
        from verifier.issuing import mint_es1

        record, key, iss = self._signer_of(pn)
        now = int(self.feed.clock()) if iat is None else iat
        return mint_es1(key, record, iat=now, lifetime=lifetime, iss=iss), record

    def notice(self, pn: str) -> Notice:
        """The holder's Notice of Foreigner's Work Permit: a WP1 code of the permit as it is
        now, valid to the end of its last day. None is issued for a cancelled or ended permit."""
        record = self.feed.permit(pn)
        if record.status != "active":
            raise EventNotApplicable("the permit is cancelled: no notice is issued")
        if record.vt < self.feed.today().isoformat():
            raise EventNotApplicable("the permit has ended: no notice is issued")
        issued_at = self.feed.clock()
        qr, record = self.mint_wp1(pn, iat=int(issued_at))
        return Notice(qr=qr, pn=record.pn, v=record.v, issued_at=issued_at)

    def card(self, cn: str) -> SoftwareCard:
        from verifier.issuing import SoftwareCard

        return SoftwareCard.derive(self._card_master_seed, cn)

    def mint_card(
        self, pn: str, *, cn: str | None = None, iat: int | None = None, exp: int | None = None
    ) -> tuple[str, bytes, PermitRecord]:
        from verifier.issuing import mint_card_certificate

        record, key, iss = self._signer_of(pn)
        cn = cn or record.cn
        if cn is None or record.card_status(cn) is None:
            raise EventNotApplicable("permit has no such card" if cn else "permit has no active card")
        if record.ssn is None:
            raise EventNotApplicable("permit has no social security number")
        now = int(self.feed.clock()) if iat is None else iat
        expires = now + 5 * 365 * 86400 if exp is None else exp
        card = self.card(cn)
        certificate = mint_card_certificate(
            key, {"cn": cn, "ssn": record.ssn, "pn": record.pn}, card.public_key, iat=now, exp=expires, iss=iss
        )
        return cn, certificate, record
