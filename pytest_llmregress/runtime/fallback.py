"""A fallback chain: when a model is gone or unavailable, the next model in the chain answers.

::

    chain = FallbackChain(
        ["claude-sonnet-4-6", "claude-opus-4-7", "openai:gpt-5.5-2026-04-23"],
        endpoints_from_environment(None, None),
        timeout=30,
    )
    result = chain.complete(request)        # or: await chain.acomplete(request)
    result.completion.text, result.answered_by, result.failures

Each model is tried in order with ``request`` (its ``model`` field is replaced by the chain's
model). What happens to a failure depends on its :attr:`ProviderError.kind`:

* ``not_found`` (404, 410: a retired or unknown model), ``timeout`` and ``connection``: the
  next model is tried at once. Timeouts and connection failures are not retried on the same
  model: the next model *is* the retry, so a timeout costs at most ``timeout`` seconds per
  model (each attempt also has a hard ``timeout`` deadline of its own).
* ``rate_limit`` and ``server`` (429, 5xx, 529, 408, 409): retried on the same model with the
  :class:`~pytest_llmregress.providers.retries.RetryPolicy`; what remains after the retries
  falls through.
* anything else (``bad_request``, ``auth``, ``quota``, ``bad_response``): re-raised at once.
  Those are problems with the request or the account that a different model would hide, not
  an unavailable model. The failures before it are attached as notes.

The chain is checked when it is built: a repeated id, or an alias together with the snapshot
it points to (the same model twice), is a ``ValueError``; an alias earns a ``UserWarning``
because what it points to can change under the chain. Nothing here imports an SDK or pytest.

The rules themselves are :func:`walk_chain`, which tries one *attempt* per model and knows
nothing of how a model is called. :class:`FallbackChain` walks it with plain provider calls;
the plugin's runner walks it with its own call path (cache, budget, timeout, retries), so a
chain behaves the same in application code and in the golden suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import random
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Final

from pytest_llmregress.providers.base import Completion, Provider, ProviderError, Request
from pytest_llmregress.providers.registry import PROVIDERS, Endpoints, ModelRef, parse_model
from pytest_llmregress.providers.retries import RetryPolicy, call_with_retries, complete_within

LOGGER_NAME: Final = "pytest_llmregress.fallback"

#: Failures after which the next model is tried at once (no retry on the same model).
FALL_THROUGH_AT_ONCE: Final = frozenset({"not_found", "timeout", "connection"})
#: Failures retried on the same model first; what remains after the retries falls through.
FALL_THROUGH_AFTER_RETRIES: Final = frozenset({"rate_limit", "server"})
FALL_THROUGH_KINDS: Final = FALL_THROUGH_AT_ONCE | FALL_THROUGH_AFTER_RETRIES


class FallbackAliasWarning(UserWarning):
    """A fallback chain names an alias, whose target the provider can change at any time."""


class FallbackExhausted(ProviderError):
    """Every model in the chain failed; :attr:`failures` holds one error per model, in order.

    ``provider``, ``model`` and ``kind`` are the last model's; the message lists them all.
    Not :attr:`retryable`: the chain has applied its retry policy already.
    """

    def __init__(self, failures: Sequence[ProviderError]) -> None:
        self.failures: list[ProviderError] = list(failures)
        last = self.failures[-1]
        lines = "; ".join(f"[{i}] {error}" for i, error in enumerate(self.failures, 1))
        super().__init__(
            f"all {len(self.failures)} models in the fallback chain failed: {lines}",
            provider=last.provider,
            model=last.model,
            kind=last.kind,
            status=last.status,
            request_id=last.request_id,
            attempts=sum(error.attempts for error in self.failures),
        )

    @property
    def retryable(self) -> bool:
        return False

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class FallbackResult:
    """The completion, the model that answered (its id) and the failures before it."""

    completion: Completion
    answered_by: str
    failures: list[ProviderError] = field(default_factory=list)
    ref: ModelRef | None = None
    """The chain entry that answered (provider and id)."""
    position: int = 0
    """Its position in the chain: 0 for the primary."""

    @property
    def used_fallback(self) -> bool:
        return self.position > 0


async def walk_chain(
    models: Sequence[ModelRef],
    attempt: Callable[[ModelRef], Awaitable[Completion]],
    *,
    logger: logging.Logger,
    skip: Mapping[ModelRef, ProviderError] | None = None,
) -> FallbackResult:
    """Answer with the first of ``models`` whose ``attempt(ref)`` succeeds (rules in the module
    doc).

    ``attempt`` is one model's whole call, its retries included; the walk only decides what a
    failure means. ``skip`` maps models already known to be unavailable (a preflight found
    them retired) to that error: each counts as failed with it, without a call. When ``skip``
    covers every model, none is skipped: the walk calls them all rather than fail untried.
    """
    if skip and all(ref in skip for ref in models):
        skip = None
    failures: list[ProviderError] = []
    for position, ref in enumerate(models):
        try:
            if skip and ref in skip:
                # Failed without a call; a copy, so one error's notes never pile up per case.
                raise skip[ref].copy()
            completion = await attempt(ref)
        except ProviderError as error:
            if error.kind not in FALL_THROUGH_KINDS:
                for before in failures:
                    error.add_note(f"earlier in the fallback chain: {before}")
                raise
            failures.append(error)
            logger.debug("fallback chain: %s failed: %s", ref, error)
            continue
        if position == 0:
            return FallbackResult(completion, ref.model, failures, ref, position)
        logger.warning(
            "fallback: %s answered after %s", ref, "; ".join(str(error) for error in failures)
        )
        completion = replace(completion, fallback_model=ref.model)
        return FallbackResult(completion, ref.model, failures, ref, position)
    raise FallbackExhausted(failures)


class _Pool:
    """Providers built on first use, one per provider name, closed together."""

    def __init__(self, endpoints: Endpoints, timeout: float) -> None:
        self._endpoints = endpoints
        self._timeout = timeout
        self._providers: dict[str, Provider] = {}

    def get(self, name: str) -> Provider:
        provider = self._providers.get(name)
        if provider is None:
            provider = self._providers[name] = self._endpoints.build(name, self._timeout)
            # The providers import their SDK on first call; do it here, outside the deadline
            # of the first attempt (the provider names are the SDKs' module names).
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        return provider

    async def aclose(self) -> None:
        providers, self._providers = list(self._providers.values()), {}
        for provider in providers:
            await provider.aclose()


class FallbackChain:
    """Try ``models`` in order until one answers (rules in the module doc).

    ``models`` are ids (``"claude-sonnet-4-6"``, ``"openai:gpt-5.5-2026-04-23"``) or
    :class:`ModelRef`; the first is the primary. ``endpoints`` says where each provider's calls
    go; every provider in the chain needs a key there. ``timeout`` (seconds) bounds each
    attempt. ``retry_policy`` applies to rate limits and server errors (default
    ``RetryPolicy()``). ``logger`` defaults to ``logging.getLogger("pytest_llmregress.fallback")``,
    which gets a WARNING each time a fallback answers.

    Use :meth:`acomplete` from async code; the chain keeps one client per provider until
    :meth:`aclose` (or ``async with``). :meth:`complete` is the blocking form: it runs its own
    event loop with ``asyncio.run`` and fresh clients that it closes before returning, so it
    cannot be called from a thread with a running event loop (use :meth:`acomplete` there).
    """

    def __init__(
        self,
        models: Sequence[str | ModelRef],
        endpoints: Endpoints,
        *,
        timeout: float,
        retry_policy: RetryPolicy | None = None,
        logger: logging.Logger | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if isinstance(models, str):
            raise TypeError("models must be a sequence of model ids, not one string")
        refs = tuple(parse_model(m) if isinstance(m, str) else m for m in models)
        if not refs:
            raise ValueError("a fallback chain needs at least one model")
        for ref in refs:
            if not isinstance(ref, ModelRef) or ref.provider not in PROVIDERS:
                raise ValueError(
                    f"{ref!r}: expected a model id or a ModelRef of one of {', '.join(PROVIDERS)}"
                )
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        _check_chain(refs)
        missing = endpoints.missing_keys(list(refs))
        if missing:
            raise ValueError(f"the fallback chain needs {', '.join(missing)} (not set)")
        self.models: tuple[ModelRef, ...] = refs
        self.timeout = float(timeout)
        self.retry_policy = retry_policy if retry_policy is not None else RetryPolicy()
        self.logger = logger if logger is not None else logging.getLogger(LOGGER_NAME)
        self._endpoints = endpoints
        self._rng = rng if rng is not None else random.Random()
        self._pool = _Pool(endpoints, self.timeout)

    def __repr__(self) -> str:
        chain = " -> ".join(str(ref) for ref in self.models)
        return f"FallbackChain({chain}, timeout={self.timeout:g})"

    # -- async ------------------------------------------------------------------------------

    async def acomplete(self, request: Request) -> FallbackResult:
        """Answer ``request`` with the first model that can; raises :class:`FallbackExhausted`
        when none can, or the first error that is not an availability problem."""
        return await self._run(request, self._pool)

    async def aclose(self) -> None:
        """Close the clients :meth:`acomplete` opened (the chain stays usable)."""
        await self._pool.aclose()

    async def __aenter__(self) -> FallbackChain:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- sync -------------------------------------------------------------------------------

    def complete(self, request: Request) -> FallbackResult:
        """Blocking :meth:`acomplete`, on a new event loop (``asyncio.run``) with its own
        clients. Raises ``RuntimeError`` when called where an event loop is running."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "FallbackChain.complete() cannot run inside a running event loop; "
                "use 'await chain.acomplete(request)' there"
            )
        return asyncio.run(self._run_once(request))

    async def _run_once(self, request: Request) -> FallbackResult:
        pool = _Pool(self._endpoints, self.timeout)
        try:
            return await self._run(request, pool)
        finally:
            await pool.aclose()

    # -- the chain --------------------------------------------------------------------------

    async def _run(self, request: Request, pool: _Pool) -> FallbackResult:
        async def attempt(ref: ModelRef) -> Completion:
            return await self._attempt(ref, replace(request, model=ref.model), pool)

        return await walk_chain(self.models, attempt, logger=self.logger)

    async def _attempt(self, ref: ModelRef, request: Request, pool: _Pool) -> Completion:
        """One model's call: its own deadline per attempt, retries on rate limits and server
        errors; a timeout or a lost connection goes to the next model at once."""
        provider = pool.get(ref.provider)
        timeout = self.timeout

        async def once() -> Completion:
            return await complete_within(provider, ref.provider, request, timeout)

        return await call_with_retries(
            once, self.retry_policy, self._rng, give_up=FALL_THROUGH_AT_ONCE
        )


def _check_chain(refs: Sequence[ModelRef]) -> None:
    """Refuse repeated ids and an alias beside its target; warn about aliases."""
    from pytest_llmregress.models.ids import classify

    seen: dict[tuple[str, str], int] = {}
    for index, ref in enumerate(refs):
        key = (ref.provider, ref.model)
        if key in seen:
            raise ValueError(
                f"{ref} appears twice in the fallback chain (positions {seen[key] + 1} and "
                f"{index + 1}); a fallback must be a different model"
            )
        seen[key] = index

    effective: dict[tuple[str, str], int] = {}
    aliases: list[str] = []
    for index, ref in enumerate(refs):
        info = classify(ref.model)
        target = ref.model
        if info.kind == "alias":
            aliases.append(
                f"{ref} (points to {info.resolves_to})" if info.resolves_to else str(ref)
            )
            if info.resolves_to:
                target = info.resolves_to
        key = (ref.provider, target)
        if key in effective:
            first = refs[effective[key]]
            raise ValueError(
                f"{first} and {ref} in the fallback chain are the same model "
                f"({target}); a fallback must be a different model"
            )
        effective[key] = index
    if aliases:
        warnings.warn(
            f"the fallback chain uses aliases: {', '.join(aliases)}; an alias can be re-pointed "
            "by the provider at any time, pin dated snapshot ids instead",
            FallbackAliasWarning,
            stacklevel=3,
        )
