"""The one configuration tree of ttrl.

Precedence, highest first: explicit overrides (``--db``), ``TTRL_*`` environment variables
(nested with ``__``: ``TTRL_QUEUE__LEASE_S=60``), the ``--config FILE`` YAML, the shipped
``configs/default.yaml``, then the defaults below. YAML files are deep-merged, so a user file
only names what it changes.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from contextvars import ContextVar
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ttrl.answers.config import AnswersConfig
from ttrl.config.daemon import DaemonConfig, GuardConfig
from ttrl.db.config import DatabaseConfig
from ttrl.engines.config import EngineConfig
from ttrl.rl.config import RLConfig

DEFAULT_DB_URL = "sqlite:///ttrl.db"


class ConfigError(ValueError):
    """A configuration file or value is unusable; the message names it."""


class QueueConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lease_s: float = Field(300.0, gt=0, description="Claim lifetime after the last renewal.")
    max_attempts: int = Field(3, ge=1, description="Claims of one pass before it is failed.")
    claim_batch: int = Field(8, ge=1, description="Problems claimed per round.")
    default_passes: int = Field(1, ge=1, description="Passes wanted when a problem omits it.")


class IntakeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_prompt_chars: int = Field(32768, ge=1)
    max_line_bytes: int = Field(1 << 20, ge=1)
    default_batch: str = "default"


class Settings(BaseSettings):
    """Effective configuration of one ttrl process."""

    model_config = SettingsConfigDict(env_prefix="TTRL_", env_nested_delimiter="__", extra="forbid")

    db_url: str = DEFAULT_DB_URL
    database: DatabaseConfig = DatabaseConfig()
    queue: QueueConfig = QueueConfig()
    intake: IntakeConfig = IntakeConfig()
    answers: AnswersConfig = AnswersConfig()
    engine: EngineConfig = EngineConfig()
    rl: RLConfig = RLConfig()
    daemon: DaemonConfig = DaemonConfig()
    guard: GuardConfig = GuardConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlFilesSource(settings_cls))


_yaml_files: ContextVar[tuple[Path, ...]] = ContextVar("ttrl_yaml_files", default=())


class _YamlFilesSource(PydanticBaseSettingsSource):
    """Deep-merges the YAML files chosen by :func:`load_settings`, later files winning."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ supplies the whole mapping at once

    def __call__(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for path in _yaml_files.get():
            merged = deep_merge(merged, read_yaml(path))
        return merged


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``override``, recursing into nested mappings."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    """Read one YAML config file; a clear :class:`ConfigError` when it is unusable."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping at the top, not {type(data).__name__}"
        )
    return data


def default_config_path() -> Path:
    """The shipped ``configs/default.yaml``."""
    return Path(str(resources.files("ttrl.configs") / "default.yaml"))


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the effective :class:`Settings` (see the module docstring for precedence).

    ``overrides`` with value ``None`` are ignored, so CLI options can be passed straight through.
    """
    check_environment()
    files = (default_config_path(),) + ((Path(config_file),) if config_file else ())
    token = _yaml_files.set(files)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    finally:
        _yaml_files.reset(token)


ENV_PREFIX = "TTRL_"
# TTRL_* names that are not settings: fault injection (ttrl.crashpoints), the test suite's
# and the benchmarks' own variables, the Grafana datasource's (ttrl/dashboards/grafana).
OTHER_ENV_NAMES = frozenset({"TTRL_CRASH_AT"})
OTHER_ENV_PREFIXES = ("TTRL_TEST_", "TTRL_BENCH_", "TTRL_PG_")


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Refuse ``TTRL_*`` variables that name no setting (``TTRL_DEAMON__VOTES``,
    ``TTRL_DB_ULR``): pydantic-settings would ignore them and the defaults would run.
    Names below a known section are checked by the section itself (``extra="forbid"``)."""
    if environ is None:
        environ = os.environ
    fields = {name.upper() for name in Settings.model_fields}
    unknown = []
    for name in environ:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in OTHER_ENV_NAMES:
            continue
        if upper.startswith(OTHER_ENV_PREFIXES):
            continue
        top, _, rest = upper[len(ENV_PREFIX) :].partition("__")
        if top in fields:
            continue
        guess = difflib.get_close_matches(top, fields, n=1, cutoff=0.6)
        hint = (
            f"; did you mean {ENV_PREFIX}{guess[0]}{'__' + rest if rest else ''}?" if guess else ""
        )
        unknown.append(f"{name}{hint}")
    if unknown:
        known = ", ".join(f"{ENV_PREFIX}{f}" for f in sorted(fields))
        raise ConfigError(
            "unknown TTRL_ environment variable(s): "
            + "; ".join(unknown)
            + f". Settings are {known} (sections nested with __, e.g. TTRL_DAEMON__VOTES)"
        )


SECRET_WORDS = ("password", "secret", "token")
MASK = "***"


def masked(cfg: Settings) -> dict[str, Any]:
    """The settings as plain data with secrets masked: the password of ``db_url`` (in the
    userinfo or a ``password=`` parameter) and any value whose key names a secret."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    data = cfg.model_dump(mode="json")
    try:
        url = make_url(cfg.db_url)
        query = {k: (MASK if _secret(k) else v) for k, v in url.query.items()}
        shown = url.set(query=query).render_as_string(hide_password=True)
        data["db_url"] = shown.replace("%2A%2A%2A", MASK)
    except ArgumentError:  # not a URL at all: nothing in it is recognisably a password
        pass
    return _mask(data)


def _secret(key: str) -> bool:
    return any(word in key.lower() for word in SECRET_WORDS)


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (MASK if _secret(k) and v not in (None, "") else _mask(v)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value
