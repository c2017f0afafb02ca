"""The runner process: every model call of a session, in an interpreter of its own.

Why a process and not a thread: an SDK call costs milliseconds of CPU (request building,
pydantic models, the connection pool) and pytest's work per item about one more. In one
interpreter they take turns on the GIL, so the calls slow pytest's loop down and pytest's loop
slows the calls down. In a process of its own the runner:

- imports the SDKs (about 2 s of CPU) while pytest starts and collects, on another core;
- checks every model once (the preflight) before any case starts;
- serves every pytest process of the session, xdist workers included, over one Unix socket in
  a private directory: one concurrency budget, one cache writer, one import of the SDKs.

The process that starts it (a lone pytest process, or the xdist controller) holds the
runner's stdin open as a lifeline: when it closes (the session ends, or pytest dies), the
runner stops. The runner has a session of its own, so Ctrl-C reaches pytest alone; pytest
ends the session, then the runner.

Protocol, JSON lines. The starter writes the configuration on stdin (API keys included, so
they appear on no command line and in no environment listing); the runner answers on stdout
with one line once the preflight is done: ``{"problems": {"provider:model": message},
"notices": [text]}`` (notices: a damaged cache file moved aside), and with a last line once
its lifeline closes: ``{"cache": health, "cache_use": counts, ...}`` (damaged cache entries
replaced, hits and misses per kind of call, for the summary; see ``_say_last_words``).
Clients send ``{"op": "case", "key", "case", "systems"}``, ``{"op": "complete", "id",
"request"}``, ``{"op": "judge", "id", "args"}`` or ``{"op": "status", "id"}`` over the
socket; answers come back as calls
finish: ``{"key", "result", "baseline"}`` (or ``{"key", "failure"}``) and ``{"id", "value"}``
(or ``{"id", "error"}``). A case runs once per session, keyed by its node id, however many
processes send it (``CaseBoard``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Protocol, cast

from pytest_llmregress.core.masking import mask_urls_in
from pytest_llmregress.engine import FORKSERVER_VARIABLE

if TYPE_CHECKING:
    from pytest_llmregress.cases.golden import GoldenCase
    from pytest_llmregress.engine.runner import CaseRun, Runner, SystemPrompt
    from pytest_llmregress.providers.base import Completion, Request
    from pytest_llmregress.providers.registry import Endpoints, ModelRef
    from pytest_llmregress.scoring.judge import Rubric
    from pytest_llmregress.scoring.score import Score
    from pytest_llmregress.settings import RunnerSettings
    from pytest_llmregress.verdict.results import CaseResult

Systems = Callable[["GoldenCase"], Mapping[str, "SystemPrompt"]]
"""A case's system prompt for each model that answers it (see ``Runner.run_case``)."""

LINE_LIMIT = 1 << 26  # one message (a case and its systems) may be this large
CONNECT_TIMEOUT_S = 30.0
_PENDING: Final = object()  # a case submitted whose result has not arrived
SUBMIT_CHUNK = 256  # cases per write: all 5,000 of a run at once were 10 MB of text at a time
MAX_DIRECTORY_LENGTH = 90  # leaves room for "/runner.sock" within AF_UNIX's limit


class _Child(Protocol):
    """The runner process as ``RunnerProcess`` holds it: a ``subprocess.Popen``, or a
    ``forkserver.ForkedProcess`` (the test suite's warm start)."""

    pid: int
    returncode: int | None
    stdin: IO[bytes] | None
    stdout: IO[bytes] | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


class RunnerError(RuntimeError):
    """The runner process could not be started or reached, or it stopped."""


@dataclass(frozen=True)
class RunnerAddress:
    """Where a pytest process finds the session's runner, and its log for error messages."""

    socket_path: str
    log_path: str

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = Path(self.log_path).read_text(errors="replace").rstrip()
        except OSError:
            text = ""
        if not text:  # killed without a word (SIGKILL, the OOM killer)
            return f" (its log, {self.log_path}, is empty)"
        # Masked: an SDK's debug log (ANTHROPIC_LOG=debug) shows each request's full URL.
        tail = mask_urls_in("\n".join(text.splitlines()[-lines:]))
        return f"\nthe end of its log ({self.log_path}):\n{tail}"


# -- the pytest side ---------------------------------------------------------------------------


def runner_config(
    *,
    endpoints: Endpoints,
    settings: RunnerSettings | None = None,
    candidate: ModelRef | None = None,
    judge: ModelRef | None = None,
    compare: ModelRef | None = None,
    fallbacks: Iterable[ModelRef] = (),
    panel: Iterable[ModelRef] = (),
    prices: Mapping[str, tuple[float, float]] | None = None,
    batch_prices: Mapping[str, tuple[float, float]] | None = None,
    preflight: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The configuration a ``RunnerProcess`` sends its runner (JSON); ``settings`` is the
    runner's slice of the session's settings (the option table's defaults when None)."""
    if settings is None:
        from pytest_llmregress.settings import RunnerSettings

        settings = RunnerSettings.defaults()
    return {
        "models": {
            "candidate": str(candidate) if candidate else None,
            "judge": str(judge) if judge else None,
            "compare": str(compare) if compare else None,
        },
        "fallbacks": [str(ref) for ref in fallbacks],
        "panel": [str(ref) for ref in panel],
        "prices": {model: list(pair) for model, pair in (prices or {}).items()},
        "batch_prices": {model: list(pair) for model, pair in (batch_prices or {}).items()},
        "base_urls": dict(endpoints.base_urls),
        "api_keys": dict(endpoints.api_keys),
        "preflight": preflight,
        "cache_dir": os.fspath(cache_dir) if cache_dir is not None else None,
        "runner": settings.to_json(),
    }


class RunnerProcess:
    """Starts the runner process and holds its lifeline (the lone process or xdist controller)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._directory = tempfile.mkdtemp(prefix="llmregress-")  # mode 0700: ours alone
        if len(self._directory) > MAX_DIRECTORY_LENGTH:  # a socket path has ~104 bytes at most
            os.rmdir(self._directory)
            self._directory = tempfile.mkdtemp(prefix="llmregress-", dir="/tmp")
        self.address = RunnerAddress(
            os.path.join(self._directory, "runner.sock"),
            os.path.join(self._directory, "runner.log"),
        )
        # The runner imports this package from where this process did, even when pytest put
        # it on sys.path (``pythonpath`` in the ini file, a source checkout).
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        argv = [sys.executable, "-m", "pytest_llmregress.engine.runner_process", self._directory]
        with open(self.address.log_path, "wb") as log:
            self._process = _start(argv, env, log)
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._stdin: IO[bytes] = self._process.stdin
        self._stdout: IO[bytes] = self._process.stdout
        self._stdin.write(json.dumps(dict(config)).encode() + b"\n")
        self._stdin.flush()
        self._problems: dict[str, str] | None = None
        self.notices: list[str] = []  # from the ready line: what the user should be told
        self.last_words: dict[str, Any] = {}  # the runner's last line (``_read_last_words``)

    def preflight_problems(self) -> dict[str, str]:
        """Wait until the runner is ready: the models its preflight found unavailable."""
        if self._problems is None:
            line = self._stdout.readline()
            if not line:
                self._process.wait()
                raise RunnerError(
                    f"the runner process exited with status {self._process.returncode} before it "
                    f"was ready{self.address.log_tail()}"
                )
            ready = json.loads(line)
            self._problems = dict(ready["problems"])
            self.notices = list(ready.get("notices", ()))
        return self._problems

    def stop(self, timeout: float = 10.0) -> None:
        """Close the lifeline; the runner cancels what is left and exits.

        A runner that did not end normally (crashed, killed, or had to be killed here) keeps
        its log, which the session's error messages point to; otherwise the whole directory
        goes. Told apart by the exit status, not by whether it is still running when this
        starts: a crashed runner may still be writing its last words.
        """
        with contextlib.suppress(OSError):
            self._stdin.close()
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._read_last_words()
        self._stdout.close()
        if self._process.returncode != 0:
            with contextlib.suppress(OSError):
                os.unlink(self.address.socket_path)
        else:
            shutil.rmtree(self._directory, ignore_errors=True)

    def _read_last_words(self) -> None:
        """What the runner wrote on stdout after its ready line, once it has exited: what
        only the runner process knows (``_say_last_words``: the cache's health and use, ...)."""
        try:
            rest = self._stdout.read()
        except (OSError, ValueError):
            return
        for line in rest.splitlines():
            try:
                message = json.loads(line)
            except ValueError:
                continue  # a runner killed mid-line
            if not isinstance(message, dict):
                continue
            if "problems" in message:  # the ready line, never read: the session ended early
                self.notices = list(message.get("notices", ()))
            else:
                self.last_words.update(message)


def _start(argv: list[str], env: dict[str, str], log: IO[bytes]) -> _Child:
    """Start the runner: ``subprocess.Popen``, or in this project's own tests, when the
    environment names a runner forkserver, a fork of a process that has imported the SDKs
    already (``forkserver.py``), which becomes the same process; it falls back to ``Popen``
    for a runner it could not start exactly as ``Popen`` would."""
    server = os.environ.get(FORKSERVER_VARIABLE)
    if server:
        from pytest_llmregress.engine.forkserver import ForkRefused, fork_runner

        with contextlib.suppress(ForkRefused):
            return fork_runner(server, argv, env=env, stderr=log)
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
        start_new_session=True,
    )


class RunnerClient:
    """One pytest process's connection to the runner: submit cases, wait for results.

    Results arrive on a reader thread the moment they finish; ``finish`` (a team's scorers,
    ``scoring.finish.finish_with_team_scorers``) completes each result and its compare
    result there, then ``on_result`` (the results journal) sees them, whatever pytest's loop
    is doing, and only then may pytest's thread have the result.

    A case waiting for its result is one entry of a dict, not a ``Future`` (1.6 KB each: a
    run submits every case at its start, and 5,000 futures were 8 MB); the one thread that
    waits (pytest's) is woken only by the result it waits for.
    """

    def __init__(
        self,
        address: RunnerAddress,
        on_result: Callable[[CaseResult, CaseResult | None], None] | None = None,
        finish: Callable[[CaseResult, GoldenCase], CaseResult] | None = None,
    ) -> None:
        self.address = address
        self._on_result = on_result
        self._finish = finish
        self._golden: dict[str, GoldenCase] = {}  # cases sent, until their result arrives
        self._socket: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._send_lock = threading.Lock()
        # Each case submitted and not yet taken: _PENDING, its CaseRun, or the error to raise.
        self._cases: dict[str, object] = {}
        self._arrived = threading.Condition()
        self._awaited: str | None = None  # the case pytest's thread waits for
        self._calls: dict[int, concurrent.futures.Future[Any]] = {}
        self._next_id = 0
        self._broken: RunnerError | None = None
        self._closed = False

    # -- requests (pytest's thread) ----------------------------------------------------------

    def submit(self, cases: Iterable[tuple[str, GoldenCase]], systems: Systems) -> None:
        """Start the cases (``(node id, case)``) that have not started yet.

        ``systems`` gives a case's system prompt per model; it is asked only for cases that
        start here, once each.
        """
        keys: list[str] = []
        lines: list[str] = []
        for key, case in cases:
            if key in self._cases:
                continue
            self._cases[key] = _PENDING
            if self._finish is not None:
                self._golden[key] = case
            message = {"op": "case", "key": key, "case": case.to_dict(), "systems": systems(case)}
            keys.append(key)
            lines.append(json.dumps(message))
            if len(lines) == SUBMIT_CHUNK:
                self._submit(keys, lines)
                keys, lines = [], []
        if lines:
            self._submit(keys, lines)

    def _submit(self, keys: list[str], lines: list[str]) -> None:
        try:
            self._send("\n".join(lines))
        except RunnerError:
            for key in keys:  # never sent: asking for them again must raise, not wait
                del self._cases[key]
            raise

    def result(
        self,
        key: str,
        case: GoldenCase,
        systems: Systems,
        *,
        while_waiting: Callable[[], None] | None = None,
        every: float = 5.0,
    ) -> CaseRun:
        """Wait for a case's result (starting it if nobody did) and forget it;
        ``while_waiting`` is called every ``every`` seconds of the wait (a batch's progress)."""
        self.submit([(key, case)], systems)
        while True:
            with self._arrived:
                outcome = self._cases[key]
                if outcome is _PENDING:
                    self._awaited = key
                    try:
                        self._arrived.wait(every if while_waiting is not None else None)
                    finally:
                        self._awaited = None
                    outcome = self._cases[key]
                if outcome is not _PENDING:
                    del self._cases[key]
                    break
            if while_waiting is not None:
                while_waiting()  # unlocked: it asks the runner, and the reader reads the reply
        if isinstance(outcome, BaseException):
            raise outcome
        return cast("CaseRun", outcome)

    def complete_sync(self, request: Request) -> Completion:
        """One call of the model under test from a test body (the ``llm`` fixture)."""
        from pytest_llmregress.providers.base import Completion

        message = {
            "model": request.model,
            "messages": [[m.role, m.content] for m in request.messages],
            "system": request.system,
            "params": dict(request.params),
        }
        return Completion.from_dict(self._call("complete", request=message))

    def status(self) -> dict[str, Any]:
        """The runner's calls now (``Runner.status``), for the progress line."""
        value: dict[str, Any] = self._call("status")
        return value

    def judge_sync(
        self, *, task: str, reference: str, output: str, threshold: float, rubric: Rubric = ()
    ) -> Score:
        """Judge one output from a test body (the ``llm_judge`` fixture); raises on failure."""
        from pytest_llmregress.scoring.score import Score

        args = {
            "task": task,
            "reference": reference,
            "output": output,
            "threshold": threshold,
            "rubric": [criterion.to_dict() for criterion in rubric],
        }
        return Score.from_dict(self._call("judge", args=args))

    def close(self) -> None:
        """Disconnect; the runner cancels this process's unfinished cases."""
        self._closed = True
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
            self._socket.close()
        if self._reader is not None:
            self._reader.join(timeout=10)
        self._fail_pending(RunnerError("the session ended before this result arrived"))

    # -- plumbing ----------------------------------------------------------------------------

    def _call(self, op: str, **fields: Any) -> Any:
        with self._send_lock:
            call_id = self._next_id
            self._next_id += 1
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._calls[call_id] = future
        self._send(json.dumps({"op": op, "id": call_id, **fields}))
        return future.result()

    def _send(self, text: str) -> None:
        data = text.encode() + b"\n"
        with self._send_lock:
            if self._broken is not None:
                raise self._broken
            try:
                self._connect().sendall(data)
            except OSError as error:
                self._broken = RunnerError(
                    f"lost the runner process: {error}{self.address.log_tail()}"
                )
                raise self._broken from None

    def _connect(self) -> socket.socket:
        if self._socket is not None:
            return self._socket
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.address.socket_path)
                break
            except (FileNotFoundError, ConnectionRefusedError) as error:
                sock.close()
                if time.monotonic() > deadline:
                    raise RunnerError(
                        f"cannot reach the runner process at {self.address.socket_path}: "
                        f"{error}{self.address.log_tail()}"
                    ) from None
                time.sleep(0.02)
        self._socket = sock
        self._reader = threading.Thread(
            target=self._read, args=(sock,), name="llmregress-results", daemon=True
        )
        self._reader.start()
        return sock

    def _read(self, sock: socket.socket) -> None:
        from pytest_llmregress.verdict.results import CaseResult

        with sock.makefile("rb") as stream:
            for line in stream:
                message = json.loads(line)
                if "key" in message:
                    case = self._golden.pop(message["key"], None)
                    if "failure" in message:
                        error = RunnerError(f"the runner failed on this case: {message['failure']}")
                        self._arrive(message["key"], error)
                        continue
                    result = CaseResult.from_dict(message["result"])
                    baseline = message["baseline"]
                    compare = CaseResult.from_dict(baseline) if baseline else None
                    if self._finish is not None and case is not None:
                        result = _finished(self._finish, result, case)
                        if compare is not None:
                            compare = _finished(self._finish, compare, case)
                    if self._on_result is not None:
                        self._on_result(result, compare)  # written down before anyone waits
                    self._arrive(message["key"], (result, compare))
                else:
                    call = self._calls.pop(message["id"])
                    if "error" in message:
                        call.set_exception(_error_from_dict(message["error"]))
                    else:
                        call.set_result(message["value"])
        if not self._closed:
            self._broken = RunnerError(
                f"the runner process stopped during the session{self.address.log_tail()}"
            )
            self._fail_pending(self._broken)

    def _arrive(self, key: str, outcome: object) -> None:
        """A case's result (or the error to raise for it) is here."""
        with self._arrived:
            if self._cases.get(key) is _PENDING:
                self._cases[key] = outcome
                if key == self._awaited:
                    self._arrived.notify()

    def _fail_pending(self, error: RunnerError) -> None:
        with self._arrived:
            for key, outcome in list(self._cases.items()):
                if outcome is _PENDING:
                    self._cases[key] = error
            self._arrived.notify_all()
        for future in list(self._calls.values()):
            if not future.done():
                future.set_exception(error)
        self._calls.clear()


def _finished(
    finish: Callable[[CaseResult, GoldenCase], CaseResult], result: CaseResult, case: GoldenCase
) -> CaseResult:
    """``finish(result, case)``; should it raise, an error result (the reader must live on)."""
    try:
        return finish(result, case)
    except Exception as error:
        message = f"scoring failed: {type(error).__name__}: {error}"
        return dataclasses.replace(result, outcome="error", error=message, error_kind="scorer")


def _error_to_dict(error: BaseException) -> dict[str, Any]:
    """An error for the pytest process that called (URLs in its message masked)."""
    from pytest_llmregress.providers.base import ProviderError
    from pytest_llmregress.scoring.score import ScorerError

    if isinstance(error, ProviderError):
        fields = (
            "provider",
            "model",
            "kind",
            "status",
            "retry_after",
            "request_id",
            "attempts",
            "param",
        )
        details = {name: getattr(error, name) for name in fields}
        return {"type": "provider", "message": mask_urls_in(error.message), **details}
    if isinstance(error, ScorerError):
        return {"type": "scorer", "message": mask_urls_in(str(error))}
    return {"type": "runtime", "message": mask_urls_in(f"{type(error).__name__}: {error}")}


def _error_from_dict(data: Mapping[str, Any]) -> Exception:
    from pytest_llmregress.providers.base import ProviderError
    from pytest_llmregress.scoring.score import ScorerError

    fields = dict(data)
    kind, message = fields.pop("type"), fields.pop("message")
    if kind == "provider":
        return ProviderError(message, **fields)
    if kind == "scorer":
        return ScorerError(message)
    return RuntimeError(message)


# -- the runner's side -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m pytest_llmregress.engine.runner_process DIRECTORY`` (started by
    ``RunnerProcess``)."""
    import asyncio

    directory = (argv if argv is not None else sys.argv[1:])[0]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(os.path.join(directory, "runner.sock"))  # clients may connect from now on
    listener.listen(128)
    config = json.loads(sys.stdin.buffer.readline())
    # The ready line goes to the real stdout; anything else printed (a library's stray print)
    # goes to the log with stderr, so it cannot break the protocol.
    ready = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    asyncio.run(_serve(config, listener, ready))
    return 0


async def _serve(config: Mapping[str, Any], listener: socket.socket, ready: IO[str]) -> None:
    import asyncio

    from pytest_llmregress.engine.runner import Runner
    from pytest_llmregress.providers.registry import Endpoints, parse_model
    from pytest_llmregress.settings import RunnerSettings

    models = {role: parse_model(spec) if spec else None for role, spec in config["models"].items()}
    fallbacks = tuple(parse_model(spec) for spec in config["fallbacks"])
    panel = tuple(parse_model(spec) for spec in config.get("panel", ()))
    refs = [ref for ref in models.values() if ref is not None] + list(fallbacks) + list(panel)
    endpoints = Endpoints(config["base_urls"], config["api_keys"])
    settings = RunnerSettings.from_json(config["runner"])
    cache = None
    if config["cache_dir"]:
        from pytest_llmregress.engine.cache import ResponseCache

        cache = ResponseCache(Path(config["cache_dir"]), replay=settings.cache_mode == "replay")
    runner = Runner(
        candidate=models["candidate"],
        judge=models["judge"],
        compare=models["compare"],
        fallbacks=fallbacks,
        panel=panel,
        prices={model: (pair[0], pair[1]) for model, pair in config.get("prices", {}).items()},
        batch_prices={m: (pair[0], pair[1]) for m, pair in config.get("batch_prices", {}).items()},
        endpoints=endpoints,
        settings=settings,
        cache=cache,
    )
    problems = await _import_and_check(runner, refs, preflight=config["preflight"])
    _say_ready(ready, problems, cache.notices if cache is not None else [])
    directory = os.path.dirname(listener.getsockname())
    # Batch mode sends every started case's calls in one batch: there, every case starts.
    slots = settings.concurrency + settings.judge_concurrency
    window = None if runner.batch is not None else 2 * slots
    board = CaseBoard(runner, window)
    server = await asyncio.start_unix_server(
        functools.partial(_handle, runner, board), sock=listener, limit=LINE_LIMIT
    )
    await asyncio.to_thread(sys.stdin.buffer.read)  # the lifeline: returns when it closes
    server.close()
    if cache is not None:
        cache.close()  # every stored reply is committed; nothing else here needs saving
    _say_last_words(ready, cache, runner)
    # The starter may be gone without cleaning up (killed, os._exit): the directory goes with
    # the runner. A runner that crashes never gets here, so its log stays for the message.
    shutil.rmtree(directory, ignore_errors=True)
    # Exit now: a graceful close of every connection and of the interpreter costs the
    # session's wall time and saves nothing (the results are with the pytest processes).
    os._exit(0)


async def _import_and_check(
    runner: Runner, refs: list[ModelRef], *, preflight: bool
) -> dict[ModelRef, str]:
    """Import the SDKs the run's models need (only those) and check the models (the
    preflight): its unavailable models, in the order of ``refs``.

    Each SDK's models are checked the moment it is imported, while the next SDK imports on a
    thread, so the preflight's round trips overlap the import instead of following it.
    """
    import asyncio
    import importlib

    by_provider: dict[str, list[ModelRef]] = {}
    for ref in refs:
        by_provider.setdefault(ref.provider, []).append(ref)
    checks: list[asyncio.Task[dict[ModelRef, str]]] = []
    for name, provider_refs in by_provider.items():
        # Provider names are the SDK package names.
        if checks:
            await asyncio.to_thread(importlib.import_module, name)
        else:
            importlib.import_module(name)
        if preflight:
            checks.append(asyncio.create_task(runner.check_models(provider_refs)))
    found: dict[ModelRef, str] = {}
    for answers in await asyncio.gather(*checks):
        found.update(answers)
    return {ref: found[ref] for ref in dict.fromkeys(refs) if ref in found}


def _say_ready(ready: IO[str], problems: Mapping[Any, str], notices: list[str]) -> None:
    """The ready line: the preflight's problems and what the user should be told."""
    line = {"problems": {str(ref): text for ref, text in problems.items()}, "notices": notices}
    ready.write(json.dumps(line) + "\n")
    ready.flush()  # kept open for the last words


def _say_last_words(ready: IO[str], cache: Any, runner: Runner) -> None:
    """The runner's last line, read by ``RunnerProcess.stop``: what became of the cache and
    how often it answered, which judges refused structured output, which models refused a
    parameter, and what the calls met on the network (only the runner process knows any of
    it)."""
    words: dict[str, Any] = {}
    if cache is not None:
        words["cache"] = cache.health()
        if cache.disabled is None:  # a cache this run could not use answered nothing
            words["cache_use"] = cache.stats_dict()
    if runner.plain_judges:
        words["plain_judges"] = {str(ref): why for ref, why in runner.plain_judges.items()}
    refused = {str(ref): why for ref, why in runner.refused_params.items() if why}
    if refused:
        words["refused_params"] = refused
    traffic = {kind: line for kind, line in runner.traffic_lines().items() if line}
    if traffic:
        words["traffic"] = traffic
    with contextlib.suppress(OSError, ValueError):  # nobody listening any more
        if words:
            ready.write(json.dumps(words) + "\n")
        ready.close()


class CaseBoard:
    """Each golden case runs once per session, however many pytest processes ask for it.

    Under xdist a worker starts cases ahead of pytest's loop before it knows which of them it
    will run (every ``--dist`` mode but ``load``, whose scheduler hands out whole units), so
    several workers may ask for one case; under ``--dist each`` every worker runs every case.
    The board keys cases by node id: the first request starts the case, later ones wait for
    the same answer, and a finished case's answer is kept for whoever asks next. A case is
    cancelled only when every process that asked for it is gone.

    Cases start in the order they were asked for, at most ``window`` at a time (None: all at
    once); the others wait as the bytes of the lines they came in (about a tenth of the same
    message decoded). A started case is a task holding its case, its coroutines and its place
    in the budgets' queues, about 12 KB: 5,000 of them at once were a third of the runner's
    memory. A window of twice the budgets' slots keeps every slot busy, since each started
    case needs at least one slot at a time. A finished case's answer is kept compressed (a
    third of its size) for a process that asks again.
    """

    def __init__(self, runner: Runner, window: int | None = None) -> None:
        self._runner = runner
        self._answers: dict[str, bytes] = {}  # zlib-compressed
        # Asked for and not answered: the task (None until the case starts) and who waits.
        self._waiting: dict[str, tuple[Any, set[Callable[[bytes], None]]]] = {}
        self._queued: collections.deque[tuple[str, bytes]] = collections.deque()
        self._window = window
        self._started = 0  # cases started and not finished

    def request(self, key: str, line: bytes, send: Callable[[bytes], None]) -> None:
        """A process asks for the case ``key``, whose message is ``line``."""
        answer = self._answers.get(key)
        if answer is not None:
            send(zlib.decompress(answer))
        elif key in self._waiting:
            self._waiting[key][1].add(send)
        else:
            self._waiting[key] = (None, {send})
            self._queued.append((key, line))
            self._start_next()

    def forget(self, send: Callable[[bytes], None]) -> None:
        """A pytest process went away: cancel the cases nobody else waits for."""
        for key, (task, senders) in list(self._waiting.items()):
            senders.discard(send)
            if not senders:
                del self._waiting[key]
                if task is not None:
                    task.cancel()

    def _start_next(self) -> None:
        """Start queued cases while the window has room; a case nobody waits for any more is
        dropped, and one asked for again after that starts once, from its newer message."""
        import asyncio

        while self._queued and (self._window is None or self._started < self._window):
            key, line = self._queued.popleft()
            entry = self._waiting.get(key)
            if entry is None or entry[0] is not None:  # forgotten (and perhaps asked again)
                continue
            task = asyncio.create_task(self._run(key, line))
            self._waiting[key] = (task, entry[1])
            self._started += 1
            task.add_done_callback(self._finished)

    def _finished(self, task: Any) -> None:
        self._started -= 1
        self._start_next()

    async def _run(self, key: str, line: bytes) -> None:
        from pytest_llmregress.cases.golden import GoldenCase

        reply: dict[str, Any]
        try:
            message = json.loads(line)
            systems = {model: tuple(value) for model, value in message["systems"].items()}
            result, baseline = await self._runner.run_case(
                key, GoldenCase.from_dict(message["case"]), systems
            )
        except Exception as error:  # a bug, not a model failure: the item shows it
            reply = {"key": key, "failure": mask_urls_in(f"{type(error).__name__}: {error}")}
        else:
            baseline_dict = baseline.to_dict() if baseline is not None else None
            reply = {"key": key, "result": result.to_dict(), "baseline": baseline_dict}
            for record in (reply["result"], baseline_dict):
                if record is not None and record["error"]:  # e.g. a proxy echoing its upstream
                    record["error"] = mask_urls_in(record["error"])
        answer = json.dumps(reply).encode() + b"\n"
        self._answers[key] = zlib.compress(answer, 1)
        _, senders = self._waiting.pop(key)
        for send in senders:
            send(answer)


async def _handle(runner: Runner, board: CaseBoard, reader: Any, writer: Any) -> None:
    """One pytest process's connection: run what it sends, answer as each thing finishes."""
    import asyncio

    from pytest_llmregress.providers.base import ChatMessage, Request

    def send_bytes(data: bytes) -> None:
        if not writer.is_closing():
            writer.write(data)

    def send(message: Mapping[str, Any]) -> None:
        send_bytes(json.dumps(message).encode() + b"\n")

    async def run_call(message: Mapping[str, Any]) -> None:
        try:
            if message["op"] == "complete":
                data = message["request"]
                request = Request(
                    model=data["model"],
                    messages=tuple(ChatMessage(role, text) for role, text in data["messages"]),
                    system=data["system"],
                    params=data["params"],
                )
                value = (await runner.complete(request)).to_dict()
            else:
                from pytest_llmregress.scoring.judge import Criterion

                args = dict(message["args"])
                args["rubric"] = tuple(Criterion.from_dict(c) for c in args.get("rubric", ()))
                score, _ = await runner.judge_text(**args)
                value = score.to_dict()
        except Exception as error:
            send({"id": message["id"], "error": _error_to_dict(error)})
            return
        send({"id": message["id"], "value": value})

    mine: set[asyncio.Task[None]] = set()
    try:
        while line := await reader.readline():
            message = json.loads(line)
            if message["op"] == "case":  # kept as its line until it starts
                board.request(message["key"], line, send_bytes)
                continue
            if message["op"] == "status":  # answered at once, from the loop
                send({"id": message["id"], "value": runner.status()})
                continue
            task = asyncio.create_task(run_call(message))
            mine.add(task)
            task.add_done_callback(mine.discard)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        board.forget(send_bytes)  # the pytest process is gone: nobody waits for these
        for task in mine:
            task.cancel()
        writer.close()


if __name__ == "__main__":
    raise SystemExit(main())
