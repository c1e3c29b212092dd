"""The audit's append-only files: every record written through to a local disk, per worker, rotated.

The audit folder (``settings.audit_path``; in production a durable local disk of each
API host, never shared between hosts):

    node                     this folder's random id (every shard name here begins with it)
    checkpoint-key           the checkpoint signing seed (mode 0600; see chain.py)
    <node>-w0/               one folder per shard: a worker slot
        lock                 held (flock) by the process writing the shard
        000000000001.ndjson  records 1, 2, ... (a file is named by the number of its first record)
        000000204801.ndjson  the next file, after a rotation
    <node>-w1/ ...

Each line is one record exactly as the store's stream holds it (JSON with its ``id``
and ``h``), so the files alone are a complete copy of the audit: ``verifier audit
restore`` puts them back into a store that lost them, ``verifier audit verify --files``
checks them. Within a file the records' numbers follow one another.

Rotation: a file is closed for good (and a new one begun) when it passes
:data:`ROTATE_BYTES` or the UTC day changes. Closed files are never written again:
ship them to archive storage (write-once) and delete them from the host as your
retention says.

fsync policy: each flush (every 0.25 s, when there are records) appends the new
records and fsyncs the file *before* they are sent to the store; a new file's folder
is fsynced too. So the files are never behind the store, and a crash of the machine
loses at most the records of one flush interval, the same window as a ``kill -9``.
The writes (and reads back) run in one thread per worker, so a slow disk delays the
audit, never a request.

Claiming a shard: a worker takes the lowest slot whose lock it can take (flock: the
kernel releases it when the process dies, however it dies) and continues the chain
from the last complete line of the slot's newest file. A torn last line (a crash in
the middle of a write) was never sent to the store, since a write is fsynced before
its records are sent: it is cut off.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import fcntl
import logging
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import orjson

from verifier.api.audit.chain import CheckpointSigner, Link, parse_id

__all__ = ["ROTATE_BYTES", "AuditFiles", "ShardFiles", "shard_folders"]

ROTATE_BYTES = 64 * 1024 * 1024
"""A file is closed and a new one begun past this size (and at each UTC midnight)."""
_TAIL_WINDOW = 4 * 1024 * 1024
"""Enough to hold a shard's last line (a record is at most about 200 KB: a bulk look-up's)."""
_FILE_RE = re.compile(r"(\d{12})\.ndjson")
_SHARD_RE = re.compile(r"[0-9a-f]{8}-w\d+")

log = logging.getLogger("verifier.audit")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _node_id(audit_dir: Path) -> str:
    """The folder's id, made once (atomically: the first of several starting workers wins)."""
    path = audit_dir / "node"
    if not path.exists():
        partial = audit_dir / f"node.{os.getpid()}.partial"
        partial.write_text(secrets.token_hex(4) + "\n")
        try:
            os.link(partial, path)
        except FileExistsError:
            pass
        finally:
            partial.unlink(missing_ok=True)
        _fsync_dir(audit_dir)
    node = path.read_text().strip()
    if not re.fullmatch(r"[0-9a-f]{8}", node):
        raise OSError(f"{path} does not hold a node id (8 hex digits)")
    return node


def shard_folders(audit_dir: Path) -> list["ShardFiles"]:
    """Every shard folder of an audit folder, by name."""
    if not audit_dir.is_dir():
        return []
    return [ShardFiles(p) for p in sorted(audit_dir.iterdir()) if p.is_dir() and _SHARD_RE.fullmatch(p.name)]


class ShardFiles:
    """One shard's folder: its files in order, its lock, and the reading of its records."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.name = directory.name
        self._lock_fd: int | None = None
        self._cursor: tuple[int, Path, int] | None = None
        """Where the last read_after ended: (the number of its last record, its file, the offset after it)."""

    def __repr__(self) -> str:
        return f"<ShardFiles {self.directory}>"

    # -- the lock --------------------------------------------------------------

    def try_lock(self) -> bool:
        """Take the shard's lock if no live process holds it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    # -- reading ---------------------------------------------------------------

    def files(self) -> list[tuple[int, Path]]:
        """``(number of the first record, path)`` of each file, in order."""
        found = []
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                match = _FILE_RE.fullmatch(path.name)
                if match:
                    found.append((int(match.group(1)), path))
        return sorted(found)

    def recover(self) -> Link:
        """Where the shard's chain stands, from its newest complete line; cuts off a torn or unreadable tail.

        Needs the lock (nobody else may be writing)."""
        files = self.files()
        while files:
            _first, path = files[-1]
            link = self._last_link(path)
            if link is not None:
                return link
            path.unlink()  # nothing complete in it: as if it had never been begun
            files.pop()
        return Link.start(self.name)

    def _last_link(self, path: Path) -> Link | None:
        with open(path, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            while size > 0:
                start = max(0, size - _TAIL_WINDOW)
                f.seek(start)
                tail = f.read(size - start)
                end = tail.rfind(b"\n")
                if end < 0:
                    cut = start  # no complete line in the window: at most a torn one
                else:
                    begin = tail.rfind(b"\n", 0, end) + 1
                    if begin == 0 and start > 0:
                        raise OSError(f"{path}: a last record longer than {_TAIL_WINDOW} bytes")
                    line = tail[begin:end]
                    link = self._link_of(line)
                    if link is not None:
                        if start + end + 1 < size:
                            log.warning("audit files: cut a torn record off the end of %s (%d bytes; it was "
                                        "never sent to the store)", path, size - (start + end + 1))
                            f.truncate(start + end + 1)
                            os.fsync(f.fileno())
                        return link
                    cut = start + begin
                    log.warning("audit files: cut an unreadable record off the end of %s", path)
                f.truncate(cut)
                os.fsync(f.fileno())
                size = cut
        return None

    def _link_of(self, line: bytes) -> Link | None:
        try:
            record = orjson.loads(line)
            parsed = parse_id(record.get("id"))
            digest = bytes.fromhex(record["h"])
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
            return None
        if parsed is None or parsed[0] != self.name or len(digest) != 32:
            return None
        return Link(self.name, parsed[1], digest)

    def read_after(self, seq: int, max_bytes: int) -> list[tuple[int, bytes]]:
        """``(number, line)`` of the records after number ``seq``, in order, up to about ``max_bytes``.

        A catch-up reads on from where its last read ended: that place is remembered, so a
        long spool is read once, not from its file's start at every tick."""
        out: list[tuple[int, bytes]] = []
        size = 0
        files = self.files()
        # the last file that begins at or before seq + 1, and every one after it
        start = 0
        for i, (first, _path) in enumerate(files):
            if first <= seq + 1:
                start = i
        for first, path in files[start:]:
            number, offset = first - 1, 0
            if self._cursor is not None and self._cursor[0] == seq and self._cursor[1] == path:
                number, offset = seq, self._cursor[2]
            with open(path, "rb") as f:
                f.seek(offset)
                while True:
                    raw = f.readline()
                    if not raw.endswith(b"\n"):
                        break  # the end, or a line being written (only the writer's thread reads its current file)
                    offset += len(raw)
                    number += 1
                    if number <= seq:
                        continue
                    line = raw[:-1]
                    if not out:  # the numbers follow one another in a file: check where we are once
                        parsed = parse_id(orjson.loads(line).get("id"))
                        if parsed is None or parsed[1] != number:
                            raise OSError(f"{path}: record {number} expected, found {parsed}")
                    out.append((number, line))
                    size += len(line)
                    if size >= max_bytes:
                        self._cursor = (number, path, offset)
                        return out
            if out:
                self._cursor = (number, path, offset)
        return out

    def lines(self) -> Iterator[tuple[str, bytes]]:
        """Every complete line of every file, in order, with where it is (``path:line``)."""
        for _first, path in self.files():
            with open(path, "rb") as f:
                for number, raw in enumerate(f, 1):
                    if raw.endswith(b"\n"):
                        yield f"{path}:{number}", raw[:-1]


class AuditFiles:
    """One worker's shard: claimed at start, written through at every flush, released at the end.

    Every file operation runs in the one thread of this writer, in order.
    """

    def __init__(self, audit_dir: Path, shard: ShardFiles, link: Link, signer: CheckpointSigner) -> None:
        self.audit_dir = audit_dir
        self.shard = shard
        self.link = link
        """Where the chain stood when the shard was claimed."""
        self.signer = signer
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="pv-audit-files")
        self._file: int | None = None
        self._file_size = 0
        self._file_day: dt.date | None = None

    @classmethod
    def claim(cls, audit_dir: Path) -> "AuditFiles":
        """Take the lowest free slot of ``audit_dir`` (made if need be). Raises OSError."""
        audit_dir.mkdir(parents=True, exist_ok=True)
        node = _node_id(audit_dir)
        signer = CheckpointSigner.load_or_create(audit_dir / "checkpoint-key")
        slot = 0
        while True:
            shard = ShardFiles(audit_dir / f"{node}-w{slot}")
            if shard.try_lock():
                try:
                    link = shard.recover()
                except BaseException:
                    shard.unlock()
                    raise
                _fsync_dir(audit_dir)
                return cls(audit_dir, shard, link, signer)
            slot += 1

    @property
    def name(self) -> str:
        return self.shard.name

    def orphans(self) -> list[ShardFiles]:
        """The other shards of the folder (a slot no worker holds now may have records the store lacks)."""
        return [s for s in shard_folders(self.audit_dir) if s.name != self.name]

    async def run(self, fn, *args):  # type: ignore[no-untyped-def]
        """``fn(*args)`` in this writer's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def append(self, lines: list[bytes], first_seq: int) -> None:
        """Append the records numbered ``first_seq``, ... and fsync. Raises OSError (nothing then written)."""
        await self.run(self._append, lines, first_seq)

    def _append(self, lines: list[bytes], first_seq: int) -> None:
        today = dt.datetime.now(dt.timezone.utc).date()
        if self._file is not None and (self._file_size >= ROTATE_BYTES or today != self._file_day):
            self._close_file()
        if self._file is None:
            path = self.shard.directory / f"{first_seq:012d}.ndjson"
            self._file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            self._file_size = os.fstat(self._file).st_size
            self._file_day = today
            _fsync_dir(self.shard.directory)
        data = b"\n".join(lines) + b"\n"
        before = self._file_size
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._file, view)
                view = view[written:]
            os.fsync(self._file)
        except OSError:
            # Leave no half of this write behind: its records are not in the files.
            with contextlib.suppress(OSError):
                os.ftruncate(self._file, before)
            raise
        self._file_size = before + len(data)

    def _close_file(self) -> None:
        if self._file is not None:
            try:
                os.fsync(self._file)
            finally:
                os.close(self._file)
                self._file = None

    async def read_after(self, seq: int, max_bytes: int) -> list[tuple[int, bytes]]:
        return await self.run(self.shard.read_after, seq, max_bytes)  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Close the current file (fsynced) and release the slot."""
        try:
            await self.run(self._close_file)
        finally:
            self._thread.shutdown(wait=True)
            self.shard.unlock()
