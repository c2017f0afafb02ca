"""A real OpenAI-compatible server for the tests: Hugging Face ``transformers serve``.

``TransformersServer`` starts ``transformers serve`` on CPU on a free port, in a process group
of its own, working in the folder that holds the models, so a model is named by its folder
(``llmregress-tiny-v1``) and the server answers with that name. It is ready when
``GET /health`` answers 200 (polled, with a generous deadline for a loaded machine); ``warm``
loads models by asking each one for a token. It logs at debug level with request logging on,
so its log holds the body of every chat request it received: ``requests()`` reads them back,
the server's own account of what it was asked.

``ask`` is a plain HTTP client (standard library only) for what the tests check against the
plugin: what a model answers, and under which model name.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

READY_TIMEOUT = 300.0  # seconds: importing torch and transformers on a busy 2-core machine
REQUEST_TIMEOUT = 300.0  # seconds: a model's first request loads it in a process of its own
_BODY_MARK = " body: "


class ServerError(RuntimeError):
    """The server did not start, or stopped; the message holds the end of its log."""


class PortTaken(ServerError):
    """Another process took the port between its choice and the server's start."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def transformers_command() -> list[str]:
    """``transformers`` of this interpreter's environment, as its console script runs it."""
    return [sys.executable, "-c", "from transformers.cli.transformers import main; main()"]


@dataclass(frozen=True)
class Answer:
    text: str
    model: str  # the ``model`` field the server answered with
    request_id: str | None


def ask(
    base_url: str,
    model: str,
    question: str,
    *,
    api_key: str = "sk-no-key",
    max_tokens: int = 48,
    timeout: float = REQUEST_TIMEOUT,
) -> Answer:
    """One greedy chat completion, straight over HTTP, as the golden cases ask it."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "temperature": 0,
        "max_completion_tokens": max_tokens,
    }
    request = urllib.request.Request(
        base_url.rstrip("/") + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {api_key}"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        data = json.load(response)
        request_id = response.headers.get("x-request-id")
    return Answer(data["choices"][0]["message"]["content"] or "", data["model"], request_id)


class TransformersServer:
    """``transformers serve`` over the models in ``models_dir``; ``start``, ``stop``, ``kill``."""

    def __init__(self, models_dir: Path, log_path: Path, port: int | None = None) -> None:
        self.models_dir = models_dir
        self.log_path = log_path
        self.port = port or free_port()
        self._port_fixed = port is not None  # a port given, or one a start has used
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What ``--llm-openai-base-url`` takes."""
        return self.url + "/v1"

    def start(self) -> TransformersServer:
        """Start the server (again, on the same port, after ``stop`` or ``kill``) and wait
        until it answers ``GET /health``. A free port taken by another process meanwhile is
        replaced by another, at the first start only: a restart keeps its URL."""
        for _ in range(3):
            try:
                return self._start()
            except PortTaken:
                if self._port_fixed:
                    raise
                self.port = free_port()
        return self._start()

    def _start(self) -> TransformersServer:
        command = [
            *transformers_command(),
            "serve",
            "--host=127.0.0.1",
            f"--port={self.port}",
            "--device=cpu",
            "--model-timeout=-1",  # loaded models stay loaded for the whole session
            "--log-level=debug",
            "--enable-log-requests",  # with debug: every request's body in the log
        ]
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",  # nothing is downloaded: the models are local folders
            "HF_HOME": str(self.log_path.parent / "hf-home"),  # an empty cache, listed as such
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",  # a tiny model: more threads only wait on each other
            "PYTHONUNBUFFERED": "1",
        }
        started = time.perf_counter()
        with self.log_path.open("ab") as log:
            log_start = log.tell()
            self.process = subprocess.Popen(
                command,
                cwd=self.models_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its model processes share its group: one signal stops all
            )
        try:
            self._wait_healthy(started + READY_TIMEOUT)
        except ServerError:
            self.kill()
            with self.log_path.open("rb") as log:
                log.seek(log_start)
                if b"address already in use" in log.read():
                    raise PortTaken(self.port) from None
            raise
        except BaseException:
            self.kill()
            raise
        self.ready_seconds = time.perf_counter() - started
        self._port_fixed = True
        return self

    def _wait_healthy(self, deadline: float) -> None:
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise ServerError(
                    f"transformers serve exited with status {self.process.returncode} before "
                    f"it was ready:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.perf_counter() > deadline:
                raise ServerError(
                    f"transformers serve did not answer GET /health within {READY_TIMEOUT:.0f} "
                    f"s:\n{self.log_tail()}"
                )
            time.sleep(0.1)  # the next poll of the readiness condition

    def warm(self, *models: str) -> float:
        """Load ``models``, all at once (a token from each); the seconds it took."""
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(models) or 1) as pool:
            list(pool.map(lambda model: ask(self.base_url, model, "Hi", max_tokens=1), models))
        return time.perf_counter() - started

    def kill(self) -> None:
        """Kill the server and its model processes at once (SIGKILL to its group): a crash."""
        self._end(graceful=False)

    def stop(self) -> None:
        """Stop the server cleanly: SIGTERM, as Ctrl-C would, then SIGKILL for what is left."""
        self._end(graceful=True)

    def _end(self, *, graceful: bool) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if graceful and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            self._wait_unreaped(process, timeout=30)
        # Until it is reaped the leader's id is its group's, even after it exited, so the
        # signal reaches this server's model processes and nothing else.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)

    @staticmethod
    def _wait_unreaped(process: subprocess.Popen[bytes], timeout: float) -> None:
        """Wait until ``process`` exits, leaving it unreaped (``WNOWAIT``); at most ``timeout``."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            if os.waitid(os.P_PID, process.pid, flags) is not None:
                return
            time.sleep(0.05)  # the next poll of the exit

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def requests(self) -> list[dict[str, Any]]:
        """The body of every chat request the server logged, in order (all its runs)."""
        bodies = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            head, mark, body = line.partition(_BODY_MARK)
            if mark and "Request " in head:
                with contextlib.suppress(ValueError):
                    bodies.append(json.loads(body))
        return bodies

    def __enter__(self) -> TransformersServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
