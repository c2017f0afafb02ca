"""``--llm-shard=I/N``: run only a stable share of the cases, for CI matrices.

A case belongs to shard ``shard_of_case(case_id, N)``: a hash of its **case id** (a golden
case's own ``id``; for a test that uses the ``llm`` fixture, a judged reference or
``@pytest.mark.llm_case``, the id its results carry), never its node id or its position, so
adding, removing or moving other cases moves no case between shards. The cases of the other
shards are deselected (pytest's ``deselected`` count), not skipped: each shard's gate counts
its own cases, and its expected cases are the ones it kept. Every process that collects
(a lone pytest process, each xdist worker) deselects the same items, so workers agree.

Other tests (unit tests, tests that call no model) are not sharded: every shard runs them.
``llmregress merge`` (``cli/merge.py``) checks each result against ``shard_of_case``.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

CASE_FIXTURES = frozenset({"llm", "llm_judge", "snapshot"})
"""Fixtures that make a test a case (its calls and judged comparisons give a result)."""


def shard_of_case(case_id: str, count: int) -> int:
    """The shard (1-based, of ``count``) a case id belongs to: stable across runs, machines
    and Python versions (SHA-256 of the id, not ``hash``, which is salted per process)."""
    digest = hashlib.sha256(case_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def case_key(item: pytest.Item) -> str | None:
    """The case id an item is sharded by, or None for a test that is not a case."""
    from pytest_llmregress.collect.items import GoldenItem

    if isinstance(item, GoldenItem):
        return item.case.id
    from pytest_llmregress.collect.llm_fixture import (
        LLM_CASE,
        CaseOptions,
        CaseOptionsError,
        case_id,
        case_options,
    )

    uses = set(getattr(item, "fixturenames", ()))
    if CASE_FIXTURES.isdisjoint(uses) and item.get_closest_marker(LLM_CASE) is None:
        return None
    try:
        options = case_options(item)
    except CaseOptionsError:  # reported when the test runs; the id is the test's name then
        options = CaseOptions()
    return case_id(item, options)


def select_shard(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the items of this session's shard; deselect the other shards' cases."""
    from pytest_llmregress.session import find_session
    from pytest_llmregress.settings import shard_of

    session = find_session(config)
    if session is None or session.plan.settings.shard is None:
        return
    index, count = shard_of(session.plan.settings.shard)
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        key = case_key(item)
        (kept if key is None or shard_of_case(key, count) == index else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
