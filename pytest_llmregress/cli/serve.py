"""``llmregress serve``: run the local provider server in the foreground.

Lets users (and CI jobs without an API key or network) point the official Anthropic and OpenAI
SDKs, and therefore pytest-llmregress, at a scripted local server. Dispatched by
:mod:`pytest_llmregress.cli`.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import signal
import sys
import threading
from types import FrameType

from pytest_llmregress.testing.scenario import ScenarioError, load_scenario
from pytest_llmregress.testing.server import LocalProviderServer

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
ADMIN_TOKEN_ENV = "LLMREGRESS_ADMIN_TOKEN"

_DESCRIPTION = """\
Run a local HTTP server that speaks both the Anthropic Messages API (POST /v1/messages) and the
OpenAI Chat Completions API (POST /v1/chat/completions), answering from a scenario file.

Without SCENARIO every model id exists and answers a fixed sentence. See docs/local-server.md for
the scenario format (answers, golden files, aliases, drift, latency, injected errors, judge mode).
"""

_EPILOG = """\
examples:
  llmregress serve
  llmregress serve scenario.yaml --port 9000
  llmregress serve scenario.yaml --port 0      # pick a free port

then, in another shell:
  export ANTHROPIC_BASE_URL=http://127.0.0.1:8765
  export OPENAI_BASE_URL=http://127.0.0.1:8765/v1
  export ANTHROPIC_API_KEY=local OPENAI_API_KEY=local   # any value; pytest-llmregress
                                                        # needs none with a base URL set, and
                                                        # a scenario's "server: {auth: none}"
                                                        # takes requests without one

admin routes (/_admin/*) answer only requests with the header
"Authorization: Bearer TOKEN"; the token is new at every start and printed, unless
the environment variable LLMREGRESS_ADMIN_TOKEN sets it:
  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8765/_admin/stats
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``llmregress serve``."""
    parser = argparse.ArgumentParser(
        prog="llmregress serve",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "scenario",
        nargs="?",
        metavar="SCENARIO",
        help="scenario file (YAML or JSON); default: every model answers a fixed sentence",
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to bind (default: {DEFAULT_HOST}; loopback only unless --allow-remote)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"TCP port to listen on, 0 for any free port (default: {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow binding a non-loopback address (the server has no real authentication)",
    )
    return parser


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def main(argv: list[str]) -> int:
    """Run ``llmregress serve`` with ``argv``; returns the process exit code."""
    args = build_parser().parse_args(argv)
    if not _is_loopback(args.host) and not args.allow_remote:
        print(
            f"llmregress serve: refusing to bind non-loopback address {args.host!r}; "
            "pass --allow-remote if you really mean it",
            file=sys.stderr,
        )
        return 2
    if not 0 <= args.port <= 65535:
        print(f"llmregress serve: invalid port {args.port}", file=sys.stderr)
        return 2
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"llmregress serve: {exc}", file=sys.stderr)
        return 2

    server = LocalProviderServer(
        scenario, host=args.host, port=args.port, admin_token=os.environ.get(ADMIN_TOKEN_ENV)
    )
    try:
        server.start()
    except OSError as exc:
        print(f"llmregress serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Ctrl-C (SIGINT) and SIGTERM set the event: no KeyboardInterrupt at an arbitrary point.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        source = args.scenario or "built-in default (every model answers a fixed sentence)"
        print(f"llmregress local provider server listening on {server.url}")
        print(f"  scenario:           {source}")
        print(f"  Anthropic base URL: {server.url}")
        print(f"  OpenAI base URL:    {server.openai_base_url}")
        print("Point the SDKs at it with:")
        print(f"  export ANTHROPIC_BASE_URL={server.url}")
        print(f"  export OPENAI_BASE_URL={server.openai_base_url}")
        print("Admin routes (/_admin/*) need the header:")
        print(f"  Authorization: Bearer {server.admin_token}")
        print("Press Ctrl-C to stop.", flush=True)
        stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
    with contextlib.suppress(OSError):  # stdout may be a pipe whose reader is gone
        print("llmregress serve: stopped", flush=True)
    return 0
