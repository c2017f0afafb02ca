"""The engine: the runner process and its loop (``runner_process.py``, ``runner.py``), the
response cache, and the test suite's warm start of runner processes (``forkserver.py``)."""

FORKSERVER_VARIABLE = "LLMREGRESS_RUNNER_FORKSERVER"
"""Names the test suite's runner forkserver; unset in production, where runner processes start
with ``Popen`` and ``forkserver.py`` is never loaded."""
