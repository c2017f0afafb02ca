"""The session: what one pytest process knows and does for pytest-llmregress.

- ``plan.py``: ``RunPlan``, resolved once at start-up by ``resolve_plan`` (models, endpoints,
  lifecycle findings, prompts, resumed results) and frozen;
- ``gather.py``: ``Gatherer``, the results, collection errors and verdict of a run;
- ``outputs.py``: the header, JUnit properties, results file, markdown, recorded references
  and terminal summary, each a function of the plan and the gathered results;
- ``session.py``: ``LLMRegressSession``, the thin object in ``config.stash`` that the hooks
  of ``plugin.py`` talk to; it owns the server and the runner process.
"""

from __future__ import annotations

from pytest_llmregress.session.plan import (
    WORKER_DIST,
    WORKER_RUNNER,
    WORKER_SERVER_URL,
    golden_nodeid_matcher,
    golden_units,
)
from pytest_llmregress.session.session import (
    SESSION_KEY,
    LLMRegressSession,
    LLMRegressWarning,
    check_dist_mode,
    find_session,
    get_session,
    pyproject_path,
)

__all__ = [
    "SESSION_KEY",
    "WORKER_DIST",
    "WORKER_RUNNER",
    "WORKER_SERVER_URL",
    "LLMRegressSession",
    "LLMRegressWarning",
    "check_dist_mode",
    "find_session",
    "get_session",
    "golden_nodeid_matcher",
    "golden_units",
    "pyproject_path",
]
