"""``llmregress canary status | advance | rollback``: the canary ramp as config changes.

The canary lives in ``[tool.llmregress.canary]`` of ``pyproject.toml`` or ``[canary]`` of
``llmregress.toml`` (see :mod:`pytest_llmregress.canary`). ``advance`` and ``rollback`` change
``canary_pct`` and ``stage_started_at`` and nothing else: the two lines are edited in place, the
rest of the file (comments, order, blank lines, line endings) is kept byte for byte, the result
is re-parsed to prove only those two values changed, and the file is replaced atomically (a
temporary file in the same directory, then ``os.replace``). If the file changes while the
command runs, nothing is written.

Exit status: 0 done, 1 refused (the controller does not allow the advance, nothing left to
advance, or the file changed meanwhile), 2 usage, config or metrics errors.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import stat
import sys
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

from pytest_llmregress.canary import (
    CanaryConfig,
    CanaryConfigError,
    CanaryController,
    Decision,
    VariantMetrics,
    canary_table_path,
    load_canary_config,
    parse_canary_config,
)

PROG: Final = "llmregress canary"
EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1
EXIT_ERROR: Final = 2


class CanaryEditError(Exception):
    """The config file cannot be edited safely; nothing was written."""


class ConcurrentEditError(CanaryEditError):
    """The file changed between reading and writing it; nothing was written."""


# -- metrics ----------------------------------------------------------------------------------


def load_metrics(source: str, stdin: TextIO | None = None) -> dict[str, VariantMetrics]:
    """Metrics per variant from a JSON file (``-`` for stdin)::

    {"control": {"requests": 5000, "errors": 12, "regressions": 40},
     "candidate": {"requests": 260, "errors": 1, "regressions": 3}}
    """
    try:
        if source == "-":
            text = (stdin or sys.stdin).read()
        else:
            text = Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{source}: cannot read metrics: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected an object with 'control' and 'candidate'")
    unknown = sorted(set(data) - {"control", "candidate"})
    if unknown:
        raise ValueError(f"{source}: unknown variant {unknown[0]!r} (expected control, candidate)")
    try:
        return {name: VariantMetrics.from_mapping(value, name=name) for name, value in data.items()}
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


# -- editing the TOML file --------------------------------------------------------------------

_HEADER = re.compile(
    r"^[ \t]*\[(?P<array>\[)?[ \t]*(?P<key>[^\[\]]+?)[ \t]*\](?(array)\])[ \t]*(?:#.*)?$"
)
_VALUE = (
    r'"(?:[^"\\\r\n]|\\.)*"'  # basic string
    r"|'[^'\r\n]*'"  # literal string
    r"|\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:\d{2})?)?"
    r"|[^\s#]+"  # numbers and anything else a single token
)


_KEY_PART = re.compile(r"[ \t]*(?:\"((?:[^\"\\]|\\.)*)\"|'([^']*)'|([A-Za-z0-9_-]+))[ \t]*")


def _split_dotted(key: str) -> tuple[str, ...] | None:
    """``tool."llmregress".canary`` -> ("tool", "llmregress", "canary"); None if unparsable."""
    parts: list[str] = []
    pos = 0
    while True:
        match = _KEY_PART.match(key, pos)
        if match is None:
            return None
        basic, literal, bare = match.groups()
        if basic is not None:
            try:
                parts.append(json.loads(f'"{basic}"'))
            except json.JSONDecodeError:
                return None
        else:
            parts.append(literal if literal is not None else bare)
        pos = match.end()
        if pos == len(key):
            return tuple(parts)
        if key[pos] != ".":
            return None
        pos += 1


def _key_line(key: str) -> re.Pattern[str]:
    quoted = re.escape(key)
    return re.compile(
        rf"^(?P<head>[ \t]*(?:{quoted}|\"{quoted}\"|'{quoted}')[ \t]*=[ \t]*)"
        rf"(?P<value>{_VALUE})(?P<tail>[ \t]*(?:#.*)?)$"
    )


def _split_eol(line: str) -> tuple[str, str]:
    if line.endswith("\r\n"):
        return line[:-2], "\r\n"
    if line.endswith(("\n", "\r")):
        return line[:-1], line[-1]
    return line, ""


def _table_lines(lines: Sequence[str], table: tuple[str, ...]) -> list[int]:
    """Indices of the lines of ``table`` (after its header, up to the next header) that do not
    start inside a multi-line string; the approximation is safe because edits are verified."""
    start: int | None = None
    found: list[int] = []
    in_multiline: str | None = None
    for index, line in enumerate(lines):
        body, _ = _split_eol(line)
        if in_multiline is None:
            header = _HEADER.match(body)
            if header is not None:
                if start is not None:
                    return found
                if not header.group("array") and _split_dotted(header.group("key")) == table:
                    start = index
                    continue
            if start is not None:
                found.append(index)
        for quote in ('"""', "'''"):
            if in_multiline in (None, quote) and body.count(quote) % 2 == 1:
                in_multiline = quote if in_multiline is None else None
    if start is None:
        raise CanaryEditError(f"no [{'.'.join(table)}] table header")
    return found


def format_pct(value: float) -> str:
    """A percentage as a TOML number: ``5``, ``0.5``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def format_datetime(moment: datetime) -> str:
    """A UTC TOML offset date-time with seconds: ``2026-11-26T09:30:00Z``."""
    utc = moment.astimezone(UTC).replace(microsecond=0, tzinfo=None)
    return utc.isoformat() + "Z"


def edit_canary_text(text: str, path: Path, canary_pct: float, started_at: datetime) -> str:
    """``text`` with the canary's ``canary_pct`` and ``stage_started_at`` set, nothing else.

    Only the lines holding those two keys change (their indentation, key spelling, spacing
    and trailing comment are kept); a missing ``stage_started_at`` is added after
    ``canary_pct``. Raises :class:`CanaryEditError` when the table is not written as plain
    ``key = value`` lines under its own header, or when re-parsing the result shows any other
    difference.
    """
    table = canary_table_path(path)
    lines = text.splitlines(keepends=True)
    candidates = _table_lines(lines, table)
    found: dict[str, int] = {}
    for key in ("canary_pct", "stage_started_at"):
        pattern = _key_line(key)
        for index in candidates:
            body, _ = _split_eol(lines[index])
            if pattern.match(body):
                found[key] = index
                break
    if "canary_pct" not in found:
        raise CanaryEditError(
            f"no 'canary_pct = ...' line under [{'.'.join(table)}]; write it on its own line "
            "there so it can be edited"
        )
    new_lines = list(lines)
    pct_text = format_pct(canary_pct)
    when = format_datetime(started_at)

    def replaced(index: int, key: str, value: str) -> str:
        body, eol = _split_eol(lines[index])
        match = _key_line(key).match(body)
        assert match is not None
        return f"{match.group('head')}{value}{match.group('tail')}{eol}"

    new_lines[found["canary_pct"]] = replaced(found["canary_pct"], "canary_pct", pct_text)
    if "stage_started_at" in found:
        index = found["stage_started_at"]
        body, _ = _split_eol(lines[index])
        match = _key_line("stage_started_at").match(body)
        assert match is not None
        quote = match.group("value")[0]
        value = f"{quote}{when}{quote}" if quote in "\"'" else when
        new_lines[index] = replaced(index, "stage_started_at", value)
    else:
        pct_index = found["canary_pct"]
        body, eol = _split_eol(lines[pct_index])
        indent = body[: len(body) - len(body.lstrip(" \t"))]
        newline = eol or ("\r\n" if "\r\n" in text else "\n")
        if not eol:
            new_lines[pct_index] += newline
        new_lines.insert(
            pct_index + 1, f"{indent}stage_started_at = {when}{newline if eol else ''}"
        )
    new_text = "".join(new_lines)
    _verify(text, new_text, path, canary_pct, started_at)
    return new_text


def _verify(old: str, new: str, path: Path, canary_pct: float, started_at: datetime) -> None:
    table = canary_table_path(path)
    try:
        before = tomllib.loads(old)
        after = tomllib.loads(new)
    except tomllib.TOMLDecodeError as exc:
        raise CanaryEditError(f"the edited file would not parse: {exc}") from None
    try:
        config = parse_canary_config(new, path)
    except CanaryConfigError as exc:
        raise CanaryEditError(f"the edited file would be invalid: {exc}") from None
    expected_start = started_at.astimezone(UTC).replace(microsecond=0)
    if config.canary_pct != canary_pct or config.stage_started_at != expected_start:
        raise CanaryEditError("the edit did not set canary_pct and stage_started_at as intended")
    for doc in (before, after):
        node: Any = doc
        for key in table:
            node = node[key]
        node.pop("canary_pct", None)
        node.pop("stage_started_at", None)
    if before != after:
        raise CanaryEditError("the edit would change more than canary_pct and stage_started_at")


def write_atomic(path: Path, data: bytes, *, expected: bytes | None = None) -> None:
    """Replace ``path`` with ``data`` atomically, keeping its permissions.

    A temporary file in the same directory is written, flushed to disk and renamed over the
    target with ``os.replace``; on any failure it is removed. With ``expected``, the file must
    still hold exactly those bytes just before the rename (:class:`ConcurrentEditError`).
    """
    target = path.resolve()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp_name, stat.S_IMODE(os.stat(target).st_mode))
        if expected is not None and target.read_bytes() != expected:
            raise ConcurrentEditError(f"{path} changed while it was being edited; run again")
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def set_canary(path: Path, canary_pct: float, started_at: datetime) -> CanaryConfig:
    """Set ``canary_pct`` and ``stage_started_at`` in ``path`` atomically; the new config."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CanaryEditError(f"{path} is not UTF-8: {exc}") from None
    new_text = edit_canary_text(text, path, canary_pct, started_at)
    write_atomic(path, new_text.encode("utf-8"), expected=raw)
    return parse_canary_config(new_text, path)


# -- the commands -----------------------------------------------------------------------------


def _parse_now(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO date-time such as 2026-11-26T09:00:00Z, got {value!r}"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="the config file (default: the nearest llmregress.toml with [canary] or "
        "pyproject.toml with [tool.llmregress.canary])",
    )
    common.add_argument(
        "--now",
        type=_parse_now,
        default=argparse.SUPPRESS,
        help="evaluate (and write) as of this ISO date-time instead of the current time",
    )
    metrics = argparse.ArgumentParser(add_help=False)
    metrics.add_argument(
        "--metrics",
        metavar="PATH",
        help='JSON {"control": {"requests", "errors", "regressions"}, "candidate": {...}} '
        "('-' reads stdin)",
    )
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Canary ramp of a model migration: show it, advance it, roll it back. "
        "advance and rollback edit only canary_pct and stage_started_at, atomically.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = sub.add_parser(
        "status", parents=[common, metrics], help="stage, percentage, time at stage, decision"
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    advance = sub.add_parser(
        "advance",
        parents=[common, metrics],
        help="move to the next stage if the controller says promote",
    )
    advance.add_argument(
        "--force", action="store_true", help="advance even when the controller does not promote"
    )
    rollback = sub.add_parser("rollback", parents=[common], help="set canary_pct to 0")
    rollback.add_argument("--reason", default=None, help="why (printed with the result)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``llmregress canary``."""
    parser = _build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    now: datetime = getattr(args, "now", None) or datetime.now(UTC)
    config_path: Path | None = getattr(args, "config", None)
    try:
        config = load_canary_config(path=config_path)
        metrics = load_metrics(args.metrics) if getattr(args, "metrics", None) else None
    except (CanaryConfigError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    assert config.path is not None
    if args.command == "status":
        return _status(config, metrics, now, as_json=args.json)
    try:
        if args.command == "advance":
            return _advance(config, metrics, now, force=args.force)
        return _rollback(config, now, reason=args.reason)
    except ConcurrentEditError as exc:
        print(f"{PROG}: {exc}; nothing was written", file=sys.stderr)
        return EXIT_REFUSED
    except (CanaryEditError, CanaryConfigError, OSError) as exc:
        print(f"{PROG}: cannot edit {config.path}: {exc}; nothing was written", file=sys.stderr)
        return EXIT_ERROR


def _stage_text(config: CanaryConfig) -> str:
    index = config.stage_index()
    total = len(config.stages)
    pct = format_pct(config.canary_pct)
    if index is None:
        return f"not running (0% of users); the first stage is {format_pct(config.stages[0].pct)}%"
    if config.canary_pct >= 100:
        return "full rollout (100% of users)"
    next_text = format_pct(config.next_pct())
    exact = config.stages[index].pct == config.canary_pct
    where = f"stage {index + 1} of {total}" if exact else f"after stage {index + 1} of {total}"
    return f"{where} ({pct}% of users; next: {next_text}%)"


def _decide(
    config: CanaryConfig, metrics: Mapping[str, VariantMetrics] | None, now: datetime
) -> Decision:
    return CanaryController(config).decide(metrics or {}, config.hours_at_stage(now))


def _status(
    config: CanaryConfig,
    metrics: Mapping[str, VariantMetrics] | None,
    now: datetime,
    *,
    as_json: bool,
) -> int:
    index = config.stage_index()
    hours = config.hours_at_stage(now)
    decision = _decide(config, metrics, now) if metrics is not None else None
    if as_json:
        data: dict[str, Any] = {
            "config": str(config.path),
            "production": config.production,
            "candidate": config.candidate,
            "experiment_id": config.experiment_id,
            "canary_pct": config.canary_pct,
            "stage": None if index is None else index + 1,
            "stages": len(config.stages),
            "next_pct": config.next_pct(),
            "stage_started_at": (
                format_datetime(config.stage_started_at) if config.stage_started_at else None
            ),
            "hours_at_stage": round(hours, 3),
            "decision": (
                None
                if decision is None
                else {
                    "action": decision.action,
                    "reason": decision.reason,
                    "next_pct": decision.next_pct,
                }
            ),
        }
        print(json.dumps(data, indent=2))
        return EXIT_OK
    print(f"Canary {config.experiment_id} in {config.path}")
    print(f"  production: {config.production}")
    print(f"  candidate:  {config.candidate}")
    print(f"  stage:      {_stage_text(config)}")
    print(f"  canary_pct: {format_pct(config.canary_pct)}")
    if index is not None:
        needed = config.stages[index].min_hours
        since = (
            f"since {format_datetime(config.stage_started_at)}"
            if config.stage_started_at
            else "stage_started_at is not set"
        )
        print(f"  at stage:   {hours:.1f} h ({since}; the stage needs {needed:g} h)")
    if metrics is not None and decision is not None:
        for name in ("control", "candidate"):
            m = metrics.get(name, VariantMetrics())
            print(
                f"  {name + ':':<11} requests {m.requests}, errors {m.errors}, "
                f"regressions {m.regressions}"
            )
        print(f"  decision:   {decision.action}: {decision.reason}")
    else:
        print("  decision:   pass --metrics PATH to evaluate the stage")
    return EXIT_OK


def _advance(
    config: CanaryConfig,
    metrics: Mapping[str, VariantMetrics] | None,
    now: datetime,
    *,
    force: bool,
) -> int:
    assert config.path is not None
    if config.canary_pct >= 100:
        print(f"{PROG}: the canary is at 100% already; nothing to advance", file=sys.stderr)
        return EXIT_REFUSED
    decision = _decide(config, metrics, now)
    if decision.action == "promote":
        target = decision.next_pct
    elif not force:
        hint = "" if metrics is not None else " (no --metrics given)"
        print(
            f"{PROG}: advance refused{hint}: the controller says {decision.action}: "
            f"{decision.reason}\n"
            + (
                "Roll back with 'llmregress canary rollback', or use --force to advance anyway."
                if decision.action == "rollback"
                else "Use --force to advance anyway."
            ),
            file=sys.stderr,
        )
        return EXIT_REFUSED
    else:
        target = config.next_pct()
        print(
            f"warning: forcing the advance against the controller ({decision.action}: "
            f"{decision.reason})",
            file=sys.stderr,
        )
    updated = set_canary(config.path, target, now)
    print(
        f"Advanced {config.experiment_id}: canary_pct {format_pct(config.canary_pct)} -> "
        f"{format_pct(target)} in {config.path} (stage_started_at = {format_datetime(now)}); "
        f"now {_stage_text(updated)}."
    )
    return EXIT_OK


def _rollback(config: CanaryConfig, now: datetime, *, reason: str | None) -> int:
    assert config.path is not None
    because = f" Reason: {reason}" if reason else ""
    if config.canary_pct == 0:
        print(f"The canary {config.experiment_id} is at 0% already; nothing changed.{because}")
        return EXIT_OK
    set_canary(config.path, 0, now)
    print(
        f"Rolled back {config.experiment_id}: canary_pct {format_pct(config.canary_pct)} -> 0 "
        f"in {config.path}; every user gets {config.production} again.{because}"
    )
    return EXIT_OK
