"""xdist scheduling that hands each worker whole units of consecutive golden cases.

A worker learns its items a few at a time, so on its own it could only start one model call
at a time. With this scheduler (used under ``-n`` when ``--dist`` is left at ``load``) each
golden file is cut into units of consecutive cases that go to one worker whole; the worker
starts a unit's calls together when it reaches the unit's first case. Other tests are
scheduled one by one, as under ``--dist load``. Imported only on an xdist controller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from xdist.scheduler import LoadScopeScheduling


class GoldenScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """``LoadScopeScheduling`` whose scopes are golden work units, or single other tests."""

    def __init__(
        self,
        config: Any,
        log: Any,
        scope_of: Callable[[Sequence[str], int], dict[str, str]],
    ) -> None:
        super().__init__(config, log)
        self._scope_of = scope_of
        self._scopes: dict[str, str] | None = None

    def schedule(self) -> None:
        if self._scopes is None and self.collection_is_completed and self.registered_collections:
            collection = next(iter(self.registered_collections.values()))
            self._scopes = self._scope_of(list(collection), len(self.nodes))
        super().schedule()

    def _split_scope(self, nodeid: str) -> str:
        if self._scopes is not None:
            return self._scopes.get(nodeid, nodeid)
        return nodeid
