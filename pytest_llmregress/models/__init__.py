"""Model identity: classification, lifecycle data and the project's model config.

Light to import: only the standard library is loaded here. Provider SDKs (``openai`` for
:func:`refresh_from_openai_models`) and YAML (``llmregress models lint``) are imported where
they are used. Nothing in this package imports pytest.
"""

from __future__ import annotations

from pytest_llmregress.models.config import (
    CONFIG_FILENAME,
    ModelConfig,
    ModelConfigError,
    ModelRole,
    find_config_file,
    load_model_config,
)
from pytest_llmregress.models.ids import (
    DEFAULT_SURFACE,
    KINDS,
    PROVIDERS,
    SURFACES,
    Kind,
    ModelInfo,
    ParsedModelId,
    Provider,
    Surface,
    classify,
    is_model_id,
    parse_model_id,
)
from pytest_llmregress.models.lifecycle import (
    DEFAULT_WARNING_DAYS,
    LIFECYCLE_DATA_AS_OF,
    LifecycleData,
    LifecycleEntry,
    LifecycleError,
    LifecycleFinding,
    LifecycleOverride,
    bundled_lifecycle,
    check,
    load_overrides_file,
    parse_override,
    refresh_from_openai_models,
)
from pytest_llmregress.models.prices import (
    ModelPrice,
    PriceError,
    PriceTable,
    bundled_prices,
    load_prices,
)

__all__ = [
    "CONFIG_FILENAME",
    "DEFAULT_SURFACE",
    "DEFAULT_WARNING_DAYS",
    "KINDS",
    "LIFECYCLE_DATA_AS_OF",
    "PROVIDERS",
    "SURFACES",
    "Kind",
    "LifecycleData",
    "LifecycleEntry",
    "LifecycleError",
    "LifecycleFinding",
    "LifecycleOverride",
    "ModelConfig",
    "ModelConfigError",
    "ModelInfo",
    "ModelPrice",
    "ModelRole",
    "ParsedModelId",
    "PriceError",
    "PriceTable",
    "Provider",
    "Surface",
    "bundled_lifecycle",
    "bundled_prices",
    "check",
    "classify",
    "find_config_file",
    "is_model_id",
    "load_model_config",
    "load_overrides_file",
    "load_prices",
    "parse_model_id",
    "parse_override",
    "refresh_from_openai_models",
]
