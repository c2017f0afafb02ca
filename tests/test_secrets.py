"""No secret reaches an output: credentials in base URLs and API keys are masked wherever a URL
or the endpoints are shown or stored (header, results, journals, markdown, JUnit XML, preflight
and error messages, the cache, the runner's log tail, ``llmregress models refresh``).

The credentials ride to a real server: a small HTTP proxy that demands them as Basic auth (what
httpx sends for ``http://user:pass@host``) and forwards to the local provider server, so a run
with a credentialed base URL passes end to end and every output can be searched for them.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_llmregress.cli.models import main as models_main
from pytest_llmregress.core.masking import mask_url, mask_urls_in
from pytest_llmregress.engine.runner_process import RunnerAddress
from pytest_llmregress.providers.registry import (
    Endpoints,
    endpoints_from_environment,
    local_server_endpoints,
    parse_model,
)
from pytest_llmregress.testing.server import LocalProviderServer
from tests.conftest import CANDIDATE, JUDGE
from tests.test_plugin_e2e import model_args, qa_cases, scenario, write_cases

MakeServer = Callable[[dict[str, Any]], LocalProviderServer]

USER = "proxyuser7"
PASSWORD = "SECRET-pw-41c9"
QUERY_KEY = "SECRET-qk-88d2"
API_KEY = "sk-SECRET-key-5e0b"
SECRETS = (USER, PASSWORD, QUERY_KEY, API_KEY, "SECRET")


def assert_no_secret(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    for secret in SECRETS:
        assert secret.encode() not in data, f"{secret!r} in {where}"


def assert_no_secret_in_files(root: Path) -> int:
    """Every file under ``root`` (results, journals, markdown, JUnit XML, the cache database
    and its WAL); returns how many were read."""
    count = 0
    for path in root.rglob("*"):
        if path.is_file():
            assert_no_secret(path.read_bytes(), str(path.relative_to(root)))
            count += 1
    return count


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- a proxy that takes its credentials from the base URL ---------------------------------------


class BasicAuthProxy:
    """Forwards every request to ``upstream`` when it carries ``USER:PASSWORD`` as Basic auth,
    with a key the local server accepts; otherwise answers 401. Counts authorized requests."""

    def __init__(self, upstream: LocalProviderServer) -> None:
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        upstream_port = int(upstream.url.rsplit(":", 1)[1])
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("authorization") != expected:
                    self.answer(401, {"content-type": "application/json"}, b'{"error": {}}')
                    return
                with proxy.lock:
                    proxy.authorized += 1
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in ("host", "authorization", "content-length")
                }
                headers["authorization"] = "Bearer from-the-proxy"
                connection = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                try:
                    connection.request(self.command, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    data = response.read()
                    kept = {
                        name: value
                        for name, value in response.getheaders()
                        if name.lower() not in ("transfer-encoding", "connection", "content-length")
                    }
                    self.answer(response.status, kept, data)
                finally:
                    connection.close()

            def answer(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.lock = threading.Lock()
        self.authorized = 0
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "") -> str:
        """The base URL with the credentials in it, as a user would configure it."""
        return f"http://{USER}:{PASSWORD}@127.0.0.1:{self.port}{path}"

    def masked(self, path: str = "") -> str:
        return f"http://***:***@127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def make_proxy() -> Iterator[Callable[[LocalProviderServer], BasicAuthProxy]]:
    proxies: list[BasicAuthProxy] = []

    def make(upstream: LocalProviderServer) -> BasicAuthProxy:
        proxies.append(BasicAuthProxy(upstream))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


# -- mask_url ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("https://api.anthropic.com", "https://api.anthropic.com"),
        ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000/v1/"),
        ("http://user:pass@host:8080/v1", "http://***:***@host:8080/v1"),
        ("http://sk-only-a-name@host/v1", "http://***@host/v1"),
        ("http://u:p%40ss@w@host", "http://***:***@host"),  # an unencoded '@' in the password
        ("http://u:p@[::1]:80/v1", "http://***:***@[::1]:80/v1"),
        (
            "https://gw.example/openai?api-version=2024-10-21&api-key=K1",
            "https://gw.example/openai?api-version=2024-10-21&api-key=***",
        ),
        (
            "https://g.example/v1beta?key=K&alt=sse&access_token=T&X-Api-Key=K2&sig=S",
            "https://g.example/v1beta?key=***&alt=sse&access_token=***&X-Api-Key=***&sig=***",
        ),
        (
            "https://h/v1?subscription-key=K&password=P",
            "https://h/v1?subscription-key=***&password=***",
        ),
        ("https://h/v1?key=&flag", "https://h/v1?key=&flag"),  # nothing to hide
        ("https://h/cb#access_token=T&state=1", "https://h/cb#access_token=***&state=1"),
        ("http://u:p@host?token=T", "http://***:***@host?token=***"),
        ("http://u:p@[::1", "http://***:***@[::1"),  # malformed: masked as far as it reads
        ("user:pass@proxy.internal:3128", "***:***@proxy.internal:3128"),  # no scheme
        ("", ""),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_urls_in_text_masks_every_url_and_nothing_else() -> None:
    text = (
        "anthropic:m at http://u:p@h:1/v1: HTTP 502 server: upstream "
        "'https://a:b@up.internal/v1?api-key=K' refused (see https://status.example/?page=2)\n"
        "at http://h/?key=K: down. At http://u:p@h. user: password: key=K is not a URL"
    )
    assert mask_urls_in(text) == (
        "anthropic:m at http://***:***@h:1/v1: HTTP 502 server: upstream "
        "'https://***:***@up.internal/v1?api-key=***' refused (see https://status.example/?page=2)\n"
        "at http://h/?key=***: down. At http://***:***@h. user: password: key=K is not a URL"
    )


# -- objects that hold keys ----------------------------------------------------------------------


def test_endpoints_show_neither_keys_nor_url_credentials() -> None:
    endpoints = endpoints_from_environment(
        f"http://{USER}:{PASSWORD}@proxy:8080",
        None,
        environ={
            "ANTHROPIC_API_KEY": API_KEY,
            "OPENAI_BASE_URL": f"https://gw.example/v1?api-key={QUERY_KEY}",
        },
    )
    shown = [repr(endpoints), str(endpoints), f"{endpoints}", f"{[endpoints]}"]
    for text in shown:
        assert_no_secret(text, "the endpoints' repr")
    assert repr(endpoints) == (
        "Endpoints(base_urls={'anthropic': 'http://***:***@proxy:8080', "
        "'openai': 'https://gw.example/v1?api-key=***'}, "
        "api_keys={'anthropic': '***', 'openai': None})"
    )
    assert endpoints.describe("anthropic") == "http://***:***@proxy:8080"
    assert endpoints.describe("openai") == "https://gw.example/v1?api-key=***"
    # What the SDK clients get is the real thing.
    assert endpoints.base_urls["anthropic"] == f"http://{USER}:{PASSWORD}@proxy:8080"
    provider = endpoints.build("anthropic", timeout=5)
    assert provider.base_url == f"http://{USER}:{PASSWORD}@proxy:8080"
    assert_no_secret(repr(provider), "a provider's repr")


def test_describe_masks_a_base_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://{USER}:{PASSWORD}@gw:1/v1")
    endpoints = Endpoints(base_urls={}, api_keys={})
    assert endpoints.describe("openai") == "http://***:***@gw:1/v1"


def test_the_runner_log_tail_in_messages_is_masked(tmp_path: Path) -> None:
    log = tmp_path / "runner.log"
    log.write_text(
        "DEBUG:anthropic._base_client:Sending HTTP Request: POST "
        f"http://{USER}:{PASSWORD}@proxy:8080/v1/messages?key={QUERY_KEY}\n"
        "Traceback (most recent call last):\nRuntimeError: boom\n"
    )
    tail = RunnerAddress(str(tmp_path / "runner.sock"), str(log)).log_tail()
    assert_no_secret(tail, "the log tail")
    assert "POST http://***:***@proxy:8080/v1/messages?key=***" in tail
    assert tail.endswith("RuntimeError: boom")


def test_keys_reach_the_runner_on_its_stdin_not_its_command_line(
    make_server: MakeServer, start_runner: Callable[..., Any]
) -> None:
    server = make_server({"models": {"*": {"default_reply": "ok"}}})
    endpoints = Endpoints(
        base_urls={"anthropic": server.url, "openai": f"{server.openai_base_url}?key={QUERY_KEY}"},
        api_keys={"anthropic": API_KEY, "openai": API_KEY},
    )
    process, _ = start_runner(endpoints=endpoints, candidate=parse_model(CANDIDATE))
    assert process.preflight_problems() == {}  # it started with the keys it was sent
    cmdline = Path(f"/proc/{process._process.pid}/cmdline")
    if not cmdline.exists():
        pytest.skip("no /proc on this system")
    assert_no_secret(cmdline.read_bytes(), "the runner's command line (ps)")


# -- end to end ----------------------------------------------------------------------------------


def test_a_run_through_a_credentialed_base_url_shows_and_stores_no_secret(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    make_proxy: Callable[[LocalProviderServer], BasicAuthProxy],
    keys: None,
    monkeypatch: pytest.MonkeyPatch,
    run_mode: list[str],
) -> None:
    cases = qa_cases(4)
    write_cases(pytester, "qa.jsonl", cases)
    proxy = make_proxy(make_server(scenario(cases)))
    monkeypatch.setenv("OPENAI_BASE_URL", proxy.url("/v1"))  # the judge's, from the environment

    result = pytester.runpytest(
        *model_args(
            f"--llm-anthropic-base-url={proxy.url()}",  # the candidate's, on the command line
            "--llm-report=out/results.json",
            "--llm-markdown=out/summary.md",
            "--llm-cache=record",
            "--junitxml=out/junit.xml",
        ),
        *run_mode,
    )

    result.assert_outcomes(passed=4)
    assert proxy.authorized >= 8  # candidate and judge calls went through with the credentials
    # (Plain substrings: in a glob pattern '***' would match the secret too.)
    out = result.stdout.str()
    assert f"llmregress: model anthropic:{CANDIDATE} at {proxy.masked()}, judge" in out
    assert f" --llm-anthropic-base-url={proxy.masked()}" in out
    assert_no_secret(result.stdout.str(), "stdout")
    assert_no_secret(result.stderr.str(), "stderr")
    metadata = json.loads((pytester.path / "out/results.json").read_text())["metadata"]
    assert metadata["base_urls"] == {
        "anthropic": proxy.masked(),
        "openai": proxy.masked("/v1"),
    }
    assert list((pytester.path / ".llmregress/cache").glob("*.sqlite3"))
    assert assert_no_secret_in_files(pytester.path) >= 5


def test_a_failing_preflight_names_the_masked_url(
    pytester: pytest.Pytester,
    make_server: MakeServer,
    make_proxy: Callable[[LocalProviderServer], BasicAuthProxy],
    keys: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cases = qa_cases(2)
    write_cases(pytester, "qa.jsonl", cases)
    proxy = make_proxy(make_server(scenario(cases)))
    monkeypatch.setenv("ANTHROPIC_BASE_URL", proxy.url())
    monkeypatch.setenv("OPENAI_BASE_URL", proxy.url("/v1"))

    result = pytester.runpytest("--llm-model=claude-unknown-9", f"--llm-judge-model={JUDGE}")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*preflight: no case was run, because these models are not available:"]
    )
    assert f"\n  anthropic:claude-unknown-9 at {proxy.masked()}: " in result.stderr.str()
    assert_no_secret(result.stdout.str() + result.stderr.str(), "the output")
    assert_no_secret_in_files(pytester.path)


def test_an_unreachable_host_is_named_masked(
    pytester: pytest.Pytester, keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_cases(pytester, "qa.jsonl", qa_cases(2))
    port = closed_port()
    url = f"http://{USER}:{PASSWORD}@127.0.0.1:{port}?api-key={QUERY_KEY}"
    masked = f"http://***:***@127.0.0.1:{port}?api-key=***"
    monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
    monkeypatch.setenv("OPENAI_BASE_URL", url)

    result = pytester.runpytest(*model_args("--llm-retries=0"))

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"\n  anthropic:{CANDIDATE} at {masked}: " in result.stderr.str()
    result.stderr.fnmatch_lines(["*connection failed*"])
    assert_no_secret(result.stdout.str() + result.stderr.str(), "the output")

    # Without the preflight every case is a connection error, each written down.
    result = pytester.runpytest(
        *model_args(
            "--llm-retries=0",
            "--llm-preflight=off",
            "--llm-report=results.json",
            "--llm-markdown=summary.md",
            "--junitxml=junit.xml",
        )
    )

    result.assert_outcomes(errors=2)
    assert f"llmregress: model anthropic:{CANDIDATE} at {masked}, " in result.stdout.str()
    assert_no_secret(result.stdout.str() + result.stderr.str(), "the output")
    assert assert_no_secret_in_files(pytester.path) >= 4


def test_a_url_in_a_provider_error_message_is_masked(
    pytester: pytest.Pytester, make_server: MakeServer, keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gateway that names its upstream, credentials and all, in an error body."""
    cases = qa_cases(1)
    write_cases(pytester, "qa.jsonl", cases)
    upstream = f"https://{USER}:{PASSWORD}@10.1.2.3:8443/v1?key={QUERY_KEY}"
    broken = scenario(cases)
    broken["models"][CANDIDATE]["errors"] = [{"status": 502, "message": f"{upstream} refused"}]
    server = make_server(broken)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)
    pytester.makepyfile(
        test_fixture="""
        def test_llm_fixture_call(llm):
            llm.complete(user="hello")
        """
    )

    result = pytester.runpytest(*model_args("--llm-retries=0", "--llm-report=results.json"))

    result.assert_outcomes(errors=2)  # a failed call of the llm fixture is an error too
    result.stdout.fnmatch_lines(["*model call failed: anthropic:*HTTP 502 server*"])
    assert "https://***:***@10.1.2.3:8443/v1?key=*** refused" in result.stdout.str()
    assert_no_secret(result.stdout.str() + result.stderr.str(), "the output")
    assert_no_secret_in_files(pytester.path)


def test_models_refresh_through_a_credentialed_url_writes_no_secret(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make_server: MakeServer,
    make_proxy: Callable[[LocalProviderServer], BasicAuthProxy],
    keys: None,
) -> None:
    proxy = make_proxy(
        make_server({"models": {"gpt-5.5-2026-04-23": {"retires_on": "2027-01-10"}}})
    )
    out_path = tmp_path / "openai-lifecycle.toml"

    code = models_main(["refresh", "--openai-base-url", proxy.url("/v1"), "-o", str(out_path)])
    assert code == 0
    assert models_main(["refresh", "--openai-base-url", proxy.url("/v1")]) == 0
    code = models_main(
        ["refresh", "--openai-base-url", proxy.url(f"/v1?key={QUERY_KEY}"), "--api-key", "k"]
    )

    assert code == 1  # the SDK cannot use a base URL with a query
    assert proxy.authorized == 3
    captured = capsys.readouterr()
    assert_no_secret(captured.out + captured.err, "the output")
    written = out_path.read_text()
    assert_no_secret(written, str(out_path))
    assert f"GET {proxy.masked('/v1')}/models" in written


def test_local_server_endpoints_stay_readable() -> None:
    """The local server's URLs carry no credentials: shown as they are."""
    endpoints = local_server_endpoints("http://127.0.0.1:8765/")
    assert endpoints.describe("openai") == "http://127.0.0.1:8765/v1"
    assert "llmregress-local" not in repr(endpoints)


def test_a_fallback_chain_in_application_code_masks_urls_in_its_errors(
    make_server: MakeServer,
) -> None:
    """``FallbackChain`` calls the providers without the runner: the provider layer masks."""
    from pytest_llmregress.providers.base import ChatMessage, ProviderError, Request
    from pytest_llmregress.providers.retries import RetryPolicy
    from pytest_llmregress.runtime.fallback import FallbackChain

    upstream = f"https://{USER}:{PASSWORD}@10.1.2.3:8443/v1?key={QUERY_KEY}"
    server = make_server(
        {"models": {"m": {"errors": [{"status": 400, "message": f"{upstream} refused"}]}}}
    )
    chain = FallbackChain(
        ["anthropic:m"],
        local_server_endpoints(server.url),
        timeout=5.0,
        retry_policy=RetryPolicy(retries=0),
    )
    with pytest.raises(ProviderError) as info:
        chain.complete(Request(model="m", messages=(ChatMessage("user", "hi"),)))
    assert "https://***:***@10.1.2.3:8443/v1?key=*** refused" in str(info.value)
    assert_no_secret(str(info.value), "the chain's error")
