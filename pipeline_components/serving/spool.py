"""A local spool of log rows: durable mode's write-ahead file and the shutdown spill.

Every row the router logs gets a sequence number. In durable mode (``serving.durable``) the row is
appended here (one ``write`` to an ``O_APPEND`` file) *before* the answer leaves, so the kernel
holds it even if the process is killed with ``SIGKILL`` the next microsecond; with
``serving.wal_fsync`` it is also fsynced (survives a machine crash, costs a disk flush). Without
durable mode the spool only receives rows that could not reach the store before the shutdown
deadline. Either way the next router on the same spool replays it at start.

The store keeps, per spool (``wal_id``), the highest sequence number committed, updated in the same
transaction as the rows (``store.writer_checkpoints``): replay skips what is already stored, so a
crash between a commit and a prune never writes a row twice. Segments are pruned once committed.

Layout: ``<root>/<slot>/{lock, wal.id, active, seg-<first seq>.jsonl}``. A router takes the first
slot whose ``lock`` it can hold (``filelock``, an ``flock`` the kernel drops when the holder dies):
several local routers never share a file, and a restarted one picks up the slot a crashed one left
behind. A file lock is right here, unlike for alias moves (``locks.py``): the spool is this
machine's disk by design, and only processes on this machine can open it. ``active`` exists while
a router owns the slot; finding it at open means the previous owner did not shut down cleanly.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from filelock import FileLock, Timeout

from pipeline_components.errors import DeploymentError

log = logging.getLogger("abx.serving.spool")
Item = tuple[int, str, Mapping[str, Any]]  # (sequence number, table, row)
MAX_SLOTS = 64


def encode(item: Item) -> bytes:
    """One JSON line; rows orjson cannot encode (lone surrogates, odd types) go through json."""
    try:
        return orjson.dumps(item) + b"\n"
    except TypeError:
        return json.dumps(item, default=repr, ensure_ascii=True).encode() + b"\n"


def decode(line: bytes) -> Item:
    try:
        seq, table, row = orjson.loads(line)
    except orjson.JSONDecodeError:
        seq, table, row = json.loads(line)
    return int(seq), str(table), row


class Spool:
    """Append-only segments of sequenced rows under one locked slot directory."""

    def __init__(self, slot: Path, lock: FileLock, fsync: bool, segment_bytes: int):
        self.slot = slot
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self._lock = lock
        self._mutex = threading.Lock()
        self._fd: int | None = None
        self._active: tuple[Path, int] | None = None  # (path, first seq) of the open segment
        self._active_last = 0
        self._size = 0
        self._closed: list[tuple[Path, int]] = []  # (path, last seq), oldest first
        id_file = slot / "wal.id"
        if not id_file.is_file():
            id_file.write_text(uuid.uuid4().hex)
        self.wal_id = id_file.read_text().strip()
        marker = slot / "active"
        self.unclean = marker.exists()
        marker.write_text(str(os.getpid()))

    @classmethod
    def open(cls, root: Path, fsync: bool = False, segment_bytes: int = 16 << 20) -> Spool:
        """Take the first free slot under ``root`` (created, mode 0700).

        Raises:
            DeploymentError: every slot is held by another live process.
        """
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for i in range(MAX_SLOTS):
            slot = root / str(i)
            slot.mkdir(exist_ok=True, mode=0o700)
            # thread_local=False: the lifespan may close the spool from another thread
            lock = FileLock(slot / "lock", mode=0o600, thread_local=False)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            return cls(slot, lock, fsync, segment_bytes)
        raise DeploymentError(f"serving.spool_dir {root}: all {MAX_SLOTS} slots are in use by "
                              "other router processes")

    # ------------------------------------------------------------------ writing
    def append(self, items: Sequence[Item]) -> None:
        """Write ``items`` (increasing sequence numbers) in one ``write`` call."""
        if not items:
            return
        data = b"".join(encode(it) for it in items)
        with self._mutex:
            if self._fd is None:
                path = self.slot / f"seg-{items[0][0]:020d}.jsonl"
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                self._active, self._size = (path, items[0][0]), 0
            os.write(self._fd, data)
            if self.fsync:
                os.fsync(self._fd)
            self._size += len(data)
            self._active_last = items[-1][0]
            if self._size >= self.segment_bytes:
                self._rotate()

    def _rotate(self) -> None:
        assert self._fd is not None and self._active is not None
        os.close(self._fd)
        self._closed.append((self._active[0], self._active_last))
        self._fd, self._active = None, None

    # ------------------------------------------------------------------ reading / pruning
    def replay(self) -> list[Item]:
        """Every row in this slot's segments, oldest first (a torn last line is skipped)."""
        items: list[Item] = []
        for path in sorted(self.slot.glob("seg-*.jsonl")):
            lines = path.read_bytes().splitlines()
            last = 0
            for n, line in enumerate(lines):
                try:
                    item = decode(line)
                except (ValueError, TypeError):
                    where = "its last line (torn write)" if n == len(lines) - 1 else f"line {n + 1}"
                    log.warning("spool %s: skipping unreadable %s", path, where)
                    continue
                items.append(item)
                last = item[0]
            with self._mutex:
                self._closed.append((path, last))
        items.sort(key=lambda it: it[0])
        return items

    def last_seq(self) -> int:
        with self._mutex:
            lasts = [last for _, last in self._closed] + [self._active_last]
        return max(lasts)

    def prune(self, committed: int) -> None:
        """Delete segments whose rows are all committed (sequence number <= ``committed``)."""
        with self._mutex:
            keep = []
            for path, last in self._closed:
                if last <= committed:
                    path.unlink(missing_ok=True)
                else:
                    keep.append((path, last))
            self._closed = keep
            if self._fd is not None and self._active is not None and self._active_last <= committed:
                os.close(self._fd)
                self._active[0].unlink(missing_ok=True)
                self._fd, self._active = None, None

    def pending_files(self) -> list[Path]:
        return sorted(self.slot.glob("seg-*.jsonl"))

    def close(self) -> None:
        """Release the slot (segments not yet committed stay for the next router)."""
        with self._mutex:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        (self.slot / "active").unlink(missing_ok=True)
        self._lock.release()
