"""The real server of ``tests/realserver``: models trained and a server started once per session.

By default two tiny models are trained on the spot (``models.py``) and served by Hugging Face
``transformers serve`` (``server.py``). With ``LLMREGRESS_REAL_SERVER_URL`` (an OpenAI base URL,
``.../v1``) and ``LLMREGRESS_REAL_MODEL_V1`` / ``LLMREGRESS_REAL_MODEL_V2`` the tests run
against that server instead, and nothing is trained or started (``docs/self-hosted.md``).

Without the ``realserver`` extra (torch, transformers) the tests skip, saying why, unless
``LLMREGRESS_REQUIRE_REAL_SERVER=1`` (set by ``.ci/run``): then they fail.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .models import CORPUS, MAX_TOKENS, MadeModel
from .server import TransformersServer, ask

URL_ENV = "LLMREGRESS_REAL_SERVER_URL"
MODEL_ENVS = ("LLMREGRESS_REAL_MODEL_V1", "LLMREGRESS_REAL_MODEL_V2")
REQUIRE_ENV = "LLMREGRESS_REQUIRE_REAL_SERVER"
LOCAL_V1 = "llmregress-tiny-v1"
LOCAL_V2 = "llmregress-tiny-v2"
NO_KEY = "sk-no-key-needed"
# What the session's setup took, printed at the end of the run (pytest_terminal_summary).
TIMINGS: dict[str, float] = {}


@dataclass
class RealServer:
    """Where the tests send their calls, and what each model answers when asked directly."""

    base_url: str  # what --llm-openai-base-url takes
    v1: str  # model ids as the server names them (without the openai: prefix)
    v2: str
    api_key: str
    local: TransformersServer | None  # None: a server given by environment variables
    models: tuple[MadeModel, MadeModel] | None = None
    # model -> case id -> (answer, the model field it came with), asked straight over HTTP
    direct: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)

    @property
    def models_dir(self) -> Path:
        assert self.models is not None
        return self.models[0].path.parent

    def answer(self, model: str, case_id: str) -> str:
        return self.direct[model][case_id][0]

    @property
    def regressed(self) -> set[str]:
        """The cases whose v2 answer differs from v1's: those v2 must fail."""
        return {
            case_id
            for case_id, _, _ in CORPUS
            if self.answer(self.v2, case_id) != self.answer(self.v1, case_id)
        }


def unavailable(reason: str) -> None:
    """Skip, or fail when the real-server tests are required."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but the real-server tests cannot run: {reason}")
    pytest.skip(reason)


def external_server() -> tuple[str, str, str] | None:
    """(base URL, v1, v2) from the environment, or None to train and serve locally."""
    url = os.environ.get(URL_ENV)
    if not url:
        return None
    v1, v2 = (os.environ.get(name, "") for name in MODEL_ENVS)
    if not (v1 and v2):
        pytest.fail(f"{URL_ENV} is set: set {' and '.join(MODEL_ENVS)} too")
    return url.rstrip("/"), v1, v2


def _require_local_stack() -> None:
    wanted = ("torch", "transformers", "tokenizers", "fastapi", "uvicorn")
    missing = [name for name in wanted if importlib.util.find_spec(name) is None]
    if missing:
        unavailable(
            f"{', '.join(missing)} not installed: pip install -e '.[realserver]' "
            f"(or set {URL_ENV} to test another server)"
        )


@pytest.fixture(scope="session")
def real_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[MadeModel, MadeModel]:
    """Both tiny models, trained once per session."""
    _require_local_stack()
    from .models import make_models

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")  # nothing may be downloaded, here either
        return make_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def real_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealServer]:
    """The server the session's tests share, both models loaded, and their direct answers."""
    given = external_server()
    server: TransformersServer | None = None
    timings: dict[str, float] = {}
    if given is None:
        started = time.perf_counter()
        models: tuple[MadeModel, MadeModel] = request.getfixturevalue("real_models")
        timings["models"] = time.perf_counter() - started
        for made in models:
            timings[f"train_v{made.version}"] = made.train_seconds
        server = TransformersServer(
            models[0].path.parent, tmp_path_factory.mktemp("server") / "serve.log"
        )
        real = RealServer(server.base_url, LOCAL_V1, LOCAL_V2, NO_KEY, server, models)
    else:
        url, v1, v2 = given
        real = RealServer(url, v1, v2, os.environ.get("OPENAI_API_KEY") or NO_KEY, None)
    try:
        if server is not None:
            server.start()
            timings["server_start"] = server.ready_seconds or 0.0
            timings["warm"] = server.warm(real.v1, real.v2)
        started = time.perf_counter()
        for model in (real.v1, real.v2):
            real.direct[model] = {}
            for case_id, question, _ in CORPUS:
                answer = ask(
                    real.base_url, model, question, api_key=real.api_key, max_tokens=MAX_TOKENS
                )
                real.direct[model][case_id] = (answer.text, answer.model)
        timings["direct_answers"] = time.perf_counter() - started
        TIMINGS.update(timings)
        yield real
    finally:
        if server is not None:
            server.stop()


@pytest.fixture
def local_models(real_server: RealServer) -> tuple[MadeModel, MadeModel]:
    """The trained models, for tests that start servers of their own (local mode only)."""
    if real_server.models is None:
        pytest.skip(f"{URL_ENV} is set: this test starts and stops a server of its own")
    return real_server.models


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in TIMINGS.items())
        terminalreporter.write_line(f"real server setup: {parts}")
