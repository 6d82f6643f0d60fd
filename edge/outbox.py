"""The durable outbox: every event and state change waits in SQLite until the broker acknowledges it.

Survives broker outages, network cuts and kill -9 of the service (WAL journal). Bounded: past
`max_messages` the oldest are dropped and counted. If the directory is unusable (read-only, full) the
outbox falls back to memory, counts it, and keeps the service running.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("ser_edge")
TABLE = ("CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
         "payload BLOB NOT NULL, qos INTEGER, retain INTEGER)")


def _memory_db() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    db.execute(TABLE)
    return db


class Outbox:
    def __init__(self, directory: str | Path | None, max_messages: int = 10000):
        self.max_messages = max_messages
        self.dropped = 0  # oldest messages dropped because the bound was hit
        self.write_errors = 0  # writes that failed (disk full, read-only) and went to memory instead
        self.persistent = False
        self._lock = threading.Lock()
        self.path = None
        if directory is not None:
            try:
                d = Path(directory)
                d.mkdir(parents=True, exist_ok=True, mode=0o700)
                os.chmod(d, 0o700)
                self.path = d / "outbox.sqlite"
                old_umask = os.umask(0o077)  # files 0600
                try:
                    self.db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
                    self.db.execute("PRAGMA journal_mode=WAL")
                    self.db.execute("PRAGMA synchronous=NORMAL")
                    self.db.execute(TABLE)
                finally:
                    os.umask(old_umask)
                self.persistent = True
            except (OSError, sqlite3.Error) as e:
                log.error("queue directory %s unusable (%s); keeping undelivered messages in memory only",
                          directory, e)
                self.write_errors += 1
        if not self.persistent:
            self.db = _memory_db()
        self._memory_fallback: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        return self._memory_fallback or self.db

    def put(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        with self._lock:
            try:
                self._insert(self._conn(), topic, payload, qos, retain)
            except sqlite3.Error as e:
                self.write_errors += 1
                if self._memory_fallback is None:
                    log.error("queue write failed (%s); continuing with an in-memory queue", e)
                    self._memory_fallback = _memory_db()
                    try:  # carry over what the disk still holds
                        rows = self.db.execute("SELECT topic, payload, qos, retain FROM outbox ORDER BY id").fetchall()
                        self._memory_fallback.executemany(
                            "INSERT INTO outbox (topic, payload, qos, retain) VALUES (?,?,?,?)", rows)
                    except sqlite3.Error:
                        pass
                self._insert(self._memory_fallback, topic, payload, qos, retain)

    def _insert(self, db, topic, payload, qos, retain):
        db.execute("INSERT INTO outbox (topic, payload, qos, retain) VALUES (?,?,?,?)",
                   (topic, payload, qos, int(retain)))
        n = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        if n > self.max_messages:
            excess = n - self.max_messages
            db.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)", (excess,))
            self.dropped += excess

    def peek(self, after_id: int = 0, limit: int = 50) -> list[tuple[int, str, bytes, int, bool]]:
        """The oldest messages with id > after_id: (id, topic, payload, qos, retain)."""
        with self._lock:
            rows = self._conn().execute("SELECT id, topic, payload, qos, retain FROM outbox WHERE id > ? "
                                        "ORDER BY id LIMIT ?", (after_id, limit)).fetchall()
        return [(r[0], r[1], bytes(r[2]), r[3], bool(r[4])) for r in rows]

    def ack(self, msg_id: int) -> None:
        with self._lock:
            try:
                self._conn().execute("DELETE FROM outbox WHERE id = ?", (msg_id,))
            except sqlite3.Error:
                self.write_errors += 1

    def __len__(self) -> int:
        with self._lock:
            return self._conn().execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            for c in (self.db, self._memory_fallback):
                if c is not None:
                    try:
                        c.close()
                    except sqlite3.Error:
                        pass
