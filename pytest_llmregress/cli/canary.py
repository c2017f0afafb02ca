"""``llmregress canary status | advance | rollback``: the canary ramp as config changes.

The canary lives in ``[tool.llmregress.canary]`` of ``pyproject.toml`` or ``[canary]`` of
``llmregress.toml`` (see :mod:`pytest_llmregress.runtime.canary`). ``canary_pct`` and stage ``pct``
values are fractions (``0.05`` = 5 % of users) here as in the library; output shows the
fraction with its percentage, ``0.05 (5%)``.

``advance`` changes ``canary_pct`` and ``stage_started_at``; ``rollback`` sets ``canary_pct``
to ``0.0`` and records ``rollback_reason`` and ``rolled_back_at`` too. Nothing else changes: the
values are edited in place with ``tomlkit`` (a missing key is added after the others), the rest
of the file (comments, order, quoting, blank lines, line endings) is kept byte for byte, the
result is re-parsed to prove only those values changed, and the file is replaced atomically (a
temporary file in the same directory, then ``os.replace``). If the file changes while the
command runs, nothing is written. ``advance`` right after a rollback refuses without
``--force``.

Exit status: 0 ok (status: promote or no metrics; advance: advanced), 1 error (nothing
written), 2 usage, 3 hold (not eligible to advance yet), 4 roll back now. ``--help`` lists them.

The commands read the file alone: ``LLMREGRESS_CANARY_PCT``, which overrides ``canary_pct``
in the application (:func:`~pytest_llmregress.runtime.canary.load_canary_config`), is only reported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from pytest_llmregress.core.files import FileChangedError, atomic_write_bytes
from pytest_llmregress.runtime.canary import (
    BUCKETS,
    CANARY_PCT_ENV,
    CanaryConfig,
    CanaryConfigError,
    CanaryController,
    Decision,
    VariantMetrics,
    canary_pct_from_env,
    canary_table_path,
    candidate_buckets,
    format_fraction,
    format_percent,
    load_canary_config,
    parse_canary_config,
)

if TYPE_CHECKING:
    from tomlkit.container import Container
    from tomlkit.items import Table

PROG: Final = "llmregress canary"
EXIT_OK: Final = 0
"""status: the controller says promote, or no --metrics given; advance/rollback: done."""
EXIT_ERROR: Final = 1
"""The config, the metrics or the edit failed (or the file changed meanwhile); nothing written."""
EXIT_USAGE: Final = 2
"""Bad command line (argparse's own status)."""
EXIT_HOLD: Final = 3
"""Hold: not eligible to advance yet (too early, too few requests, ramp complete, or a
rollback not restarted). advance wrote nothing."""
EXIT_ROLLBACK: Final = 4
"""Roll back now: the candidate exceeds the stage's maximum. advance wrote nothing."""

EXIT_CODES_HELP: Final = f"""\
exit status:
  {EXIT_OK}  status: promote (or no --metrics given); advance: advanced; rollback: done
  {EXIT_ERROR}  error in the config, the metrics or the edit; nothing was written
  {EXIT_USAGE}  usage error
  {EXIT_HOLD}  hold: not eligible to advance yet (advance wrote nothing)
  {EXIT_ROLLBACK}  roll back now: the candidate exceeds the stage's maximum (advance wrote nothing)

canary_pct is a fraction: 0.05 is 5% of users, 1.0 everybody ("5%" also works in the file).
{CANARY_PCT_ENV}, where the application runs, overrides the file's canary_pct: set it to 0
to roll back without a rebuild. These commands read and edit the file only."""

_EXIT_FOR_ACTION: Final[Mapping[str, int]] = {
    "promote": EXIT_OK,
    "hold": EXIT_HOLD,
    "rollback": EXIT_ROLLBACK,
}


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


def format_datetime(moment: datetime) -> str:
    """A UTC TOML offset date-time with seconds: ``2026-11-26T09:30:00Z``."""
    utc = moment.astimezone(UTC).replace(microsecond=0, tzinfo=None)
    return utc.isoformat() + "Z"


def _percent_digits(canary_pct: float) -> str:
    """``0.05`` -> ``5``: the percentage that ``parse_canary_pct`` reads back to the same float."""
    return format((Decimal(format_fraction(canary_pct)) * 100).normalize(), "f")


def _edited_keys(rollback_reason: str | None) -> tuple[str, ...]:
    rollback = ("rolled_back_at", "rollback_reason") if rollback_reason is not None else ()
    return ("canary_pct", "stage_started_at", *rollback)


def _header_table(container: Container, table: Sequence[str]) -> Table | None:
    """The table written under the header ``[table]``: not one made by dotted keys (a super
    table) nor an inline table, which cannot take a key on a line of its own."""
    from tomlkit.items import Table

    for key, item in container.body:
        if key is None or key.key != table[0] or not isinstance(item, Table):
            continue
        if len(table) == 1:
            if not item.is_super_table():
                return item
        elif (found := _header_table(item.value, table[1:])) is not None:
            return found
    return None


def edit_canary_text(
    text: str,
    path: Path,
    canary_pct: float,
    started_at: datetime,
    *,
    rollback_reason: str | None = None,
) -> str:
    """``text`` with the canary's ``canary_pct`` and ``stage_started_at`` set, nothing else.

    With ``rollback_reason``, also ``rollback_reason`` and ``rolled_back_at`` (= ``started_at``).
    The edit is made with ``tomlkit``, which keeps the rest of the file as written: only the
    values of those keys change (the keys' indentation, spelling, spacing and trailing comments
    stay; a quoted value stays quoted alike, a ``"5%"`` string stays a percentage string);
    missing keys are added after the last of them, indented like ``canary_pct``. Raises
    :class:`CanaryEditError` when the table is not written under its own header with
    ``canary_pct`` on a line of its own, or when re-parsing the result shows any other
    difference.
    """
    import tomlkit  # only the commands edit TOML: not at the plugin's start-up
    from tomlkit.exceptions import TOMLKitError
    from tomlkit.items import AoT, Item, String, Table

    table = canary_table_path(path)
    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise CanaryEditError(f"the file cannot be parsed for editing: {exc}") from None
    if doc.as_string() != text:  # tomlkit keeps every byte; refuse rather than reformat
        raise CanaryEditError("tomlkit would not keep the rest of the file as written")
    canary = _header_table(doc, table)
    if canary is None:
        raise CanaryEditError(f"no [{'.'.join(table)}] table header")
    body = canary.value
    keys = _edited_keys(rollback_reason)
    found = {
        key.key: index
        for index, (key, item) in enumerate(body.body)
        if key is not None and key.key in keys and not isinstance(item, (Table, AoT))
    }
    if "canary_pct" not in found:
        raise CanaryEditError(
            f"no 'canary_pct = ...' line under [{'.'.join(table)}]; write it on its own line "
            "there so it can be edited"
        )
    when = format_datetime(started_at)

    def new_value(key: str, old: Item | None) -> Item:
        literal = isinstance(old, String) and old.as_string().startswith("'")
        if key == "canary_pct":
            if not isinstance(old, String):
                return tomlkit.value(format_fraction(canary_pct))
            percent = str(old).rstrip().endswith("%")
            share = f"{_percent_digits(canary_pct)}%" if percent else format_fraction(canary_pct)
            return tomlkit.string(share, literal=literal)
        if key == "rollback_reason":
            assert rollback_reason is not None
            return tomlkit.string(rollback_reason)
        return (
            tomlkit.string(when, literal=literal)
            if isinstance(old, String)
            else tomlkit.value(when)
        )

    for key, index in found.items():
        body[key] = new_value(key, body.body[index][1])

    missing = [key for key in keys if key not in found]
    if missing:
        anchor = max(found.values())
        trivia = body.body[anchor][1].trivia
        eol = (
            "\r\n" if trivia.trail.endswith("\r\n") else "\n" if trivia.trail.endswith("\n") else ""
        )
        newline = eol or ("\r\n" if "\r\n" in text else "\n")
        if not eol:  # the last line of the file: it gets a newline, the last new key none
            trivia.trail += newline
        indent = body.body[found["canary_pct"]][1].trivia.indent
        for offset, key in enumerate(missing, start=1):
            item = new_value(key, None)
            item.trivia.indent = indent
            item.trivia.trail = newline if eol or offset < len(missing) else ""
            # tomlkit has no public insert: _insert_at puts the key right after the anchor.
            if anchor + offset < len(body.body):
                body._insert_at(anchor + offset, key, item)
            else:
                body.append(key, item)
    new_text = doc.as_string()
    _verify(text, new_text, path, canary_pct, started_at, rollback_reason=rollback_reason)
    return new_text


def _verify(
    old: str,
    new: str,
    path: Path,
    canary_pct: float,
    started_at: datetime,
    *,
    rollback_reason: str | None = None,
) -> None:
    table = canary_table_path(path)
    keys = _edited_keys(rollback_reason)
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
    intended = config.canary_pct == canary_pct and config.stage_started_at == expected_start
    if rollback_reason is not None:
        intended = (
            intended
            and config.rollback_reason == rollback_reason
            and config.rolled_back_at == expected_start
        )
    if not intended:
        raise CanaryEditError(f"the edit did not set {_and(keys)} as intended")
    for doc in (before, after):
        node: Any = doc
        for key in table:
            node = node[key]
        for key in keys:
            node.pop(key, None)
    if before != after:
        raise CanaryEditError(f"the edit would change more than {_and(keys)}")


def _and(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def write_atomic(path: Path, data: bytes, *, expected: bytes | None = None) -> None:
    """Replace ``path`` with ``data`` atomically, keeping its permissions.

    A temporary file in the same directory is written, flushed to disk and renamed over the
    target with ``os.replace``; on any failure it is removed. With ``expected``, the file must
    still hold exactly those bytes just before the rename (:class:`ConcurrentEditError`).
    """
    try:
        atomic_write_bytes(path.resolve(), data, expected=expected)
    except FileChangedError:
        raise ConcurrentEditError(f"{path} changed while it was being edited; run again") from None


def set_canary(
    path: Path, canary_pct: float, started_at: datetime, *, rollback_reason: str | None = None
) -> CanaryConfig:
    """Set ``canary_pct`` and ``stage_started_at`` (and, with ``rollback_reason``, the rollback
    record) in ``path`` atomically; the new config."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CanaryEditError(f"{path} is not UTF-8: {exc}") from None
    new_text = edit_canary_text(text, path, canary_pct, started_at, rollback_reason=rollback_reason)
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


def _parse_reason(value: str) -> str:
    reason = value.strip()
    if not reason:
        raise argparse.ArgumentTypeError("expected a reason, got an empty string")
    try:
        reason.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"the reason is not valid text: {value!r}") from None
    return reason


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
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Canary ramp of a model migration: show it, advance it, roll it back. "
        "advance edits only canary_pct and stage_started_at, rollback also records "
        "rollback_reason and rolled_back_at; edits are atomic.",
        epilog=EXIT_CODES_HELP,
        formatter_class=raw,
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = sub.add_parser(
        "status",
        parents=[common, metrics],
        help="stage, fraction, time at stage, decision",
        description="Show the canary; with --metrics, the controller's decision, which is "
        "also the exit status.",
        epilog=EXIT_CODES_HELP,
        formatter_class=raw,
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    advance = sub.add_parser(
        "advance",
        parents=[common, metrics],
        help="move to the next stage if the controller says promote",
        description="Move canary_pct to the next stage when the controller says promote; "
        "otherwise write nothing and exit with the decision's status (3 hold, 4 roll back).",
        epilog=EXIT_CODES_HELP,
        formatter_class=raw,
    )
    advance.add_argument(
        "--force",
        action="store_true",
        help="advance even when the controller does not promote (also to restart after a rollback)",
    )
    rollback = sub.add_parser(
        "rollback",
        parents=[common],
        help="set canary_pct to 0.0 and record why",
        description="Set canary_pct to 0.0 and record rollback_reason and rolled_back_at in "
        "the config. advance then refuses until --force restarts the ramp.",
        epilog=EXIT_CODES_HELP,
        formatter_class=raw,
    )
    rollback.add_argument(
        "--reason", required=True, type=_parse_reason, help="why (written to the config)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``llmregress canary``."""
    parser = _build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    now: datetime = getattr(args, "now", None) or datetime.now(UTC)
    config_path: Path | None = getattr(args, "config", None)
    try:
        # The file alone: the environment override belongs to the application's processes.
        config = load_canary_config(path=config_path, environ={})
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
        return EXIT_ERROR
    except (CanaryEditError, CanaryConfigError, OSError) as exc:
        print(f"{PROG}: cannot edit {config.path}: {exc}; nothing was written", file=sys.stderr)
        return EXIT_ERROR


def _share(canary_pct: float) -> str:
    """``0.05 (5%)``."""
    return f"{format_fraction(canary_pct)} ({format_percent(canary_pct)})"


def _buckets_text(canary_pct: float) -> str:
    count = candidate_buckets(canary_pct)
    if count == 0:
        return "no bucket"
    if count == BUCKETS:
        return f"all {BUCKETS:,} buckets"
    return f"buckets 0-{count - 1} of {BUCKETS:,}"


def _stage_text(config: CanaryConfig) -> str:
    index = config.stage_index()
    total = len(config.stages)
    if index is None:
        state = "rolled back" if config.rolled_back else "not running"
        return (
            f"{state} (no user on the candidate); the first stage is {_share(config.stages[0].pct)}"
        )
    if config.canary_pct >= 1.0:
        return "full rollout (every user on the candidate)"
    exact = config.stages[index].pct == config.canary_pct
    where = f"stage {index + 1} of {total}" if exact else f"after stage {index + 1} of {total}"
    return f"{where} at {_share(config.canary_pct)}; next: {_share(config.next_pct())}"


def _rollback_text(config: CanaryConfig) -> str | None:
    if config.rollback_reason is None and config.rolled_back_at is None:
        return None
    when = format_datetime(config.rolled_back_at) if config.rolled_back_at else "(time not set)"
    reason = config.rollback_reason or "(no reason recorded)"
    if config.rolled_back:
        return f"rolled back at {when}: {reason}; advance needs --force to restart"
    return f"last rolled back at {when}: {reason} (restarted since)"


def _env_override() -> dict[str, Any] | None:
    raw = os.environ.get(CANARY_PCT_ENV)
    if raw is None or not raw.strip():
        return None
    try:
        value = canary_pct_from_env({CANARY_PCT_ENV: raw})
    except CanaryConfigError as exc:
        return {"variable": CANARY_PCT_ENV, "value": raw, "canary_pct": None, "error": str(exc)}
    return {"variable": CANARY_PCT_ENV, "value": raw, "canary_pct": value, "error": None}


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
    code = EXIT_OK if decision is None else _EXIT_FOR_ACTION[decision.action]
    override = _env_override()
    if as_json:
        data: dict[str, Any] = {
            "config": str(config.path),
            "production": config.production,
            "candidate": config.candidate,
            "experiment_id": config.experiment_id,
            "canary_pct": config.canary_pct,
            "candidate_buckets": candidate_buckets(config.canary_pct),
            "stage": None if index is None else index + 1,
            "stages": len(config.stages),
            "next_pct": config.next_pct(),
            "stage_started_at": (
                format_datetime(config.stage_started_at) if config.stage_started_at else None
            ),
            "hours_at_stage": round(hours, 3),
            "rollback": (
                None
                if config.rollback_reason is None and config.rolled_back_at is None
                else {
                    "reason": config.rollback_reason,
                    "at": (
                        format_datetime(config.rolled_back_at) if config.rolled_back_at else None
                    ),
                    "pending": config.rolled_back,
                }
            ),
            "env_override": override,
            "decision": (
                None
                if decision is None
                else {
                    "action": decision.action,
                    "reason": decision.reason,
                    "next_pct": decision.next_pct,
                }
            ),
            "exit_status": code,
        }
        print(json.dumps(data, indent=2))
        return code
    print(f"Canary {config.experiment_id} in {config.path}")
    print(f"  production: {config.production}")
    print(f"  candidate:  {config.candidate}")
    print(f"  canary_pct: {_share(config.canary_pct)}: {_buckets_text(config.canary_pct)}")
    print(f"  stage:      {_stage_text(config)}")
    if index is not None:
        needed = config.stages[index].min_hours
        since = (
            f"since {format_datetime(config.stage_started_at)}"
            if config.stage_started_at
            else "stage_started_at is not set"
        )
        print(f"  at stage:   {hours:.1f} h ({since}; the stage needs {needed:g} h)")
    rollback = _rollback_text(config)
    if rollback is not None:
        print(f"  rollback:   {rollback}")
    if override is not None:
        effect = (
            f"processes started with it use {_share(override['canary_pct'])} instead of the "
            "file's value"
            if override["error"] is None
            else f"it is invalid, so the application will fail to load: {override['error']}"
        )
        print(f"  override:   {CANARY_PCT_ENV}={override['value']} is set here; {effect}")
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
    return code


def _advance(
    config: CanaryConfig,
    metrics: Mapping[str, VariantMetrics] | None,
    now: datetime,
    *,
    force: bool,
) -> int:
    assert config.path is not None
    if config.canary_pct >= 1.0:
        print(
            f"{PROG}: the canary is at 1.0 (every user) already; nothing to advance",
            file=sys.stderr,
        )
        return EXIT_HOLD
    decision = _decide(config, metrics, now)
    if decision.action == "promote":
        target = decision.next_pct
    elif not force:
        hint = "" if metrics is not None or config.rolled_back else " (no --metrics given)"
        if config.rolled_back:
            advice = "Once the cause is fixed, restart the ramp with --force."
        elif decision.action == "rollback":
            advice = "Roll back with 'llmregress canary rollback --reason TEXT', or use --force."
        else:
            advice = "Use --force to advance anyway."
        print(
            f"{PROG}: advance refused{hint}: the controller says {decision.action}: "
            f"{decision.reason}\n{advice} Nothing was written.",
            file=sys.stderr,
        )
        return _EXIT_FOR_ACTION[decision.action]
    else:
        target = config.next_pct()
        print(
            f"warning: forcing the advance against the controller ({decision.action}: "
            f"{decision.reason})",
            file=sys.stderr,
        )
    updated = set_canary(config.path, target, now)
    print(
        f"Advanced {config.experiment_id}: canary_pct {_share(config.canary_pct)} -> "
        f"{_share(target)} in {config.path} (stage_started_at = {format_datetime(now)}); "
        f"now {_stage_text(updated)}."
    )
    return EXIT_OK


def _rollback(config: CanaryConfig, now: datetime, *, reason: str) -> int:
    assert config.path is not None
    if config.canary_pct == 0:
        recorded = _rollback_text(config) if config.rolled_back else None
        print(
            f"The canary {config.experiment_id} is at 0.0 already; nothing changed"
            + (f" ({recorded})." if recorded else ".")
        )
        return EXIT_OK
    set_canary(config.path, 0.0, now, rollback_reason=reason)
    import tomlkit  # the reason as written to the file

    print(
        f"Rolled back {config.experiment_id}: canary_pct {_share(config.canary_pct)} -> 0.0 "
        f"in {config.path}; every user gets {config.production} again.\n"
        f"Recorded rollback_reason = {tomlkit.string(reason).as_string()} and rolled_back_at = "
        f"{format_datetime(now)}; advance refuses until --force restarts the ramp.\n"
        "Deployed processes keep the value they loaded from the file in their image: to stop "
        f"the candidate there without a rebuild, set {CANARY_PCT_ENV}=0 in their environment "
        "and restart them."
    )
    return EXIT_OK
