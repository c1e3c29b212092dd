"""The audit trail: every verification and look-up, chained, written through to local files, kept in the store.

On the request path a record is one dict appended to the worker's buffer: no I/O, no
hashing. The worker's maintenance task, every ``FLUSH_INTERVAL_S`` (0.25 s):

1. chains the new records (each gets its ``id`` and ``h``: verifier/api/audit/chain.py)
   and, every ``CHECKPOINT_INTERVAL_S``, seals the chain with a signed checkpoint;
2. writes them through to the worker's shard file and fsyncs it (files.py);
3. delivers them to the stream ``pv:audit`` of the store of record with the
   idempotent ``APPEND`` script (stream.py): entries of up to ``BATCH`` records and
   about ``BATCH_BYTES``, in pipelines of about ``PIPELINE_BYTES``. (One script call
   per batch rather than per record: redis-py spends ~30-40 µs packing a command. The
   byte bounds are for bulk look-ups, whose records name up to 10,000 permits, ~19 KB
   per 1,000: a multi-megabyte call held the store, and everything waiting on it, for
   tens of milliseconds; requests are served between the pipelines.)

When the store cannot take them, the files are the spool: nothing undelivered is kept
in memory. The worker then delivers from its files, from the store's head of its shard
on, up to ``CATCH_UP_BYTES`` a tick, until it has caught up. A clean stop with the
store away keeps the undelivered records in the files (it logs how many, and where);
the next worker that claims the slot, or any worker of the host sweeping the slots no
process holds (every ``ORPHAN_SWEEP_S``), delivers them once the store is back.

Delivery is effectively once: a batch the store took already (a flush that failed
half-way and was sent again, a spool replayed twice) is refused by the head check and
not written again. Duplicates remain possible (at least once) only where a record
reached the stream under two ids: the failing write of a disk that failed.

Loss window: on ``kill -9`` or a crash of the machine, the records of that worker's
last flush interval (0.25 s) that were not yet fsynced. If the audit folder cannot be
written (full, read-only), the worker says so once and goes on without files, under
a shard of its own (``<node>-m<random>``), holding undelivered records in memory: at
most ``BUFFER_LIMIT``, past that the oldest are dropped, counted and logged.

A record: ``t`` (epoch ms, as the worker saw it), ``key`` (key id), ``role``,
``terminal``, ``kind`` (qr, card, manual, permit, lookup; sign_in, match and holder_*
for the e-card platform's holder calls; checkpoint for the chain's seals), ``profile``, ``pn`` (permit number; a bulk look-up names the permits it
showed, comma-separated, with the counts ``asked`` and ``missing``), ``result``; then
``rid`` (the request id, ``X-Request-Id``: verifier/api/request_id.py) when the record
was made while serving a request; then ``id`` and ``h`` (chain.py). :func:`verifier.api.audit.export.export_audit` writes one
NDJSON line per record.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from pathlib import Path
from typing import Any

import orjson

from verifier.api.audit.chain import CHECKPOINT_INTERVAL_S, CHECKPOINT_KIND, Chain, CheckpointSigner, Link
from verifier.api.audit.files import AuditFiles
from verifier.api.audit.history import HistoryPolicy
from verifier.api.audit.stream import AUDIT_STREAM, Delivered, Numbered, deliver, hash_of, head_key, publish_key
from verifier.lib.logging import REQUEST_ID
from verifier.lib.redis_client import AsyncRedisClient
from verifier.lib.redis_errors import REDIS_UNAVAILABLE

__all__ = ["AUDIT_STREAM", "AuditLog"]

FLUSH_INTERVAL_S = 0.25
"""How often the maintenance task flushes (verifier/api/verdicts/index_view.py REFRESH_S is the same tick)."""
CATCH_UP_BYTES = 4 * 1024 * 1024
"""Read back from the files and delivered per tick while catching up (~16,000 records)."""
ORPHAN_SWEEP_S = 30.0
"""How often a worker looks for records the store lacks in slots no process holds (and retries a held shard)."""
CLOSE_CATCH_UP_S = 5.0
"""How long a clean stop keeps delivering from the files when it finds the store back."""
BUFFER_LIMIT = 200_000
"""Without files: the undelivered records a worker holds in memory at most."""

log = logging.getLogger("verifier.audit")


class AuditLog:
    """One worker's audit: its buffer, its shard's chain, its files, its delivery to the store."""

    __slots__ = ("_store", "_files", "_chain", "_signer", "_buffer", "_unsent", "_behind", "_held_until",
                 "_last_checkpoint", "_since_checkpoint", "_last_sweep", "_key_published", "_gap_logged",
                 "_known_head", "_inflight", "dropped", "written", "history")

    def __init__(self, store: AsyncRedisClient, history: HistoryPolicy | None = None, *,
                 files: AuditFiles | None = None) -> None:
        """``history``: what "who verified me" keeps (written with each batch the store takes).
        Without ``files``: no write-through, a shard of its own (tools, tests, a folder that failed)."""
        self._store = store
        self.history = history or HistoryPolicy()
        self._files = files
        if files is not None:
            self._chain = Chain(files.link)
            self._signer = files.signer
        else:
            self._chain = Chain(Link.start(f"{secrets.token_hex(4)}-m{secrets.token_hex(3)}"))
            self._signer = CheckpointSigner.ephemeral()
        self._buffer: list[dict[str, Any]] = []
        self._unsent: list[Numbered] = []
        # A claimed slot may hold records its last writer could not deliver, or (its files lost) end before
        # the store's head of it: look at the store before sending anything.
        self._behind = files is not None
        self._known_head = self._chain.seq
        """The last record of the shard known to be in the store."""
        self._held_until = 0.0
        self._last_checkpoint = time.monotonic()
        self._since_checkpoint = 0
        self._last_sweep = float("-inf")
        self._key_published = False
        self._gap_logged = False
        self._inflight: asyncio.Future[int] | None = None
        self.dropped = 0
        self.written = 0

    @classmethod
    def open(cls, store: AsyncRedisClient, audit_dir: Path, history: HistoryPolicy | None = None) -> "AuditLog":
        """The worker's audit with its shard claimed in ``audit_dir``; without files if the folder fails."""
        try:
            files = AuditFiles.claim(audit_dir)
        except OSError as exc:
            log.error("audit files: cannot use %s (%s); going on without them: undelivered records are then "
                      "held in memory only", audit_dir, exc)
            return cls(store, history)
        log.info("audit: shard %s in %s, from record %d", files.name, files.shard.directory, files.link.seq + 1)
        return cls(store, history, files=files)

    @property
    def shard(self) -> str:
        return self._chain.shard

    @property
    def files(self) -> AuditFiles | None:
        return self._files

    def record(
        self,
        *,
        key_id: str,
        role: str,
        kind: str,
        result: str,
        terminal: str = "",
        profile: str = "",
        permit_number: str = "",
        **extra: str,
    ) -> None:
        entry = {
            "t": int(time.time() * 1000),
            "key": key_id,
            "role": role,
            "terminal": terminal,
            "kind": kind,
            "profile": profile,
            "pn": permit_number,
            "result": result,
        }
        request_id = REQUEST_ID.get()
        if request_id:
            entry["rid"] = request_id
        if extra:
            entry.update(extra)
        self._buffer.append(entry)

    def __len__(self) -> int:
        """Records (and checkpoints) not yet known to be in the store."""
        return len(self._buffer) + (self._chain.seq - self._known_head if self._behind else len(self._unsent))

    # -- the flush --------------------------------------------------------------

    async def flush(self, *, checkpoint: bool = False) -> int:
        """Chain, write through, deliver; returns the records the store took. ``checkpoint``: seal now.

        A flush runs as a task of its own, shielded from its caller's cancellation: once it has
        taken records from the buffer and chained them they exist only in that task until the
        files have them, and a shutdown that cancelled the maintenance loop in the middle of the
        write (the write queued in the files' thread, so never run) lost them while their
        numbers stayed used. Flushes never overlap: one waits for the one before."""
        previous = self._inflight
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        task = asyncio.ensure_future(self._flush(checkpoint))
        self._inflight = task
        # (a failure of a flush whose caller was cancelled is the next flush's to see, not asyncio's to print)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return await asyncio.shield(task)

    async def _flush(self, checkpoint: bool) -> int:
        numbered = self._seal(checkpoint)
        if numbered and self._files is not None:
            try:
                await self._files.append([line for _n, line in numbered], numbered[0][0])
            except OSError as exc:
                numbered = await self._without_files(exc, numbered)
        delivering = self._files is None or not self._behind
        if delivering:  # else they are in the files, which the catch-up reads
            self._unsent.extend(numbered)
        try:
            if not self._key_published:
                await publish_key(self._store, self._signer.jwk())
                self._key_published = True
            taken = await self._deliver_unsent() if delivering else await self._catch_up()
            if self._files is not None and not self._behind and time.monotonic() - self._last_sweep >= ORPHAN_SWEEP_S:
                self._last_sweep = time.monotonic()
                taken += await self._sweep_orphans()
        except REDIS_UNAVAILABLE:
            if self._files is not None:
                # The files hold every record: deliver from them once the store is back.
                self._unsent.clear()
                self._behind = True
            else:
                self._bound_memory()
            return 0
        return taken

    def _seal(self, checkpoint: bool) -> list[Numbered]:
        records, self._buffer = self._buffer, []
        first = self._chain.seq + 1
        lines = self._chain.extend(records) if records else []
        self._since_checkpoint += len(records)
        now = time.monotonic()
        if self._since_checkpoint and (checkpoint or now - self._last_checkpoint >= CHECKPOINT_INTERVAL_S):
            lines.append(self._chain.checkpoint(self._signer, int(time.time() * 1000)))
            self._since_checkpoint = 0
            self._last_checkpoint = now
        return list(zip(range(first, first + len(lines)), lines))

    async def _without_files(self, exc: OSError, numbered: list[Numbered]) -> list[Numbered]:
        """The folder failed: its shard ends where its files end; these records start a shard without files."""
        files = self._files
        assert files is not None
        log.error("audit files: cannot write %s (%s); going on without files under a new shard: undelivered "
                  "records are now held in memory only", files.shard.directory, exc)
        self._files = None
        self._unsent.clear()  # delivered from the old shard's files by whoever claims or sweeps it next
        self._behind = False
        try:
            await files.close()
        except OSError:
            pass
        self._chain = Chain(Link.start(f"{files.name.split('-')[0]}-m{secrets.token_hex(3)}"))
        self._known_head = 0
        return self._rechain(numbered)

    def _rechain(self, numbered: list[Numbered]) -> list[Numbered]:
        """These records again, under the current chain (their old ids and hashes, and old checkpoints, dropped)."""
        records = [{k: v for k, v in r.items() if k not in ("id", "h")}
                   for r in map(orjson.loads, (line for _n, line in numbered)) if r.get("kind") != CHECKPOINT_KIND]
        first = self._chain.seq + 1
        self._since_checkpoint += len(records)
        return list(zip(range(first, first + len(records)), self._chain.extend(records)))

    async def _fork(self, store_head: Link) -> None:
        """The store holds other records than ours under our numbers (the files were behind the store, and
        the store could not be asked when this worker began): go on in a new slot, with the records this
        worker wrote since it began re-chained there (at least once: some may have reached the store)."""
        old = self._files
        assert old is not None
        log.error("audit: shard %s forked: the store holds record %d with another hash than the files (they "
                  "were behind the store); this worker's records go to a new shard", old.name, store_head.seq)
        pending = await old.read_after(old.link.seq, 1 << 62)
        try:
            new = await old.run(AuditFiles.claim, old.audit_dir)  # the next free slot: this one is still held
        except OSError as exc:
            self._unsent = await self._without_files(exc, pending)
            return
        await old.close()
        self._files = new
        self._chain = Chain(new.link)
        self._known_head = new.link.seq
        numbered = self._rechain(pending)
        self._unsent = []
        self._behind = True  # delivered from the new slot's files (after whatever its last writer left there)
        if numbered:
            try:
                await new.append([line for _n, line in numbered], numbered[0][0])
            except OSError as exc:
                self._unsent = await self._without_files(exc, numbered)

    def _bound_memory(self) -> None:
        excess = len(self._unsent) - BUFFER_LIMIT
        if excess > 0:
            del self._unsent[:excess]
            self.dropped += excess
            log.warning("audit: %d records dropped: the store is unreachable and there are no audit files to "
                        "hold them", excess)

    async def _deliver_unsent(self) -> int:
        if not self._unsent:
            return 0
        pending = self._unsent
        # A shard without files has no history anyone could restore: the store takes it as it comes.
        delivered = await self._deliver(self.shard, pending, adopt=self._files is None)
        if delivered.held:
            self._hold()
            self._behind = True
        elif delivered.forked is not None and self._files is not None:
            await self._fork(delivered.forked)
            return delivered.taken + await self._deliver_unsent()
        else:
            self._known_head = pending[-1][0]
        self._unsent = []
        return delivered.taken

    async def _catch_up(self) -> int:
        if time.monotonic() < self._held_until:
            return 0
        assert self._files is not None
        head = await self._head(self.shard)
        claimed = self._files.link.seq
        if head.seq > claimed:
            # The store holds records of this shard that its files did not have when this worker began.
            if self._chain.seq == claimed:
                # The files ended before the store's head (lost, or restored from an old copy) and this
                # worker has chained nothing since: go on from the store's head.
                log.warning("audit: the files of shard %s end at record %d, the store holds up to %d: the chain "
                            "goes on from the store's head", self.shard, claimed, head.seq)
                self._chain = Chain(head)
                self._known_head = head.seq
                self._behind = False
                return 0
            ours = await self._files.read_after(head.seq - 1, 1)
            if not ours or ours[0][0] != head.seq or hash_of(ours[0][1]) != head.hash.hex().encode():
                await self._fork(head)
                return await self._deliver_unsent()
        self._known_head = head.seq
        if head.seq >= self._chain.seq:  # the store has it all
            self._behind = False
            return 0
        lines = await self._files.read_after(head.seq, CATCH_UP_BYTES)
        if not lines:
            self._behind = False
            return 0
        delivered = await self._deliver(self.shard, lines)
        self._known_head = head.seq + delivered.taken
        if delivered.held:
            self._hold()
        elif delivered.forked is not None:
            await self._fork(delivered.forked)
            return delivered.taken + await self._deliver_unsent()
        elif lines[-1][0] >= self._chain.seq:
            self._behind = False
            log.warning("audit: shard %s caught up with the store (record %d)", self.shard, self._chain.seq)
        return delivered.taken

    def _hold(self) -> None:
        self._held_until = time.monotonic() + ORPHAN_SWEEP_S
        log.error("audit: the store has no history of shard %s and its records do not begin at 1 (the store "
                  "lost the audit, or the oldest files were moved away): run `verifier audit restore` "
                  "to put them back; until then this shard's records stay in %s", self.shard,
                  self._files.shard.directory if self._files is not None else "memory")

    async def _head(self, shard: str) -> Link:
        seq, digest = await self._store.hmget(head_key(shard), "seq", "h")
        if seq is None or digest is None:
            return Link.start(shard)
        return Link(shard, int(seq), bytes.fromhex(digest.decode() if isinstance(digest, bytes) else digest))

    async def _sweep_orphans(self) -> int:
        """Deliver what the store lacks from the slots no process holds (a worker that is gone for good)."""
        assert self._files is not None
        files = self._files
        taken = 0
        for shard in files.orphans():
            if not await files.run(shard.try_lock):
                continue
            try:
                link = await files.run(shard.recover)
                head = (await self._head(shard.name)).seq
                if link.seq > head:
                    lines = await files.run(shard.read_after, head, CATCH_UP_BYTES)
                    delivered = await self._deliver(shard.name, lines)
                    taken += delivered.taken
                    if delivered.taken:
                        log.warning("audit: delivered %d records of shard %s, which no worker holds",
                                    delivered.taken, shard.name)
                    if delivered.forked is not None:
                        log.error("audit: shard %s (no worker holds it) forked at record %d: its files hold other "
                                  "records than the store under those numbers; left as they are", shard.name,
                                  delivered.forked.seq)
                    elif link.seq > head + delivered.taken and not delivered.held:
                        self._last_sweep = float("-inf")  # more to do: come back next tick
            finally:
                await files.run(shard.unlock)
        return taken

    async def _deliver(self, shard: str, numbered: list[Numbered], *, adopt: bool = False) -> Delivered:
        delivered = await deliver(self._store, shard, numbered, adopt=adopt, history=self.history)
        self.written += delivered.taken
        if delivered.gaps and not self._gap_logged:
            self._gap_logged = True
            first, last = delivered.gaps[0]
            log.error("audit: shard %s: records %d..%d never reached the store", shard, first, last)
        return delivered

    # -- the end ----------------------------------------------------------------

    async def close(self) -> None:
        """A clean stop: seal the chain, flush, and say what the store could not take (it stays in the files)."""
        # (flush first waits for a flush whose caller, the maintenance loop, was cancelled)
        await self.flush(checkpoint=True)
        deadline = time.monotonic() + CLOSE_CATCH_UP_S
        while self._behind and self._files is not None and time.monotonic() < deadline:
            before = self.written
            await self.flush()
            if self.written == before:
                break
        files = self._files
        if files is not None:
            if self._behind:
                log.warning("shutdown: the store could not take every audit record: those after the store's "
                            "head of shard %s (up to record %d) are kept in %s and delivered when a worker "
                            "starts again with the store reachable", self.shard, self._chain.seq,
                            files.shard.directory)
            await files.close()
            self._files = None
        elif self._unsent:
            log.error("shutdown: %d audit records could not be written (the store is unreachable and there "
                      "are no audit files)", len(self._unsent))
