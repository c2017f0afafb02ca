"""The hooks pytest-llmregress offers a team's ``conftest.py`` and pytest plugins.

Added to pytest by ``plugin.pytest_addhooks``. See ``docs/scorers.md``.
"""

from __future__ import annotations

import pytest

from pytest_llmregress.scoring.registry import ScorerRegistry, activate_scorers


@pytest.hookspec(historic=True)
def pytest_llmregress_register_scorers(registry: ScorerRegistry) -> None:
    """Register your own scorers, which golden files then name in ``scorers:``.

    Called once per pytest process, at configure, with the session's registry (the built-in
    scorers are in it already). Implement it in a ``conftest.py`` or in a pytest plugin of
    your own package (a ``pytest11`` entry point)::

        def pytest_llmregress_register_scorers(registry):
            @registry.register("iban", options=("country",))
            def iban(options, output, case):
                ok = looks_like_an_iban(output, options.get("country"))
                return Score("iban", float(ok), ok, "an IBAN" if ok else "no IBAN", threshold=1.0)

    The hook is historic: a ``conftest.py`` loaded later (in a sub-folder) registers when it
    is loaded, before the golden files below it are collected. Each name is registered once.
    A team's scorer runs in the pytest process that holds the case, when its result arrives.
    """


def session_scorers(config: pytest.Config) -> ScorerRegistry:
    """The session's scorer registry: the built-ins, then every
    ``pytest_llmregress_register_scorers`` implementation's; active (golden files are
    validated against it) until ``config`` is cleaned up at unconfigure."""
    registry = ScorerRegistry.with_builtins()
    config.add_cleanup(activate_scorers(registry))
    config.hook.pytest_llmregress_register_scorers.call_historic(kwargs={"registry": registry})
    return registry
