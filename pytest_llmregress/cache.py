"""An on-disk, content-addressed cache of model replies, safe across processes.

SQLite in WAL mode: xdist workers and concurrent runs read and write one file without
locking each other out for long. Keys hash everything that can change a reply (provider,
base URL, model, every request parameter, the conversation, the repeat index) plus a format
version; API keys are never part of a key or a value. Only successful, non-empty replies
are stored.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pytest_llmregress.providers.base import Completion, Request

if TYPE_CHECKING:
    import sqlite3

CACHE_FORMAT = 1
CacheMode = Literal["off", "replay", "record", "refresh"]
CACHE_MODES: tuple[str, ...] = ("off", "replay", "record", "refresh")


def request_key(
    *, kind: str, provider: str, base_url: str, request: Request, repeat: int = 0, salt: str = ""
) -> str:
    """The cache key of one call: a SHA-256 over a canonical JSON of what shapes the reply."""
    material = {
        "format": CACHE_FORMAT,
        "kind": kind,  # "candidate" or "judge": the two never share entries
        "provider": provider,
        "base_url": base_url.rstrip("/"),
        "model": request.model,
        "system": request.system,
        "messages": [[m.role, m.content] for m in request.messages],
        "params": dict(sorted(request.params.items())),
        "repeat": repeat,
        "salt": salt,  # e.g. the judge prompt version
    }
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    writes: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "writes": self.writes}


class ResponseCache:
    """Stores ``Completion`` records by key. Thread-safe; one connection per thread."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / "responses.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.stats: dict[str, CacheStats] = {"candidate": CacheStats(), "judge": CacheStats()}
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS replies ("
                " key TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT NOT NULL,"
                " completion TEXT NOT NULL, created REAL NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            import sqlite3

            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    def get(self, key: str, kind: str) -> Completion | None:
        row = (
            self._connect()
            .execute("SELECT completion FROM replies WHERE key = ?", (key,))
            .fetchone()
        )
        with self._lock:
            if row is None:
                self.stats[kind].misses += 1
                return None
            self.stats[kind].hits += 1
        data: dict[str, Any] = json.loads(row[0])
        data["cached"] = True
        return Completion.from_dict(data)

    def put(self, key: str, kind: str, completion: Completion) -> None:
        if not completion.text.strip():
            return
        data = completion.to_dict()
        data["cached"] = False
        self._connect().execute(
            "INSERT OR REPLACE INTO replies (key, kind, model, completion, created)"
            " VALUES (?, ?, ?, ?, ?)",
            (key, kind, completion.requested_model, json.dumps(data), time.time()),
        )
        with self._lock:
            self.stats[kind].writes += 1

    def stats_dict(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {kind: stats.to_dict() for kind, stats in self.stats.items()}

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def merge_stats(
    into: dict[str, dict[str, int]], other: Mapping[str, Mapping[str, int]]
) -> dict[str, dict[str, int]]:
    """Add one process's cache counters to a running total."""
    for kind, counts in other.items():
        slot = into.setdefault(kind, {"hits": 0, "misses": 0, "writes": 0})
        for name, value in counts.items():
            slot[name] = slot.get(name, 0) + int(value)
    return into
