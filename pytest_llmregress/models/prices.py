"""Prices: USD per million tokens per model id, with the date and the page each was read from.

The table bundled with the package (``prices.csv``) is loaded lazily, once. Each row names a
provider and a model id; a dated snapshot has a row of its own when it is priced as its alias
(the row's ``source`` says so), so nothing is ever priced by resemblance: an id without a row
has an unknown price, which reports say instead of guessing.

A project adds or corrects prices in its config (``[tool.llmregress.prices]`` in
``pyproject.toml``, ``[prices]`` in ``llmregress.toml``), a table per model id::

    [tool.llmregress.prices."claude-sonnet-4-6"]   # corrects the bundled row's input price
    input = 2.7
    source = "our contract, 2026-12"

    [tool.llmregress.prices."openai:llama-3.3-70b"]  # a model the team serves itself
    input = 0.0
    output = 0.0

A ``provider:`` prefix names the provider; without one, the entry prices the id whichever
provider serves it. A model the bundled table does not know needs ``input`` and ``output``.

:meth:`PriceTable.cost` prices one :class:`~pytest_llmregress.providers.base.Completion`: its
input tokens at the input price and its output tokens at the output price. The completion's
resolved model (the snapshot that answered) is looked up first, then the id requested. The
batch prices price the calls of ``--llm-batch`` runs; cached-input prices are kept for reports
of their own (a completion does not record cached prompt tokens).
"""

from __future__ import annotations

import csv
import functools
import io
import math
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import date
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pytest_llmregress.core.validation import (
    KeyedError,
    did_you_mean,
    is_number,
    type_and_repr,
)

if TYPE_CHECKING:
    from pytest_llmregress.providers.base import Completion

CSV_COLUMNS: Final = (
    "provider",
    "model_id",
    "input",
    "output",
    "cached_input",
    "batch_input",
    "batch_output",
    "as_of",
    "source",
)
PRICE_KEYS: Final = ("input", "output", "cached_input", "batch_input", "batch_output")
OVERRIDE_KEYS: Final = (*PRICE_KEYS, "as_of", "source")
PROVIDERS: Final = ("anthropic", "openai")
PER_TOKENS: Final = 1_000_000
"""Prices are per this many tokens."""


class PriceError(KeyedError):
    """Bad price data or a bad override; the message names the file and the key."""


@dataclass(frozen=True)
class ModelPrice:
    """One model's prices, USD per million tokens. ``provider`` None: any provider."""

    provider: str | None
    model_id: str
    input: float
    output: float
    cached_input: float | None = None
    batch_input: float | None = None
    batch_output: float | None = None
    as_of: date | None = None
    """The day the price was read from its source; None for a project's price without one."""
    source: str = ""

    @property
    def batch(self) -> tuple[float, float]:
        """(input, output) through the Batch API: the table's batch prices, or half the
        standard ones where a row has none (both providers' batch discount)."""
        return (
            self.input / 2 if self.batch_input is None else self.batch_input,
            self.output / 2 if self.batch_output is None else self.batch_output,
        )

    def cost(self, input_tokens: int, output_tokens: int, *, batch: bool = False) -> float:
        """USD for the tokens at the standard (not cached) prices, or the batch prices."""
        price_in, price_out = self.batch if batch else (self.input, self.output)
        return (input_tokens * price_in + output_tokens * price_out) / PER_TOKENS

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["as_of"] = self.as_of.isoformat() if self.as_of else None
        return data


def _key(provider: str | None, model_id: str) -> tuple[str | None, str]:
    return (provider, model_id.strip())


class PriceTable:
    """Prices by (provider, model id). Immutable: :meth:`with_overrides` returns a new one."""

    def __init__(self, prices: Iterable[ModelPrice], *, overridden: bool = False) -> None:
        self._prices: dict[tuple[str | None, str], ModelPrice] = {}
        for price in prices:
            self._prices[_key(price.provider, price.model_id)] = price
        self.overridden = overridden
        """True when a project's entries were applied."""

    def __iter__(self) -> Iterator[ModelPrice]:
        return iter(self._prices.values())

    def __len__(self) -> int:
        return len(self._prices)

    def lookup(self, provider: str | None, model_id: str) -> ModelPrice | None:
        """The price of ``model_id`` served by ``provider``: its own row, else a row for any
        provider; None when the table has neither."""
        found = self._prices.get(_key(provider, model_id))
        return found if found is not None else self._prices.get(_key(None, model_id))

    def price_of(self, completion: Completion) -> ModelPrice | None:
        """The price of the model that answered: the resolved snapshot, else the id asked."""
        for model in (completion.resolved_model, completion.requested_model):
            if model:
                found = self.lookup(completion.provider, model)
                if found is not None:
                    return found
        return None

    def cost(self, completion: Completion) -> float | None:
        """USD for the completion's tokens; None when its model's price is unknown."""
        price = self.price_of(completion)
        if price is None:
            return None
        return price.cost(completion.input_tokens, completion.output_tokens, batch=completion.batch)

    def with_overrides(
        self, entries: Mapping[str, object], *, path: Path | None = None, prefix: str = "prices."
    ) -> PriceTable:
        """A copy with a project's ``{model id: {input, output, ...}}`` entries applied.

        An entry for a priced id replaces the fields it gives (and its source); an entry for a
        new id needs ``input`` and ``output``. Errors name ``path`` and the key.
        """
        merged = dict(self._prices)
        for raw_id, raw in entries.items():
            where = f"{prefix}{raw_id}"
            provider, sep, name = str(raw_id).partition(":")
            if not sep or provider not in PROVIDERS:
                provider, name = "", str(raw_id)
            name = name.strip()
            if not name:
                raise PriceError.at("expected a model id", path=path, key=where)
            values = parse_override(raw, where=where, path=path)
            values["source"] = values.get("source") or f"{path or 'project'}: {where}"
            values.setdefault("as_of", None)
            # A prefixed id prices that provider's; an unprefixed one every provider's.
            bases = [
                price
                for key, price in merged.items()
                if key[1] == name and (not provider or key[0] in (provider, None))
            ]
            if not bases:
                missing = [key for key in ("input", "output") if key not in values]
                if missing:
                    raise PriceError.at(
                        f"no bundled price for {name!r}: give {' and '.join(missing)} "
                        "(USD per million tokens)",
                        path=path,
                        key=where,
                    )
                bases = [ModelPrice(provider or None, name, values["input"], values["output"])]
            for base in bases:
                if provider and base.provider is None:
                    base = replace(base, provider=provider)
                updated = replace(base, **values)
                merged[_key(updated.provider, updated.model_id)] = updated
        return PriceTable(merged.values(), overridden=self.overridden or bool(entries))


def _number(value: object, key: str, path: Path | None) -> float:
    if is_number(value) and math.isfinite(float(value)) and float(value) >= 0:  # type: ignore[arg-type]
        return float(value)  # type: ignore[arg-type]
    raise PriceError.at(
        f"expected a price in USD per million tokens (a number, 0 or more), got "
        f"{type_and_repr(value)}",
        path=path,
        key=key,
    )


def parse_override(raw: object, *, where: str, path: Path | None = None) -> dict[str, Any]:
    """One project entry's given fields, validated; errors name ``path`` and ``where.key``."""
    if not isinstance(raw, Mapping):
        raise PriceError.at(
            f"expected a table of prices (input, output, ...), got {type_and_repr(raw)}",
            path=path,
            key=where,
        )
    values: dict[str, Any] = {}
    for key in sorted(raw, key=str):
        here, value = f"{where}.{key}", raw[key]
        if key not in OVERRIDE_KEYS:
            raise PriceError.at(
                f"unknown key (allowed: {', '.join(OVERRIDE_KEYS)})"
                f"{did_you_mean(str(key), OVERRIDE_KEYS)}",
                path=path,
                key=here,
            )
        if key in PRICE_KEYS:
            values[key] = _number(value, here, path)
        elif key == "as_of":
            values[key] = _date(value, here, path)
        elif not isinstance(value, str):
            raise PriceError.at(
                f"expected a string, got {type_and_repr(value)}", path=path, key=here
            )
        else:
            values[key] = value.strip()
    return values


def _date(value: object, key: str, path: Path | None) -> date:
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise PriceError.at(
        f"expected a date YYYY-MM-DD, got {type_and_repr(value)}", path=path, key=key
    )


def _optional(text: str, where: str) -> float | None:
    return _csv_number(text, where) if text else None


def _csv_number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PriceError(f"{where}: expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise PriceError(f"{where}: expected a price of 0 or more, got {text!r}")
    return value


def parse_prices_csv(text: str, *, origin: str = "prices.csv") -> list[ModelPrice]:
    """Parse price CSV text (the bundled format); errors name the line and the column."""
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
        raise PriceError(f"{origin}: expected columns {', '.join(CSV_COLUMNS)}")
    prices = []
    for row in reader:
        where = f"{origin}:{reader.line_num}"
        if row["provider"] not in PROVIDERS:
            raise PriceError(f"{where}: unknown provider {row['provider']!r}")
        try:
            as_of = date.fromisoformat(row["as_of"])
        except ValueError:
            raise PriceError(f"{where}: as_of: expected a date, got {row['as_of']!r}") from None
        prices.append(
            ModelPrice(
                provider=row["provider"],
                model_id=row["model_id"],
                input=_csv_number(row["input"], f"{where}: input"),
                output=_csv_number(row["output"], f"{where}: output"),
                cached_input=_optional(row["cached_input"], f"{where}: cached_input"),
                batch_input=_optional(row["batch_input"], f"{where}: batch_input"),
                batch_output=_optional(row["batch_output"], f"{where}: batch_output"),
                as_of=as_of,
                source=row["source"],
            )
        )
    return prices


@functools.cache
def bundled_prices() -> PriceTable:
    """The price table shipped with the package, loaded on first use and cached."""
    text = resources.files("pytest_llmregress.models").joinpath("prices.csv").read_text("utf-8")
    return PriceTable(parse_prices_csv(text))


def price_overrides(path: Path) -> tuple[dict[str, object], str]:
    """The raw ``prices`` table of a config file and the key prefix its errors use:
    ``tool.llmregress.prices`` of a ``pyproject.toml``, top-level ``prices`` otherwise."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PriceError(f"{path}: cannot read prices: {exc}", path=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise PriceError(f"{path}: invalid TOML: {exc}", path=path) from None
    prefix = ""
    if path.name == "pyproject.toml":
        tool = doc.get("tool", {})
        doc = tool.get("llmregress", {}) if isinstance(tool, dict) else {}
        prefix = "tool.llmregress."
    section = doc.get("prices", {}) if isinstance(doc, dict) else {}
    if not isinstance(section, dict):
        raise PriceError.at(
            f"expected a table of model ids, got {type_and_repr(section)}",
            path=path,
            key=f"{prefix}prices",
        )
    return section, f"{prefix}prices."


def load_prices(config_path: Path | None = None) -> PriceTable:
    """The bundled table with the prices of the config file at ``config_path`` (the model
    config's file: ``pyproject.toml`` or ``llmregress.toml``) applied; the bundled table
    alone without one."""
    table = bundled_prices()
    if config_path is None:
        return table
    entries, prefix = price_overrides(config_path)
    return table.with_overrides(entries, path=config_path, prefix=prefix) if entries else table


def project_prices(folder: Path) -> PriceTable:
    """The bundled prices with those of the project in ``folder`` (``llmregress.toml``, else
    ``pyproject.toml``), for commands that read stored results (``llmregress compare``,
    ``llmregress report``); a ``PriceError`` naming file and key."""
    config = next(
        (p for p in (folder / "llmregress.toml", folder / "pyproject.toml") if p.is_file()), None
    )
    return load_prices(config)


def cost(completion: Completion, table: PriceTable | None = None) -> float | None:
    """USD for one completion's tokens (``table``: default the bundled one); None when its
    model's price is unknown."""
    return (table or bundled_prices()).cost(completion)
