"""Model id classification: provider, serving surface, kind, and what an alias points to.

Two layers:

* :func:`parse_model_id` applies the per-vendor id patterns only (no data). It strips the
  decorations a surface adds (LiteLLM-style ``vertex_ai/`` prefixes, Bedrock ARNs, Vertex and
  Gemini resource paths) and the transport prefixes (``anthropic:`` / ``openai:``, which say
  which SDK or wire format reaches the model, not whose model it is) and says what the
  *shape* of the id tells: vendor, dated snapshot, ``-latest`` alias, preview, fine-tune, ...

The vendor whose lifecycle rules apply always comes from the id itself: ``gemini-*`` is
Google's, ``claude-*`` Anthropic's, ``gpt-*`` / ``o3`` OpenAI's, whatever endpoint serves it
(``openai:gemini-2.5-flash`` is Google's ``gemini-2.5-flash`` reached through an
OpenAI-compatible endpoint).
* :func:`classify` looks the id up in the lifecycle data first (known ids win over patterns) and
  falls back to the patterns for ids the data does not know.

Nothing here imports a provider SDK.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from pytest_llmregress.models.lifecycle import LifecycleData

Provider = Literal["anthropic", "openai", "google", "mistral"]
"""The vendor of a model: whose id patterns and lifecycle rules apply."""
Surface = Literal[
    "anthropic-api", "bedrock", "vertex", "openai-api", "azure", "gemini-api", "mistral-api"
]
Kind = Literal["snapshot", "alias", "preview", "fine-tune", "unknown"]
Transport = Literal["anthropic", "openai"]
"""The SDK / wire format a transport prefix names (``anthropic:``, ``openai:``)."""

PROVIDERS: Final[tuple[Provider, ...]] = ("anthropic", "openai", "google", "mistral")
SURFACES: Final[tuple[Surface, ...]] = (
    "anthropic-api",
    "openai-api",
    "gemini-api",
    "mistral-api",
    "bedrock",
    "vertex",
    "azure",
)
KINDS: Final[tuple[Kind, ...]] = ("snapshot", "alias", "preview", "fine-tune", "unknown")

#: The surface an id is served on when nothing in the id says otherwise.
DEFAULT_SURFACE: Final[dict[Provider, Surface]] = {
    "anthropic": "anthropic-api",
    "openai": "openai-api",
    "google": "gemini-api",
    "mistral": "mistral-api",
}

# Transport prefixes (pydantic-ai ``anthropic:`` / ``openai:``, LiteLLM ``openai/``): they
# say which SDK and wire format reach the model. OpenAI-compatible endpoints serve Gemini,
# Claude, Mistral and local models alike, so they name neither the vendor nor the surface.
_TRANSPORT_PREFIXES: Final[tuple[tuple[str, Transport], ...]] = (
    ("anthropic:", "anthropic"),
    ("openai:", "openai"),
    ("anthropic/", "anthropic"),
    ("openai/", "openai"),
)

# Surface prefixes: pydantic-ai style ``provider:`` and LiteLLM style ``provider/``.
# Each maps to (provider it names or None, surface it names or None).
_PREFIXES: Final[tuple[tuple[str, Provider | None, Surface | None], ...]] = (
    ("azure:", "openai", "azure"),
    ("google-gla:", "google", "gemini-api"),
    ("google-vertex:", None, "vertex"),
    ("google:", "google", None),
    ("gemini:", "google", "gemini-api"),
    ("vertex:", None, "vertex"),
    ("bedrock:", None, "bedrock"),
    ("mistral:", "mistral", "mistral-api"),
    ("azure/", "openai", "azure"),
    ("gemini/", "google", "gemini-api"),
    ("google/", "google", None),
    ("mistral/", "mistral", "mistral-api"),
    ("vertex_ai/", None, "vertex"),
    ("bedrock/", None, "bedrock"),
)

_ARN = re.compile(
    r"^arn:aws[\w-]*:bedrock:[\w-]*:\d*:"
    r"(?:foundation-model|inference-profile|application-inference-profile)/(?P<name>.+)$"
)
_VERTEX_RESOURCE = re.compile(
    r"^(?:projects/[^/]+/locations/[^/]+/)?publishers/(?P<publisher>google|anthropic)"
    r"/models/(?P<name>.+)$"
)
_GEMINI_RESOURCE = re.compile(r"^models/(?P<name>gemini-.+)$")

_BEDROCK_GEO = re.compile(r"^(?:us|eu|apac|au|jp|global|us-gov)\.(?P<rest>.+)$")
_BEDROCK_CLAUDE = re.compile(
    r"^(?:(?P<geo>us|eu|apac|au|jp|global|us-gov)\.)?anthropic\."
    r"(?P<model>claude(?:-[a-z0-9.-]+?)?)(?:-v\d+(?::\d+)?)?$"
)

_VERTEX_CLAUDE = re.compile(r"^(?P<model>claude-[a-z0-9.-]+?)@(?P<version>[A-Za-z0-9]+)$")
_VERSION_SUFFIX = re.compile(r"-v\d+$")
_VERTEX_DATE = re.compile(r"^20\d{6}$")
_CLAUDE_DATED = re.compile(r"^claude-[a-z0-9.-]+?-(20\d{2}[01]\d[0-3]\d)$")
_CLAUDE_OLD_VERSIONED = re.compile(r"^claude-(?:instant-)?\d+\.\d+$")
_CLAUDE_OLD_ALIAS = re.compile(r"^claude-(?:instant-)?\d+$")
_CLAUDE_FAMILY = re.compile(r"^claude-(?P<family>[a-z]+)-(?P<major>\d+)(?:-(?P<minor>\d{1,2}))?$")
_CLAUDE_OLD_FAMILY = re.compile(r"^claude-\d+(?:-\d+)?-[a-z]+(?:-v\d+)?$")

_OPENAI_FAMILY = re.compile(
    r"^(?:gpt-|chatgpt-|o\d+(?:-|$)|codex-|computer-use-|"
    r"text-(?:davinci|curie|babbage|ada|embedding|moderation)-|"
    r"(?:davinci|babbage|curie)-\d|tts-|whisper-|dall-e-|omni-moderation-|sora-)"
)
_OPENAI_ISO = re.compile(r"-(20\d{2}-[01]\d-[0-3]\d)$")
_OPENAI_MMDD = re.compile(r"^(?:gpt-4|gpt-3\.5-turbo)(?:-16k|-32k)?-([01]\d[0-3]\d)$")
_PREVIEW_WORD = re.compile(r"(?:^|-)preview(?:-|$)")
_FINE_TUNE = re.compile(r"^ft:(?P<base>[^:]+)(?::.*)?$")

_GEMINI_PREVIEW = re.compile(r"(?:^|-)(?:preview|exp)(?:-|$)")
_GEMINI_NNN = re.compile(r"^gemini-.+-\d{3}$")
_GEMINI_FAMILY = re.compile(r"^gemini-(?P<version>\d+(?:\.\d+)?)-(?:pro|flash|flash-lite)$")
_GEMINI_VARIANT = re.compile(r"^gemini-(?:[a-z]+-)*?(?P<version>\d+(?:\.\d+)?)-[a-z][a-z0-9-]*$")

_MISTRAL_FAMILY = re.compile(
    r"^(?:open-)?(?:mistral|mixtral|codestral|ministral|pixtral|magistral|devstral|voxtral)-"
)
# Mistral snapshots end in -YYMM (``mistral-large-2411``); ``-latest`` points to the newest.
_MISTRAL_YYMM = re.compile(r"-2[3-9](?:0[1-9]|1[0-2])$")
_LATEST = "-latest"

#: Literal strings shaped like an id at all (used to pre-filter lint candidates).
_ID_CHARS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:@/._-]{1,199}$")

_FIRST_DATELESS_CLAUDE: Final = (4, 6)
_FIRST_BARE_STABLE_GEMINI: Final = (2, 5)


@dataclass(frozen=True)
class ParsedModelId:
    """What the shape of an id says, before any lifecycle data is consulted."""

    raw: str
    """The id as given (surrounding whitespace removed)."""
    name: str
    """The id without explicit prefixes, ARNs and resource paths (the key of the data)."""
    provider: Provider | None
    surface: Surface | None
    """The surface named by a prefix or implied by the id's shape; None when undetermined."""
    kind: Kind
    base_id: str
    """The first-party provider id with surface decorations removed, where mappable."""
    lookup_names: tuple[str, ...]
    """Names to look up in the data, most specific first (Bedrock: with, then without geo)."""
    fine_tune_base: str | None = None
    undated: bool = False
    """An OpenAI id without a date suffix: an alias if the data knows a dated sibling."""
    transport: Transport | None = None
    """The SDK / wire format named by a transport prefix (``openai:gemini-2.5-flash``:
    ``"openai"``); it says nothing about the vendor or the surface."""


@dataclass(frozen=True)
class ModelInfo:
    """Everything known about one model id. See :func:`classify`."""

    id: str
    provider: Provider | None
    surface: Surface | None
    kind: Kind
    resolves_to: str | None
    """For an alias: the snapshot it is documented to point to (None if not documented)."""
    base_id: str
    deprecated_on: date | None
    retires_on: date | None
    source: str | None
    """Where the lifecycle facts come from (URL or repo + path); None for pattern-only ids."""
    known: bool = False
    """True when the id itself is in the lifecycle data (bundled or overrides)."""
    dates_from: str | None = None
    """When the dates are another id's (alias target, fine-tune base, Bedrock profile base)."""
    days_left: int | None = None
    """Days from ``today`` to ``retires_on`` (negative once retired); None without a date."""
    digest: str | None = None
    """The content digest of the weights a project entry pins the id to (a self-hosted model:
    ``sha256:...``, a Hugging Face revision commit, an Ollama digest); None otherwise."""
    version: str | None = None
    """The version a project entry pins the id to (a name the team controls); None otherwise."""

    @property
    def retired(self) -> bool:
        return self.days_left is not None and self.days_left <= 0

    @property
    def pinned(self) -> bool:
        """True for snapshots and fine-tunes: ids the provider does not re-point."""
        return self.kind in ("snapshot", "fine-tune")

    @property
    def pinned_to(self) -> str | None:
        """What a project entry pins the id to, for display (``version v3, sha256:ab12...``);
        None when no entry gives a ``digest`` or a ``version``."""
        parts = [f"version {self.version}"] if self.version else []
        if self.digest:
            parts.append(short_digest(self.digest))
        return ", ".join(parts) or None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("deprecated_on", "retires_on"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        data["retired"] = self.retired
        return data


def short_digest(digest: str, length: int = 12) -> str:
    """``sha256:`` and the first ``length`` hex digits, then ``...`` (as shown in messages)."""
    algorithm, sep, value = digest.rpartition(":")
    if len(value) <= length:
        return digest
    return f"{algorithm}{sep}{value[:length]}..."


def _version(major: str, minor: str | None = None) -> tuple[int, int]:
    return (int(major), int(minor) if minor else 0)


def _dotted_version(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return _version(major, minor or None)


def _strip_prefix(text: str) -> tuple[str, Transport | None, Provider | None, Surface | None]:
    """Remove a transport prefix, then a surface prefix (``openai:google/gemini-2.5-flash``)."""
    transport: Transport | None = None
    for prefix, name in _TRANSPORT_PREFIXES:
        if text.startswith(prefix) and len(text) > len(prefix):
            text, transport = text[len(prefix) :], name
            break
    for prefix, provider, surface in _PREFIXES:
        if text.startswith(prefix) and len(text) > len(prefix):
            return text[len(prefix) :], transport, provider, surface
    return text, transport, None, None


@dataclass(frozen=True)
class _Shape:
    provider: Provider | None
    surface: Surface | None
    kind: Kind
    base_id: str
    lookup_names: tuple[str, ...]
    fine_tune_base: str | None = None
    undated: bool = False


def _claude_shape(name: str, surface: Surface | None) -> _Shape:
    def shape(kind: Kind) -> _Shape:
        return _Shape("anthropic", None, kind, name, (name,))

    if name.endswith("-preview"):
        return shape("preview")
    if name.endswith("-latest"):
        return shape("alias")
    if _CLAUDE_DATED.match(name) or _CLAUDE_OLD_VERSIONED.match(name):
        return shape("snapshot")
    if _CLAUDE_OLD_ALIAS.match(name):
        return shape("alias")
    family = _CLAUDE_FAMILY.match(name)
    if family:
        if family["family"] == "instant":
            return shape("alias")
        version = _version(family["major"], family["minor"])
        return shape("snapshot" if version >= _FIRST_DATELESS_CLAUDE else "alias")
    if _CLAUDE_OLD_FAMILY.match(name):
        # ``claude-3-5-sonnet`` without ``@date`` is not pinned on Vertex; not an API id.
        return shape("alias" if surface == "vertex" else "unknown")
    return shape("unknown")


def _openai_shape(name: str) -> _Shape:
    def shape(kind: Kind, *, undated: bool = False) -> _Shape:
        return _Shape("openai", None, kind, name, (name,), undated=undated)

    if _PREVIEW_WORD.search(name):
        return shape("preview")
    if name.endswith("-latest"):
        return shape("alias")
    if _OPENAI_ISO.search(name) or _OPENAI_MMDD.match(name):
        return shape("snapshot")
    return shape("unknown", undated=True)


def _gemini_shape(name: str) -> _Shape:
    def shape(kind: Kind) -> _Shape:
        return _Shape("google", None, kind, name, (name,))

    if name.endswith("-latest"):
        return shape("alias")
    if _GEMINI_PREVIEW.search(name):
        return shape("preview")
    if _GEMINI_NNN.match(name):
        return shape("snapshot")
    family = _GEMINI_FAMILY.match(name)
    if family:
        stable = _dotted_version(family["version"]) >= _FIRST_BARE_STABLE_GEMINI
        return shape("snapshot" if stable else "alias")
    variant = _GEMINI_VARIANT.match(name)
    if variant and _dotted_version(variant["version"]) >= _FIRST_BARE_STABLE_GEMINI:
        return shape("snapshot")
    return shape("unknown")


def _mistral_shape(name: str) -> _Shape:
    def shape(kind: Kind) -> _Shape:
        return _Shape("mistral", None, kind, name, (name,))

    if name.endswith(_LATEST):
        return shape("alias")
    if _MISTRAL_YYMM.search(name):
        return shape("snapshot")
    return shape("unknown")


def _shape(name: str, surface: Surface | None, provider_hint: Provider | None) -> _Shape:
    if surface == "azure":
        # Azure deployment names are chosen by the user and say nothing about the model.
        return _Shape("openai", "azure", "unknown", name, (name,))
    bedrock = _BEDROCK_CLAUDE.match(name)
    if bedrock:
        names = (name, name.split(".", 1)[1]) if bedrock["geo"] else (name,)
        return _Shape("anthropic", "bedrock", "snapshot", bedrock["model"], names)
    if surface == "bedrock":
        geo = _BEDROCK_GEO.match(name)
        names = (name, geo["rest"]) if geo else (name,)
        return _Shape(provider_hint, "bedrock", "unknown", name, names)
    vertex = _VERTEX_CLAUDE.match(name)
    if vertex:
        model, version = vertex["model"], vertex["version"]
        if _VERTEX_DATE.match(version):
            base = f"{_VERSION_SUFFIX.sub('', model)}-{version}"
            return _Shape("anthropic", "vertex", "snapshot", base, (name,))
        # ``@default`` (seen in LiteLLM keys) or anything else: not a pinned version.
        return _Shape("anthropic", "vertex", "alias", model, (name,))
    if name.startswith("claude-"):
        return _claude_shape(name, surface)
    fine_tune = _FINE_TUNE.match(name)
    if fine_tune:
        base = fine_tune["base"]
        base_shape = _shape(base, surface, provider_hint)
        provider = base_shape.provider or provider_hint or "openai"
        return _Shape(provider, None, "fine-tune", base, (name,), fine_tune_base=base)
    if _OPENAI_FAMILY.match(name):
        return _openai_shape(name)
    if name.startswith("gemini-"):
        return _gemini_shape(name)
    if _MISTRAL_FAMILY.match(name):
        return _mistral_shape(name)
    if name.endswith(_LATEST) and len(name) > len(_LATEST):
        # ``-latest`` is a moving alias whoever the vendor is (``llama-4-latest``).
        return _Shape(provider_hint, None, "alias", name, (name,))
    return _Shape(provider_hint, None, "unknown", name, (name,))


def parse_model_id(model_id: str, *, surface: Surface | None = None) -> ParsedModelId:
    """Classify ``model_id`` by its shape alone (no lifecycle data).

    ``surface`` names the serving surface when the caller knows it (for example ``"vertex"``
    for ids passed to an ``AnthropicVertex`` client); an explicit surface prefix in the id
    names it otherwise. A transport prefix (``openai:``, ``anthropic:``) is stripped and kept
    in :attr:`ParsedModelId.transport`; the vendor comes from the id.
    """
    raw = model_id.strip()
    name, transport, provider_hint, prefix_surface = _strip_prefix(raw)
    shape_surface: Surface | None = None
    arn = _ARN.match(name)
    vertex_resource = _VERTEX_RESOURCE.match(name)
    gemini_resource = _GEMINI_RESOURCE.match(name)
    if arn:
        name, shape_surface = arn["name"], "bedrock"
    elif vertex_resource:
        name, shape_surface = vertex_resource["name"], "vertex"
        provider_hint = "google" if vertex_resource["publisher"] == "google" else "anthropic"
    elif gemini_resource:
        name, shape_surface = gemini_resource["name"], "gemini-api"
    given_surface = surface or prefix_surface or shape_surface
    shape = _shape(name, given_surface, provider_hint)
    provider = shape.provider or provider_hint
    return ParsedModelId(
        raw=raw,
        name=name,
        provider=provider,
        surface=given_surface or shape.surface,
        kind=shape.kind,
        base_id=shape.base_id,
        lookup_names=shape.lookup_names,
        fine_tune_base=shape.fine_tune_base,
        undated=shape.undated,
        transport=transport,
    )


def looks_like_id(text: str) -> bool:
    """True if ``text`` is made of the characters model ids are made of (cheap pre-filter)."""
    return bool(_ID_CHARS.match(text))


def classify(
    model_id: str,
    *,
    today: date | None = None,
    surface: Surface | None = None,
    data: LifecycleData | None = None,
) -> ModelInfo:
    """Classify ``model_id``: provider, surface, kind, alias target, lifecycle dates.

    Ids in the lifecycle data (``data``, by default the bundled data) take their facts from it;
    other ids are classified by the per-provider patterns. ``today`` (default: the current
    date) only affects :attr:`ModelInfo.days_left` / :attr:`ModelInfo.retired`.
    """
    if data is None:
        from pytest_llmregress.models.lifecycle import bundled_lifecycle

        data = bundled_lifecycle()
    return data.classify(model_id, today=today, surface=surface)


def is_model_id(text: str, *, data: LifecycleData | None = None) -> bool:
    """True if ``text`` is a model id: known to the data, or a strong provider-pattern match.

    Ordinary words and half-matching strings (``claude-code``, ``gpt-engineer``) are not.
    """
    if not looks_like_id(text):
        return False
    if data is None:
        from pytest_llmregress.models.lifecycle import bundled_lifecycle

        data = bundled_lifecycle()
    return data.is_model_id(text)
