"""The runner forkserver: runner processes started warm, for this project's own test suite.

A runner process spends most of its start importing the two SDKs (about 1.5 s of CPU). The
test suite starts a runner in almost every end-to-end test, so that import dominated its time.
The forkserver is a process that has imported the SDKs and the runner's modules once; asked
for a runner, it forks a child that becomes exactly the process ``RunnerProcess`` would have
started with ``subprocess.Popen``:

- the same program: ``python -m pytest_llmregress.engine.runner_process DIRECTORY``, run with
  ``runpy`` as ``__main__`` with the same ``sys.argv``, in the starter's working directory,
  with the starter's environment and the ``sys.path`` a fresh interpreter would build from it
  (the directory, PYTHONPATH, the interpreter's entries, then ``site``'s);
- the same standard streams: the starter makes the pipes and opens the log, and sends the
  child's ends over the Unix socket (``socket.send_fds``); the child's stdin is the starter's
  lifeline exactly as with ``Popen``, its stdout the ready line and last words, its stderr the
  log;
- a session of its own (``os.setsid``), like ``start_new_session=True``;
- its exit status as ``Popen`` reports it: the forkserver is the child's parent, so it reaps
  it and relays the status on the starter's connection (``ForkedProcess.wait``/``poll``);
  signals (``kill``, ``send_signal``) go through the forkserver, which knows the pid has not
  been reused because it has not reaped the child yet.

Where a forked child could differ from a fresh interpreter, the forkserver refuses and the
starter uses ``Popen`` (``ForkRefused``): another interpreter; a variable the interpreter reads
as it starts (``PYTHON*`` but ``PYTHONPATH``, ``LC_*``, ``LANG``, ``TZ``) or one the preloaded
modules read while importing (``ANTHROPIC_LOG``, ``OPENAI_LOG``, ...: recorded while
preloading, not listed by hand) that differs from the forkserver's; a directory of the new
``sys.path`` holding a module of the same name as one already imported from elsewhere (another
copy of this package, a shadowing file). ``HOME``, read while importing only by ``sysconfig``
for the user's base directory, may differ: the child derives that again. What stays the
forkserver's: the hash seed of ``str`` (the ``random`` module is reseeded at every fork).

Production never uses it: ``RunnerProcess`` asks a forkserver only when the environment
variable ``LLMREGRESS_RUNNER_FORKSERVER`` names one, which only the test suite sets
(``tests/conftest.py``, ``Forkserver.start``). The forkserver serves until its stdin (its own
lifeline) closes and its last child has exited.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pytest_llmregress.engine import FORKSERVER_VARIABLE

ENVIRONMENT_VARIABLE = FORKSERVER_VARIABLE
"""Names the forkserver's socket; unset (production), runners start with ``Popen``."""

PRELOAD = (
    "anthropic",
    "openai",
    "pytest_llmregress.engine.runner",
    "pytest_llmregress.engine.cache",
    "pytest_llmregress.providers.registry",
    "pytest_llmregress.providers.anthropic",
    "pytest_llmregress.providers.openai",
    "pytest_llmregress.settings",
    "pytest_llmregress.cases.golden",
)
"""What the forkserver imports once: what every runner process imports before its preflight.
Not ``runner_process`` itself: the child runs it as ``__main__`` (``runpy``), and, as with
``python -m``, it must not be imported under its own name before that."""

STARTUP_PREFIXES = ("PYTHON", "LC_", "LANG", "TZ")
"""Variables the interpreter reads as it starts (not through ``os.environ``)."""

REPLY_TIMEOUT_S = 60.0  # the first request waits for the preload
REQUEST_TIMEOUT_S = 10.0
MESSAGE_LIMIT = 1 << 20


class ForkRefused(Exception):
    """The forkserver cannot start this runner exactly as ``Popen`` would; use ``Popen``."""


# -- the starter's side ----------------------------------------------------------------------


class ForkedProcess:
    """A runner started by the forkserver, with the part of ``subprocess.Popen``'s interface
    that ``RunnerProcess`` (and its tests) use: ``pid``, ``stdin``, ``stdout``, ``returncode``,
    ``poll``, ``wait``, ``send_signal``, ``kill``, ``terminate``."""

    def __init__(
        self,
        connection: socket.socket,
        pid: int,
        args: Sequence[str],
        stdin: IO[bytes],
        stdout: IO[bytes],
    ) -> None:
        self.args = list(args)
        self.pid = pid
        self.stdin: IO[bytes] | None = stdin
        self.stdout: IO[bytes] | None = stdout
        self.returncode: int | None = None
        self._connection = connection
        self._received = b""
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        if self.returncode is None:
            self._read_status(0.0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None and not self._read_status(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is not None:
            return  # like Popen: never signal a pid that may have been reused
        with contextlib.suppress(OSError):  # the forkserver relayed the status meanwhile
            self._connection.sendall(json.dumps({"signal": int(sig)}).encode() + b"\n")

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def _read_status(self, timeout: float | None) -> bool:
        """Read the exit status the forkserver relays; False when it has not come in time."""
        with self._lock:
            if self.returncode is not None:
                return True
            self._connection.settimeout(timeout)
            while b"\n" not in self._received:
                try:
                    chunk = self._connection.recv(4096)
                except (TimeoutError, BlockingIOError):
                    return False
                if not chunk:
                    raise ChildProcessError(
                        f"the runner forkserver stopped before runner {self.pid} did"
                    )
                self._received += chunk
            message = json.loads(self._received.split(b"\n", 1)[0])
            self.returncode = int(message["status"])
            self._connection.close()
            return True


def fork_runner(
    server: str, argv: Sequence[str], *, env: Mapping[str, str], stderr: IO[bytes]
) -> ForkedProcess:
    """Start ``argv`` (``python -m MODULE ARGS``) through the forkserver at ``server``, with
    ``env``, the current directory, pipes for stdin and stdout, and ``stderr``.

    Raises ``ForkRefused`` when the forkserver cannot be reached or cannot start this program
    exactly as ``Popen`` would."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(server)
    except OSError as error:
        connection.close()
        raise ForkRefused(f"cannot reach the runner forkserver at {server}: {error}") from None
    child_stdin, stdin = os.pipe()
    stdout, child_stdout = os.pipe()
    mine = [stdin, stdout]  # the child's ends are closed here once sent: the child's alone
    try:
        request = {"argv": list(argv), "env": dict(env), "cwd": os.getcwd()}
        data = json.dumps(request).encode() + b"\n"
        sent = socket.send_fds(connection, [data], [child_stdin, child_stdout, stderr.fileno()])
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if sent < len(data):  # a refusal may come before the rest was read: read on
                connection.sendall(data[sent:])
        os.close(child_stdin)
        os.close(child_stdout)
        child_stdin = child_stdout = -1
        connection.settimeout(REPLY_TIMEOUT_S)
        reply = _read_line(connection)
        if "refused" in reply:
            raise ForkRefused(str(reply["refused"]))
    except BaseException:
        for fd in (child_stdin, child_stdout, *mine):
            if fd >= 0:
                os.close(fd)
        connection.close()
        raise
    return ForkedProcess(
        connection, int(reply["pid"]), argv, os.fdopen(stdin, "wb"), os.fdopen(stdout, "rb")
    )


def _read_line(connection: socket.socket) -> dict[str, Any]:
    data = b""
    while b"\n" not in data:
        chunk = connection.recv(4096)
        if not chunk:
            raise ConnectionError("the runner forkserver closed the connection without a reply")
        data += chunk
    message: dict[str, Any] = json.loads(data.split(b"\n", 1)[0])
    return message


@dataclass
class Forkserver:
    """A forkserver process and its lifeline (what ``tests/conftest.py`` starts per session)."""

    socket_path: str
    log_path: str
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls) -> Forkserver:
        """Start one; it accepts requests at once and answers them once it has preloaded."""
        directory = tempfile.mkdtemp(prefix="llmregress-fork-", dir="/tmp")
        socket_path = os.path.join(directory, "forkserver.sock")
        log_path = os.path.join(directory, "forkserver.log")
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env.pop(ENVIRONMENT_VARIABLE, None)
        # The same PYTHONPATH as RunnerProcess gives a runner, so that requests match.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        # Bound here, so that requests can queue up from now on, while it starts and preloads.
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with listener, open(log_path, "wb") as log:
            listener.bind(socket_path)
            listener.listen(64)
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pytest_llmregress.engine.forkserver",
                    str(listener.fileno()),
                ],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
                pass_fds=[listener.fileno()],
            )
        return cls(socket_path, log_path, process)

    def stop(self, timeout: float = 30.0) -> None:
        """Close its lifeline and wait for it; raise if it had stopped on its own before."""
        crashed = self.process.poll()
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        log = Path(self.log_path).read_text(errors="replace")
        if crashed is not None or self.process.returncode != 0:
            raise RuntimeError(
                f"the runner forkserver exited with status {self.process.returncode}:\n{log}"
            )
        shutil.rmtree(os.path.dirname(self.socket_path))


# -- the forkserver's side -------------------------------------------------------------------


@dataclass
class _Request:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    fds: list[int]


@dataclass
class _Child:
    pid: int
    pidfd: int
    connection: socket.socket | None


class _RecordingEnviron(MutableMapping[str, str]):
    """``os.environ`` while preloading: remembers which variables the imports read, and which
    module read each."""

    def __init__(self, environ: MutableMapping[str, str]) -> None:
        self.environ = environ
        self.readers: dict[str, set[str]] = {}
        self.listed = False

    def _note(self, key: str) -> None:
        frame = sys._getframe(1)
        while frame.f_back is not None and frame.f_globals.get("__name__") in _PLUMBING:
            frame = frame.f_back
        self.readers.setdefault(key, set()).add(str(frame.f_globals.get("__name__")))

    def __getitem__(self, key: str) -> str:
        self._note(key)
        return self.environ[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self._note(key)
        return key in self.environ

    def __setitem__(self, key: str, value: str) -> None:
        self.environ[key] = value

    def __delitem__(self, key: str) -> None:
        del self.environ[key]

    def __iter__(self) -> Iterator[str]:
        self.listed = True
        return iter(self.environ)

    def __len__(self) -> int:
        return len(self.environ)

    def copy(self) -> dict[str, str]:
        self.listed = True
        return dict(self.environ)


_PLUMBING = frozenset({__name__, "os", "posixpath", "genericpath", "_collections_abc"})

REDERIVED = {"HOME": frozenset({"sysconfig"})}
"""Variables whose readers while preloading are only these modules, whose derived state the
child computes again from its own environment (``_rederive``): then they may differ."""


def main(argv: list[str] | None = None) -> int:
    """``python -m pytest_llmregress.engine.forkserver FD``: FD is a listening Unix socket
    (``Forkserver.start`` binds it); requests wait in its backlog while the preload runs."""
    listener = socket.socket(fileno=int((argv if argv is not None else sys.argv[1:])[0]))
    server = _Server(listener)
    request = server.serve()
    if request is None:
        return 0
    # A forked child: from here on, the runner process. Like ``python -m``, an exception
    # leaving the program prints its traceback to stderr (the log) and exits with status 1.
    _become(request, server.fresh_path(request))
    return 0


class _Server:
    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.startup_env = dict(os.environ)
        recording = _RecordingEnviron(os.environ)
        real_environ, os.environ = os.environ, recording  # type: ignore[assignment]
        try:
            import importlib

            for name in PRELOAD:
                importlib.import_module(name)
        finally:
            os.environ = real_environ  # noqa: B003 (the same object as before)
        # What the preloaded modules saw must be what a fresh runner would see.
        self.import_time: frozenset[str] | None = None
        if not recording.listed:
            self.import_time = frozenset(
                name
                for name, readers in recording.readers.items()
                if not readers <= REDERIVED.get(name, frozenset()) or _user_site_matters(name)
            )
        self.stdlib_path, self.site_path = _interpreter_path(self.startup_env)
        self.threads_at_start = threading.active_count()
        self.children: dict[int, _Child] = {}  # by pidfd
        self.selector = selectors.DefaultSelector()

    def serve(self) -> _Request | None:
        """Serve until the lifeline (stdin) closes and every child is reaped; returns only in
        a forked child, with its request."""
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(0, selectors.EVENT_READ, "lifeline")
        listening = True
        while listening or self.children:
            for key, _ in self.selector.select():
                if key.data == "accept":
                    request = self._accept()
                    if request is not None:
                        return request
                elif key.data == "lifeline":
                    if not os.read(0, 4096):
                        self.selector.unregister(0)
                        self.selector.unregister(self.listener)
                        self.listener.close()  # its starter removes the socket file
                        listening = False
                elif key.data == "exit":
                    self._reap(key.fd)
                else:
                    self._message(key.data)
        self.selector.close()
        return None

    def _accept(self) -> _Request | None:
        connection, _ = self.listener.accept()
        try:
            request = self._receive(connection)
        except (OSError, ValueError, KeyError, TypeError) as error:
            with contextlib.suppress(OSError):
                message = {"refused": f"bad request: {error}"}
                connection.sendall(json.dumps(message).encode() + b"\n")
            connection.close()
            return None
        problem = self._refusal(request)
        if problem is not None:
            print(f"refused {request.argv[2:]} in {request.cwd}: {problem}", file=sys.stderr)
            for fd in request.fds:
                os.close(fd)
            with contextlib.suppress(OSError):
                connection.sendall(json.dumps({"refused": problem}).encode() + b"\n")
            connection.close()
            return None
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._leave(connection)
            return request
        for fd in request.fds:
            os.close(fd)  # the child's now: the starter sees EOF when the child exits
        pidfd = os.pidfd_open(pid)
        child = _Child(pid, pidfd, connection)
        self.children[pidfd] = child
        self.selector.register(pidfd, selectors.EVENT_READ, "exit")
        self.selector.register(connection, selectors.EVENT_READ, child)
        with contextlib.suppress(OSError):  # a starter gone already: the child's stdin is closed
            connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        return None

    def _receive(self, connection: socket.socket) -> _Request:
        connection.settimeout(REQUEST_TIMEOUT_S)
        data, fds, flags, _ = socket.recv_fds(connection, 65536, 3)
        try:
            if flags & socket.MSG_CTRUNC or len(fds) != 3:
                raise ValueError("expected three file descriptors")
            while b"\n" not in data:
                chunk = connection.recv(65536)
                if not chunk or len(data) > MESSAGE_LIMIT:
                    raise ValueError("incomplete request")
                data += chunk
            message = json.loads(data.split(b"\n", 1)[0])
            return _Request(
                argv=[str(a) for a in message["argv"]],
                env={str(k): str(v) for k, v in message["env"].items()},
                cwd=str(message["cwd"]),
                fds=list(fds),
            )
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise

    def _refusal(self, request: _Request) -> str | None:
        """Why a forked child would not be the process ``Popen`` starts (None: it would)."""
        argv = request.argv
        if len(argv) < 3 or argv[1] != "-m":
            return f"not a 'python -m MODULE' command: {argv}"
        if argv[0] != sys.executable:
            return f"another interpreter: {argv[0]} (this one: {sys.executable})"
        if threading.active_count() != self.threads_at_start or self.threads_at_start != 1:
            return "the forkserver runs threads; a fork would not be safe"
        if self.import_time is None:
            return "the preloaded modules listed the whole environment while importing"
        for name in sorted(set(request.env) | set(self.startup_env)):
            startup = name.startswith(STARTUP_PREFIXES) and name != "PYTHONPATH"
            if (startup or name in self.import_time) and (
                request.env.get(name) != self.startup_env.get(name)
            ):
                return f"${name} differs from the forkserver's, which read it at start-up"
        new = [p for p in _python_path(request) if p not in sys.path]
        loaded = {name.partition(".")[0] for name in sys.modules}
        for directory in dict.fromkeys(new):
            try:
                names = {entry.partition(".")[0] for entry in os.listdir(directory)}
            except OSError:
                continue
            shadowing = sorted(n for n in names & loaded if not _loaded_from(directory, n))
            if shadowing:
                return f"{directory} holds modules already loaded otherwise: {shadowing}"
        return None

    def fresh_path(self, request: _Request) -> list[str]:
        """``sys.path`` as ``python -m`` builds it for this request: its directory and its
        PYTHONPATH, the interpreter's own entries, then what ``site`` adds (.pth files
        included) unless already there."""
        path = [*_python_path(request), *self.stdlib_path]
        known = {os.path.normcase(os.path.abspath(p)) for p in path}
        return path + [p for p in self.site_path if os.path.normcase(p) not in known]

    def _leave(self, connection: socket.socket) -> None:
        """In the child: drop everything of the forkserver's but the preloaded modules."""
        self.selector.close()
        self.listener.close()
        connection.close()
        for child in self.children.values():
            os.close(child.pidfd)
            if child.connection is not None:
                child.connection.close()
        self.children.clear()

    def _message(self, child: _Child) -> None:
        """A starter's message on its connection: a signal for its child, or goodbye."""
        assert child.connection is not None
        try:
            data = child.connection.recv(4096)
        except OSError:
            data = b""
        if not data:  # the starter is gone; the child's lifeline tells it so
            self.selector.unregister(child.connection)
            child.connection.close()
            child.connection = None
            return
        for line in data.splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                os.kill(child.pid, int(json.loads(line)["signal"]))  # not reaped: still its pid

    def _reap(self, pidfd: int) -> None:
        child = self.children.pop(pidfd)
        self.selector.unregister(pidfd)
        _, status = os.waitpid(child.pid, 0)
        os.close(pidfd)
        if child.connection is not None:
            self.selector.unregister(child.connection)
            with contextlib.suppress(OSError):
                message = {"status": os.waitstatus_to_exitcode(status)}
                child.connection.sendall(json.dumps(message).encode() + b"\n")
            child.connection.close()


def _interpreter_path(env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """The entries of ``sys.path`` that the interpreter adds itself and those ``site`` adds,
    without PYTHONPATH (asked of a fresh interpreter once: which ``site`` adds depends on
    what is on ``sys.path`` before it)."""
    probe = "import json, sys; print(json.dumps(sys.path[0 if sys.flags.safe_path else 1 :]))"
    env = {name: value for name, value in env.items() if name != "PYTHONPATH"}
    stdlib, full = (
        json.loads(subprocess.run(command, env=env, capture_output=True, check=True).stdout)
        for command in ([sys.executable, "-S", "-c", probe], [sys.executable, "-c", probe])
    )
    if full[: len(stdlib)] != stdlib:
        raise RuntimeError(f"cannot tell site's entries of sys.path apart: {full}")
    return stdlib, full[len(stdlib) :]


def _python_path(request: _Request) -> list[str]:
    """The head of ``sys.path`` that ``python -m`` builds from this directory and PYTHONPATH."""
    head = [] if request.env.get("PYTHONSAFEPATH") else [request.cwd]
    pythonpath = request.env.get("PYTHONPATH", "")
    for entry in pythonpath.split(os.pathsep) if pythonpath else []:
        head.append(os.path.abspath(os.path.join(request.cwd, entry)))
    return head


def _user_site_matters(name: str) -> bool:
    """HOME also places the user's site-packages on ``sys.path`` (outside a virtual
    environment), as the interpreter starts: then it must not differ."""
    import site

    return name == "HOME" and bool(site.ENABLE_USER_SITE)


def _rederive() -> None:
    """In the child: what ``REDERIVED`` variables fed, from the child's environment."""
    sysconfig = sys.modules.get("sysconfig")
    config_vars = getattr(sysconfig, "_CONFIG_VARS", None)
    if sysconfig is not None and isinstance(config_vars, dict) and "userbase" in config_vars:
        config_vars["userbase"] = sysconfig._getuserbase()


def _loaded_from(directory: str, name: str) -> bool:
    """Whether the loaded top-level module ``name`` was found in ``directory``."""
    location = getattr(sys.modules.get(name), "__file__", None)
    if not location:
        return False  # a namespace package, a built-in: cannot tell
    parent = os.path.dirname(location)
    if os.path.basename(location).startswith("__init__."):
        parent = os.path.dirname(parent)
    same: bool = os.path.realpath(parent) == os.path.realpath(directory)
    return same


def _become(request: _Request, path: list[str]) -> None:
    """In the forked child: become ``python -m MODULE ARGS`` as ``Popen`` would start it."""
    import importlib
    import runpy

    os.setsid()
    for target, fd in enumerate(request.fds):
        os.dup2(fd, target)  # stdin, stdout, stderr (dup2 makes them inheritable, as Popen)
    os.chdir(request.cwd)
    os.environ.clear()
    os.environ.update(request.env)
    _rederive()
    sys.path[:] = path
    importlib.invalidate_caches()
    module = request.argv[2]
    sys.argv = [request.argv[0], *request.argv[3:]]  # argv[0] becomes the module's path
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    raise SystemExit(main())
