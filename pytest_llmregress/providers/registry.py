"""Model id -> provider: explicit prefixes, inference from the id, keys and base URLs.

Nothing here imports an SDK; providers import theirs on first call.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from pytest_llmregress.core.masking import MASK, mask_url
from pytest_llmregress.providers.base import Provider

PROVIDERS = ("anthropic", "openai")
# Golden-case parameters the OpenAI Chat Completions API does not take; compatible servers
# that do (vLLM, llama.cpp) get them with --llm-openai-extra-params.
OPENAI_EXTRA_PARAMS = ("top_k",)
API_KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
BASE_URL_ENV = {"anthropic": "ANTHROPIC_BASE_URL", "openai": "OPENAI_BASE_URL"}
# Used for the local provider server, which checks that a key is sent but not which.
LOCAL_SERVER_KEY = "llmregress-local"

_OPENAI_ID = re.compile(r"^(gpt-|chatgpt-|o\d|ft:|text-|davinci|babbage|codex-)")


class ModelSpecError(ValueError):
    """A model id the plugin cannot route to a provider."""


@dataclass(frozen=True)
class ModelRef:
    """A model id and the provider that serves it."""

    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}"

    @property
    def family(self) -> str:
        """The model family, for the self-preference warning (judge vs candidate)."""
        lowered = self.model.lower()
        for family in ("claude", "gemini", "llama", "mistral", "qwen", "deepseek", "gemma"):
            if family in lowered:
                return family
        if _OPENAI_ID.match(lowered):
            return "gpt"
        return self.provider


def parse_model(spec: str) -> ModelRef:
    """Route ``anthropic:ID`` / ``openai:ID`` explicitly, else infer from the id."""
    spec = spec.strip()
    if not spec:
        raise ModelSpecError("empty model id")
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in PROVIDERS:
        if not rest:
            raise ModelSpecError(f"{spec!r}: no model id after the provider prefix")
        return ModelRef(prefix, rest)
    if spec.lower().startswith("claude"):
        return ModelRef("anthropic", spec)
    if _OPENAI_ID.match(spec.lower()):
        return ModelRef("openai", spec)
    raise ModelSpecError(
        f"cannot tell which provider serves {spec!r}: prefix it with 'anthropic:' or 'openai:' "
        f"(use 'openai:' for any OpenAI-compatible server such as vLLM or Ollama)"
    )


@dataclass(frozen=True)
class Endpoints:
    """Where each provider's calls go and with which key.

    Neither a key nor a base URL's credentials are ever shown: not by ``repr`` (a traceback's
    locals, a log line), not by :meth:`describe`. Only :meth:`build` hands them to an SDK client.
    """

    base_urls: Mapping[str, str | None]
    api_keys: Mapping[str, str | None]

    def __repr__(self) -> str:
        urls = {name: mask_url(url) if url else url for name, url in self.base_urls.items()}
        keys = {name: MASK if key else key for name, key in self.api_keys.items()}
        return f"Endpoints(base_urls={urls!r}, api_keys={keys!r})"

    def missing_keys(self, refs: list[ModelRef]) -> list[str]:
        """Environment variables that must be set for these models but are not.

        A provider sent to a base URL of the team's own (a self-hosted server, a gateway) needs
        none: its calls go without a key, and a server that wants one answers 401 or 403,
        which names the variable to set.
        """
        missing = []
        for provider in sorted({ref.provider for ref in refs}):
            if not self.api_keys.get(provider) and not self.base_urls.get(provider):
                missing.append(API_KEY_ENV[provider])
        return missing

    def build(
        self, provider: str, timeout: float, openai_extra_params: Collection[str] = ()
    ) -> Provider:
        key = self.api_keys.get(provider)
        if self.missing_keys([ModelRef(provider, "")]):
            raise ModelSpecError(f"{API_KEY_ENV[provider]} is not set")
        base_url = self.base_urls.get(provider)
        if provider == "anthropic":
            from pytest_llmregress.providers.anthropic import AnthropicProvider

            return AnthropicProvider(api_key=key, base_url=base_url, timeout=timeout)
        from pytest_llmregress.providers.openai import OpenAIProvider

        return OpenAIProvider(
            api_key=key, base_url=base_url, timeout=timeout, extra_params=openai_extra_params
        )

    def describe(self, provider: str) -> str:
        """The base URL a provider's calls go to, for headers and reports: credentials masked
        (``http://***:***@host``, ``?api-key=***``)."""
        url = self.base_urls.get(provider)
        if url:
            return mask_url(url)
        from_env = os.environ.get(BASE_URL_ENV[provider])
        if from_env:
            return mask_url(from_env)
        return (
            "https://api.anthropic.com" if provider == "anthropic" else "https://api.openai.com/v1"
        )


def endpoints_from_environment(
    anthropic_base_url: str | None,
    openai_base_url: str | None,
    environ: Mapping[str, str] | None = None,
) -> Endpoints:
    """Keys from the environment only; base URLs from options, else the SDKs' variables."""
    env = os.environ if environ is None else environ
    return Endpoints(
        base_urls={
            "anthropic": anthropic_base_url or env.get(BASE_URL_ENV["anthropic"]) or None,
            "openai": openai_base_url or env.get(BASE_URL_ENV["openai"]) or None,
        },
        api_keys={provider: env.get(var) or None for provider, var in API_KEY_ENV.items()},
    )


def local_server_endpoints(url: str) -> Endpoints:
    """Every provider pointed at the local provider server."""
    url = url.rstrip("/")
    return Endpoints(
        base_urls={"anthropic": url, "openai": url + "/v1"},
        api_keys=dict.fromkeys(PROVIDERS, LOCAL_SERVER_KEY),
    )
