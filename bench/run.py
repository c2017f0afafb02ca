"""Benchmarks of pytest-llmregress against the local provider server.

One command: ``python bench/run.py`` (``--quick`` for a smaller run). It writes the figures
to ``docs/benchmarks.md``. Every timing is a whole command, start-up included, measured as
wall-clock time of a subprocess; the server runs in its own process.

What it measures:
- the practical floor: a plain asyncio script over the SDKs' async clients making the same
  calls (candidate, then judge) with the same concurrency budgets, against the same server;
- the pytest command in one process and with ``-n 2``, and the peak number of calls in flight
  the server saw (it must never exceed the budgets the user set);
- plugin overhead with zero latency (cases per second, CPU seconds per case) and peak memory
  at 5,000 cases;
- collection time for 10,000 cases.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CANDIDATE = "claude-sonnet-4-6"
JUDGE = "gpt-5.5-2026-04-23"

FLOOR_SCRIPT = r"""
import asyncio, json, sys, time
import anthropic, openai
from pytest_llmregress.scoring.judge import build_judge_prompt

url, cases_path, concurrency, judge_concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cases = [json.loads(line) for line in open(cases_path)]

async def main():
    a = anthropic.AsyncAnthropic(api_key="x", base_url=url, max_retries=0)
    o = openai.AsyncOpenAI(api_key="x", base_url=url + "/v1", max_retries=0)
    cand, judge = asyncio.Semaphore(concurrency), asyncio.Semaphore(judge_concurrency)
    async def one(case):
        async with cand:
            m = await a.messages.create(model=sys.argv[5], max_tokens=1024, system=case["system"],
                                        messages=[{"role": "user", "content": case["user"]}])
        text = m.content[0].text
        # The plugin's own judge request (prompt and structured output), so the server does
        # the same work for both.
        prompt = build_judge_prompt(task=case["user"], reference=case["reference"], candidate=text)
        schema = {"name": prompt.reply_schema.name, "strict": True,
                  "schema": dict(prompt.reply_schema.schema)}
        async with judge:
            r = await o.chat.completions.create(model=sys.argv[6], messages=[
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": prompt.user}],
                response_format={"type": "json_schema", "json_schema": schema})
        json.loads(r.choices[0].message.content)
    started = time.perf_counter()
    await asyncio.gather(*(one(c) for c in cases))
    print(time.perf_counter() - started)
    await a.close(); await o.close()

asyncio.run(main())
"""

LOOP_TIMER = r"""
# A pytest plugin for the benchmark: how long pytest's run loop takes, from the first item's
# set-up (after the preflight) to the last report; appended to $BENCH_LOOP_FILE.
import os, time
_first = _last = None

def pytest_runtest_setup(item):
    global _first
    if _first is None:
        _first = time.perf_counter()

def pytest_runtest_logreport(report):
    global _last
    _last = time.perf_counter()

def pytest_sessionfinish(session):
    if _first is not None and _last is not None:
        with open(os.environ["BENCH_LOOP_FILE"], "a") as handle:
            handle.write(f"{_last - _first}\n")
"""

MEASURE = r"""
import resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
wall = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(code, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)
"""


@dataclass
class Measured:
    exit_code: int
    wall_s: float
    cpu_s: float
    max_rss_mb: float


REPEAT = 3  # every figure is the median of this many runs (the machine is noisy)


def run_once(command: list[str], cwd: Path) -> Measured:
    """Run a command in a fresh process: its wall time, CPU time and peak memory."""
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, *command],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return Measured(int(out[0]), float(out[1]), float(out[2]), int(out[3]) / 1024)


def median(runs: list[Measured]) -> Measured:
    return sorted(runs, key=lambda run: run.wall_s)[len(runs) // 2]


def measure(command: list[str], cwd: Path) -> Measured:
    """The median of REPEAT runs of one command."""
    return median([run_once(command, cwd) for _ in range(REPEAT)])


def measure_interleaved(
    commands: dict[str, list[str]], cwd: Path, after_each: Any = None
) -> dict[str, Measured]:
    """The median of REPEAT runs of each command, run in turn (a, b, c, a, b, c, ...), so that
    a change in the machine's load falls on every command alike, the baseline included."""
    runs: dict[str, list[Measured]] = {name: [] for name in commands}
    for _ in range(REPEAT):
        for name, command in commands.items():
            runs[name].append(run_once(command, cwd))
            if after_each is not None:
                after_each(name)
    return {name: median(measured) for name, measured in runs.items()}


def write_cases(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bench.jsonl"
    with path.open("w") as handle:
        for i in range(count):
            case = {
                "id": f"case-{i:05d}",
                "system": "Answer in one sentence.",
                "user": f"Question {i}: what is {i} times 7?",
                "reference": f"{i} times 7 is {i * 7}.",
            }
            handle.write(json.dumps(case) + "\n")
    return path


class Server:
    """The local provider server in its own process, driven over its admin endpoints."""

    def __init__(
        self,
        workdir: Path,
        latency_ms: int,
        cases: Path,
        rate_limited: float = 0.0,
        requests_per_second: float | None = None,
    ) -> None:
        """``rate_limited``: the share of requests answered 429 with ``retry-after: 1``, at
        random; ``requests_per_second``: a real rate limit per model (a token bucket)."""
        limits: dict[str, Any] = {}
        if rate_limited:
            limits["errors"] = [{"status": 429, "share": rate_limited, "retry_after": 1}]
        if requests_per_second:
            limits["rate_limit"] = {"requests_per_second": requests_per_second, "burst": 8}
        scenario = {
            "latency_ms": latency_ms,
            "models": {
                CANDIDATE: {"answers_from": [str(cases)], **limits},
                JUDGE: {"judge": True, **limits},
            },
        }
        path = workdir / f"scenario-{latency_ms}-{rate_limited}-{requests_per_second}.json"
        path.write_text(json.dumps(scenario))
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.admin = {"Authorization": f"Bearer {secrets.token_urlsafe(24)}"}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest_llmregress.cli",
                "serve",
                str(path),
                "--port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "LLMREGRESS_ADMIN_TOKEN": self.admin["Authorization"][7:]},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.stats()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the local provider server did not start")

    def stats(self) -> dict[str, int]:
        request = urllib.request.Request(self.url + "/_admin/stats", headers=self.admin)
        with urllib.request.urlopen(request, timeout=5) as response:
            data: dict[str, int] = json.load(response)
            return data

    def reset(self) -> None:
        request = urllib.request.Request(
            self.url + "/_admin/reset", data=b"{}", method="POST", headers=self.admin
        )
        urllib.request.urlopen(request, timeout=5).close()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pytest_command(server: Server, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "golden_cases",
        f"--llm-model={CANDIDATE}", f"--llm-judge-model={JUDGE}",
        f"--llm-anthropic-base-url={server.url}", f"--llm-openai-base-url={server.url}/v1",
        "--llm-judge-cache=off", *extra,
    ]  # fmt: skip


RATE_LIMITED = 0.15  # the share of requests answered 429 with retry-after: 1, at random
RATE_LIMIT = 50.0  # requests per second per model: a real limit (a token bucket of 8)


def rate_limit_rows(
    work: Path, cases: Path, n: int, budgets: list[str], notes: list[str]
) -> list[tuple[str, str]]:
    """What rate limits cost: one run against a clean server, one whose 429s fall at random,
    one with a real limit (in turn, like the other comparisons)."""
    servers = {
        "clean": Server(work, 200, cases),
        "random": Server(work, 200, cases, rate_limited=RATE_LIMITED),
        "bucket": Server(work, 200, cases, requests_per_second=RATE_LIMIT),
    }
    rejected: dict[str, list[int]] = {name: [] for name in servers}
    try:

        def count_429s(name: str) -> None:
            rejected[name].append(servers[name].stats()["by_status"].get("429", 0))
            servers[name].reset()

        measured = measure_interleaved(
            {name: pytest_command(server, *budgets) for name, server in servers.items()},
            work,
            count_429s,
        )
    finally:
        for server in servers.values():
            server.stop()
    clean, random_, bucket = (measured[name] for name in ("clean", "random", "bucket"))
    floor = n / RATE_LIMIT  # each model's requests at the limit, back to back

    def rejections(name: str) -> str:
        return f"{min(rejected[name])}-{max(rejected[name])} rejections per run"

    notes.append(
        f"Rate limits (issue 12): every case must be scored however the server pushes back "
        f"(exit 0 is the default gate, which allows no error). Against a real limit (a token "
        f"bucket of {RATE_LIMIT:g} requests per second per model, the 429's `retry-after` the "
        f"time until the next token) the run takes {bucket.wall_s / floor:.2f}x the time the "
        f"limit itself allows ({floor:.0f} s for {n} requests per model). With "
        f"{RATE_LIMITED:.0%} of requests rejected *at random* with `retry-after: 1`, each "
        f"rejected call waits out 1 to 1.25 s holding its slot, and each fresh rejection halves "
        f"the budget and holds new calls back for 1 s. Against a real limit, where every "
        f"request fails until the named time, backing off costs nothing; against rejections "
        f"that do not follow the load, as here, it is the price of never erroring."
    )
    return [
        (
            f"**rate limits**: {n} cases at 200 ms, no limit",
            f"{clean.wall_s:.2f} s (exit {clean.exit_code})",
        ),
        (
            f"real limit, {RATE_LIMIT:g} requests/s per model ({rejections('bucket')})",
            f"{bucket.wall_s:.2f} s (exit {bucket.exit_code}) = {bucket.wall_s / floor:.2f}x "
            f"the limit's own {floor:.0f} s",
        ),
        (
            f"{RATE_LIMITED:.0%} of requests answered 429 at random, retry-after 1 s "
            f"({rejections('random')})",
            f"{random_.wall_s:.2f} s (exit {random_.exit_code}) = "
            f"{random_.wall_s / clean.wall_s:.2f}x the run without limits",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller N, for a smoke run")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args(argv)
    n = 100 if args.quick else 500
    n_overhead = 200 if args.quick else 1000
    n_memory = 1000 if args.quick else 5000
    n_collect = 2000 if args.quick else 10000
    concurrency = 32
    os.environ.update(ANTHROPIC_API_KEY="bench", OPENAI_API_KEY="bench")
    rows: list[tuple[str, str]] = []
    notes: list[str] = []
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cases = write_cases(work / "golden_cases", n)
        (work / "bench_loop_timer.py").write_text(LOOP_TIMER)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(work), os.environ.get("PYTHONPATH")])
        )
        budgets = [f"--llm-concurrency={concurrency}", f"--llm-judge-concurrency={concurrency}"]
        rows.append(
            ("N cases, budgets", f"{n}, {concurrency} candidate + {concurrency} judge calls")
        )
        for latency_ms in (200, 1000):
            latency = latency_ms / 1000
            server = Server(work, latency_ms, cases)
            try:
                floor_cmd = [sys.executable, "-c", FLOOR_SCRIPT, server.url, str(cases),
                             str(concurrency), str(concurrency), CANDIDATE, JUDGE]  # fmt: skip
                loop_only = float(
                    subprocess.run(
                        floor_cmd, cwd=work, capture_output=True, text=True, check=True
                    ).stdout
                )
                server.reset()
                loop_file = work / f"loop-{latency_ms}.txt"
                os.environ["BENCH_LOOP_FILE"] = str(loop_file)
                peaks: dict[str, int] = {}

                def note_peak(
                    name: str, server: Server = server, peaks: dict[str, int] = peaks
                ) -> None:
                    peaks[name] = max(peaks.get(name, 0), server.stats()["max_in_flight"])
                    server.reset()

                measured = measure_interleaved(
                    {
                        "script": floor_cmd,
                        "single": pytest_command(server, *budgets, "-p", "bench_loop_timer"),
                        "double": pytest_command(server, *budgets, "-n", "2"),
                    },
                    work,
                    note_peak,
                )
                floor, single, double = (measured[k] for k in ("script", "single", "double"))
                pytest_loop = sorted(map(float, loop_file.read_text().split()))[REPEAT // 2]
                single_peak, double_peak = peaks["single"], peaks["double"]
            finally:
                server.stop()
            pipelined = n * latency / concurrency + latency
            rows += [
                (f"**latency {latency_ms} ms per call**: N x 2L / C (pipelined: N x L / C + L)", f"{n * 2 * latency / concurrency:.2f} s ({pipelined:.2f} s)"),
                ("plain asyncio script, whole process", f"{floor.wall_s:.2f} s (its loop alone {loop_only:.2f} s)"),
                ("pytest, one process, whole command", f"{single.wall_s:.2f} s = {single.wall_s / floor.wall_s:.2f}x the script, {single.wall_s / loop_only:.2f}x its loop (exit {single.exit_code})"),
                ("pytest, one process, its run loop alone (first item to last report)", f"{pytest_loop:.2f} s = {pytest_loop / loop_only:.2f}x the script's loop"),
                ("pytest -n 2, whole command", f"{double.wall_s:.2f} s = {double.wall_s / floor.wall_s:.2f}x the script, {double.wall_s / loop_only:.2f}x its loop (exit {double.exit_code})"),
                ("peak calls in flight, one process / -n 2 (budget 64)", f"{single_peak} / {double_peak}"),
            ]  # fmt: skip
            if latency_ms == 200:
                one, two = single.wall_s / floor.wall_s, double.wall_s / floor.wall_s
                notes.append(
                    f"Targets at 200 ms (issue 3): the whole pytest command within 1.1x of the "
                    f"plain asyncio script in one process ({one:.2f}x: "
                    f"{'met' if one <= 1.1 else 'not met'}) and within 1.3x with `-n 2` "
                    f"({two:.2f}x: {'met' if two <= 1.3 else 'not met'}). Both sides are whole "
                    f"commands: a loop timed without its interpreter start-up and SDK imports "
                    f"(about 2 s here) cannot be compared with a command timed with them, so the "
                    f"loops are compared alone on their own row (pytest's run loop, first item to "
                    f"last report: {pytest_loop / loop_only:.2f}x the script's loop)."
                )
                notes.append(
                    f"Reading the figures: at 200 ms the script's event loop alone needs "
                    f"{loop_only:.2f} s where latency alone would allow {pipelined:.2f} s, so the "
                    f"work is bound by CPU as much as by the network: each SDK call costs "
                    f"milliseconds of CPU, on {os.cpu_count()} cores shared with the server "
                    f"process. The plugin's calls run in a runner process of their own, which "
                    f"imports the SDKs while pytest starts and collects, and sends requests "
                    f"through the SDK clients without their parameter transform and response "
                    f"models; pytest's per-item work runs on the other core. Under `-n 2` the "
                    f"workers share that one runner (the SDKs are imported once). At 1,000 ms per "
                    f"call the network dominates and the ratios show the design itself."
                )

        rows += rate_limit_rows(work, cases, n, budgets, notes)

        cases = write_cases(work / "golden_cases", n_overhead)
        server = Server(work, 0, cases)
        try:
            zero = measure(
                pytest_command(server, "--llm-concurrency=16", "--llm-judge-concurrency=16"), work
            )
            script = measure(
                [
                    sys.executable,
                    "-c",
                    FLOOR_SCRIPT,
                    server.url,
                    str(cases),
                    "16",
                    "16",
                    CANDIDATE,
                    JUDGE,
                ],
                work,
            )
            overhead = (zero.cpu_s - script.cpu_s) / n_overhead * 1000
            rows += [
                (
                    f"zero latency, {n_overhead} cases, plain asyncio script",
                    f"{n_overhead / script.wall_s:.0f} cases/s, {script.cpu_s / n_overhead * 1000:.2f} ms CPU per case",
                ),
                (
                    f"zero latency, {n_overhead} cases, pytest, one process",
                    f"{n_overhead / zero.wall_s:.0f} cases/s, {zero.cpu_s / n_overhead * 1000:.2f} ms "
                    f"CPU per case (client side, server excluded), peak {zero.max_rss_mb:.0f} MB; "
                    f"plugin and pytest overhead {overhead:.2f} ms CPU per case",
                ),
            ]
            cases = write_cases(work / "golden_cases", n_memory)
            server.stop()
            server = Server(work, 0, cases)
            big = measure(
                pytest_command(server, "--llm-concurrency=16", "--llm-report=results.json"), work
            )
            rows.append(
                (
                    f"zero latency, {n_memory} cases, one process, with --llm-report",
                    f"{n_memory / big.wall_s:.0f} cases/s, {big.cpu_s / n_memory * 1000:.2f} ms CPU "
                    f"per case, peak {big.max_rss_mb:.0f} MB",
                )
            )
        finally:
            server.stop()

        write_cases(work / "golden_cases", n_collect)
        collect = measure(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", "golden_cases"],
            work,
        )  # fmt: skip
        rows.append((f"collection of {n_collect} cases (whole command)", f"{collect.wall_s:.2f} s"))
        baseline = measure([sys.executable, "-m", "pytest", "--version"], work)
        notes.append(f"`pytest --version` alone takes {baseline.wall_s:.2f} s on this machine.")

    lines = [
        "# Benchmarks",
        "",
        "Measured by `python bench/run.py` (figures below are rewritten by each run). Every time is",
        "a whole command, interpreter start-up included, unless its row says *alone*; each is the",
        "median of three runs, and the script, pytest and pytest -n 2 at one latency are run in",
        "turn (script, pytest, pytest -n 2, script, ...) so that a change in load falls on all of",
        "them alike. The local provider server runs in its own process. Judge caching is off so",
        "every case makes both calls. Single runs on this machine vary by up to 20%.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}; load average (1, 5, 15 min) "
        f"{', '.join(f'{v:.2f}' for v in load_before)} before the run and "
        f"{', '.join(f'{v:.2f}' for v in os.getloadavg())} after it.",
        "",
        "| measurement | result |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in rows],
        "",
        "\n\n".join(notes),
        "",
    ]
    Path(args.output).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
