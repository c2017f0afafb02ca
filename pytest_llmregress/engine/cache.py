"""An on-disk, content-addressed cache of model replies, safe across processes.

SQLite in WAL mode: xdist workers and concurrent runs read and write one file without
locking each other out for long. Keys hash everything that can change a reply (provider,
base URL, model, every request parameter, the conversation, the repeat index) plus a format
version; API keys are never part of a key or a value. Only successful, non-empty replies
are stored.

Damaged state heals or is named, never stops a run:

- a stored reply that does not decode (cut short, not JSON, not a reply) is a miss: the
  fresh answer overwrites it, and ``health()`` counts it for the summary. With
  ``replay=True`` (``--llm-cache=replay``, which makes no network call) it cannot be fetched
  again, so it is an error for that call that names the cache;
- a cache file that SQLite cannot use (not a database, damaged pages, a directory in its
  place, another table layout) is moved aside to ``responses.sqlite3.damaged-STAMP`` and a
  new one is made; ``notices`` says so, naming both. Concurrent runs check and move under a
  lock file, so no run moves aside a cache another run just made;
- a cache that cannot be used at all (a folder that cannot be made, a file that cannot be
  moved) leaves the run without a cache, also said in ``notices``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_llmregress.providers.base import Completion, ProviderError, Request

if TYPE_CHECKING:
    import sqlite3

CACHE_FORMAT = 1
CACHE_FILENAME = "responses.sqlite3"

_COLUMNS = ("key", "kind", "model", "completion", "created")
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS replies ("
    " key TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT NOT NULL,"
    " completion TEXT NOT NULL, created REAL NOT NULL)"
)
# SQLite's answers for a file that is not a usable database. Anything else (busy, locked,
# read-only, a full disk) is not the file's fault: the run goes on without the cache.
_DAMAGE_CODES = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_FORMAT", "SQLITE_CANTOPEN"})
_SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's companions of a database file


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


class DamagedFile(Exception):
    """The cache file is not a database this cache can read; the message says why."""


class CacheUnusable(Exception):
    """The cache cannot be used this run, through no fault of its file (busy, read-only)."""


_COMPLETION_FIELDS = {f.name: f for f in fields(Completion)}
_TEXT_FIELDS = ("text", "provider", "requested_model", "resolved_model")


def decode_completion(raw: bytes) -> Completion:
    """A stored reply, or ``ValueError`` saying why it is damaged."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        byte = raw[error.start]
        raise ValueError(f"not UTF-8 text (byte 0x{byte:02x} at {error.start})") from None
    except json.JSONDecodeError as error:
        cut = " (cut short)" if error.pos >= len(raw.rstrip()) else ""
        raise ValueError(f"not JSON{cut}: {error.msg} at character {error.pos}") from None
    if not isinstance(data, dict):
        raise ValueError(f"a JSON {type(data).__name__}, not a reply object")
    unknown = sorted(set(data) - set(_COMPLETION_FIELDS))
    missing = [name for name in _TEXT_FIELDS if name not in data]
    if unknown or missing:
        problem = [f"missing {', '.join(missing)}"] if missing else []
        problem += [f"unknown {', '.join(unknown)}"] if unknown else []
        raise ValueError("a reply with " + "; ".join(problem))
    wrong = [name for name in _TEXT_FIELDS if not isinstance(data[name], str)]
    wrong += [
        name
        for name in ("input_tokens", "output_tokens", "attempts")
        if not isinstance(data.get(name, 0), int)
    ]
    if wrong:
        raise ValueError(f"a reply whose {', '.join(wrong)} has the wrong type")
    if not data["text"].strip():
        raise ValueError("an empty reply (only non-empty replies are stored)")
    data["cached"] = True
    return Completion.from_dict(data)


class ResponseCache:
    """Stores ``Completion`` records by key. Thread-safe; one connection per thread.

    ``replay``: a damaged entry cannot be fetched again (``--llm-cache=replay``), so reading
    one raises a ``ProviderError`` naming the cache instead of counting as a miss.
    """

    def __init__(self, directory: str | Path, *, replay: bool = False) -> None:
        self.path = Path(directory) / CACHE_FILENAME
        self._replay = replay
        self._local = threading.local()
        self.stats: dict[str, CacheStats] = {"candidate": CacheStats(), "judge": CacheStats()}
        self._lock = threading.Lock()
        self.notices: list[str] = []  # what happened to a damaged or unusable file
        self.disabled: str | None = None  # why this run has no cache, if it has none
        self._damaged: set[str] = set()  # keys whose stored value did not decode
        self._replaced: set[str] = set()  # ... and were overwritten with a fresh answer
        self._failures = 0  # reads and writes SQLite refused during the run
        self._first_failure = ""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._exclusive():
                self._open_or_rebuild()
        except (OSError, DamagedFile, CacheUnusable) as error:
            self._disable(str(error))

    # -- opening -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Runs that open one cache at once check (and move aside) its file one at a time."""
        import fcntl

        try:
            handle = open(self.path.with_name(CACHE_FILENAME + ".lock"), "a")  # noqa: SIM115
        except OSError:  # a read-only folder (a replay cache on a read-only mount): no lock
            handle = None
        if handle is None:
            yield
            return
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _open_or_rebuild(self) -> None:
        import sqlite3

        try:
            self._check_file()
            with self._connect() as db:
                db.execute(_SCHEMA)
            return
        except DamagedFile as error:
            reason = str(error)
        except sqlite3.Error as error:
            if getattr(error, "sqlite_errorname", "") not in _DAMAGE_CODES:
                raise CacheUnusable(f"SQLite cannot use it: {error}") from None
            reason = str(error)
        self.close()
        aside = self._move_aside()
        try:
            with self._connect() as db:
                db.execute(_SCHEMA)
        except sqlite3.Error as error:
            raise CacheUnusable(
                f"it was damaged ({reason}) and moved to {aside}, but a new cache could not be "
                f"made: {error}"
            ) from None
        self.notices.append(
            f"the response cache {self.path} was damaged ({reason}): it was moved to {aside} "
            f"and a new, empty cache was made in its place"
        )

    def _check_file(self) -> None:
        """Raise ``DamagedFile`` (or SQLite's error) unless the file is a usable cache."""
        import sqlite3

        if not self.path.exists() and not self.path.is_symlink():
            return  # a first run: SQLite makes the file
        if not self.path.is_file():
            raise DamagedFile("not a regular file")
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            problems = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                raise DamagedFile(f"SQLite's check found: {'; '.join(map(str, problems[:3]))}")
            columns = tuple(row[1] for row in db.execute("PRAGMA table_info(replies)"))
            if columns and columns != _COLUMNS:
                raise DamagedFile(
                    f"its replies table has the columns {', '.join(columns)}, not "
                    f"{', '.join(_COLUMNS)}"
                )
        finally:
            db.close()

    def _move_aside(self) -> Path:
        """Rename the damaged file (and SQLite's side files) out of the way; the new name."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{CACHE_FILENAME}.damaged-{stamp}")
        number = 1
        while aside.exists() or aside.is_symlink():
            number += 1
            aside = self.path.with_name(f"{CACHE_FILENAME}.damaged-{stamp}-{number}")
        if self.path.exists() or self.path.is_symlink():
            os.replace(self.path, aside)
        for suffix in _SIDE_FILES:
            side = self.path.with_name(CACHE_FILENAME + suffix)
            if side.exists() or side.is_symlink():
                # A stale write-ahead log beside a new database would be replayed into it.
                os.replace(side, aside.with_name(aside.name + suffix))
        return aside

    def _disable(self, reason: str) -> None:
        self.close()
        self.disabled = reason
        self.notices.append(
            f"the response cache {self.path} cannot be used ({reason}): this run caches nothing"
            + (" and replays nothing" if self._replay else "")
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

    # -- use ---------------------------------------------------------------------------------

    def get(self, key: str, kind: str) -> Completion | None:
        import sqlite3

        row = None
        if self.disabled is None:
            try:
                # As bytes: a value that is not UTF-8 would stop SQLite's text conversion.
                row = (
                    self._connect()
                    .execute(
                        "SELECT CAST(completion AS BLOB), CAST(model AS BLOB) FROM replies"
                        " WHERE key = ?",
                        (key,),
                    )
                    .fetchone()
                )
            except sqlite3.Error as error:
                self._failed(error)
        hit: Completion | None = None
        problem = ""
        if row is not None:
            try:
                hit = decode_completion(bytes(row[0] or b""))
            except ValueError as error:
                problem = str(error)
        with self._lock:
            if problem:
                self._damaged.add(key)
            if hit is None:
                self.stats[kind].misses += 1
            else:
                self.stats[kind].hits += 1
        if problem and self._replay:
            raise ProviderError(
                f"the cached reply for this request in {self.path} is damaged ({problem}), and "
                f"--llm-cache=replay makes no network calls to replace it; run with "
                f"--llm-cache=record to store a fresh one",
                provider="cache",
                model=bytes(row[1] or b"").decode("utf-8", "replace") if row else "?",
                kind="bad_response",
            )
        return hit

    def put(self, key: str, kind: str, completion: Completion) -> None:
        import sqlite3

        if not completion.text.strip() or self.disabled is not None:
            return
        data = completion.to_dict()
        data["cached"] = False
        try:
            self._connect().execute(
                "INSERT OR REPLACE INTO replies (key, kind, model, completion, created)"
                " VALUES (?, ?, ?, ?, ?)",
                (key, kind, completion.requested_model, json.dumps(data), time.time()),
            )
        except sqlite3.Error as error:
            self._failed(error)
            return
        with self._lock:
            self.stats[kind].writes += 1
            if key in self._damaged:
                self._replaced.add(key)

    def _failed(self, error: Exception) -> None:
        """A read or write SQLite refused mid-run: a miss, or a reply not stored."""
        with self._lock:
            self._failures += 1
            if not self._first_failure:
                self._first_failure = f"{type(error).__name__}: {error}"

    def stats_dict(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {kind: stats.to_dict() for kind, stats in self.stats.items()}

    def health(self) -> dict[str, Any]:
        """What went wrong with the cache this run, JSON-able (see ``cache_health_lines``)."""
        with self._lock:
            return {
                "path": str(self.path),
                "damaged": len(self._damaged),
                "replaced": len(self._replaced),
                "failures": self._failures,
                "first_failure": self._first_failure,
            }

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def cache_health_lines(health: Mapping[str, Any]) -> list[str]:
    """The summary's lines about a damaged cache: entries replaced, reads that failed."""
    lines = []
    damaged, replaced = int(health.get("damaged", 0)), int(health.get("replaced", 0))
    if damaged:
        entries = f"{damaged} damaged entr{'y' if damaged == 1 else 'ies'}"
        if replaced == damaged:
            lines.append(f"cache: {entries} replaced")
        else:
            lines.append(
                f"cache: {entries} found in {health.get('path')}, {replaced} replaced "
                f"(the others' calls did not succeed, or --llm-cache=replay cannot replace them)"
            )
    failures = int(health.get("failures", 0))
    if failures:
        lines.append(
            f"cache: SQLite refused {failures} read{'s' if failures > 1 else ''} or writes of "
            f"{health.get('path')} (first: {health.get('first_failure')}); the calls went to "
            f"the network, and the file is checked again at the next run"
        )
    return lines


def cache_use_line(counts: Mapping[str, Mapping[str, int]], where: str) -> str | None:
    """The summary's line about what the cache answered, from ``ResponseCache.stats_dict``:
    ``cache: candidate 120 hits / 30 misses, judge 140 hits / 10 misses (.llmregress/cache)``.

    A kind the cache was not asked for is left out; one it only stored replies for
    (``--llm-cache=refresh``) says how many. None when the cache was not used at all.
    """
    parts = []
    for kind in ("candidate", "judge"):
        count = counts.get(kind, {})
        hits, misses, writes = (int(count.get(name, 0)) for name in ("hits", "misses", "writes"))
        if hits or misses:
            parts.append(
                f"{kind} {hits} hit{'' if hits == 1 else 's'} / "
                f"{misses} miss{'' if misses == 1 else 'es'}"
            )
        elif writes:
            parts.append(f"{kind} {writes} stored")
    return f"cache: {', '.join(parts)} ({where})" if parts else None
