"""The configuration tree: shipped defaults, --config files, TTRL_* variables, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from ttrl.config import (
    DEFAULT_DB_URL,
    ConfigError,
    Settings,
    deep_merge,
    default_config_path,
    load_settings,
)


def test_shipped_default_yaml_loads_and_names_only_known_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TTRL_DB_URL", raising=False)
    shipped = yaml.safe_load(default_config_path().read_text())
    cfg = load_settings()
    assert cfg.db_url == shipped["db_url"] == DEFAULT_DB_URL
    assert cfg.queue.lease_s == shipped["queue"]["lease_s"]
    Settings.model_validate(shipped)  # extra="forbid": a typo in the shipped file fails here


def test_config_file_deep_merges_over_defaults(tmp_path: Path) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text("queue:\n  lease_s: 42\n")
    cfg = load_settings(f)
    assert cfg.queue.lease_s == 42
    assert cfg.queue.max_attempts == load_settings().queue.max_attempts


def test_environment_beats_file_and_override_beats_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text("db_url: sqlite:///from-file.db\nqueue:\n  lease_s: 42\n")
    monkeypatch.setenv("TTRL_QUEUE__LEASE_S", "7")
    monkeypatch.setenv("TTRL_DB_URL", "sqlite:///from-env.db")
    cfg = load_settings(f)
    assert (cfg.queue.lease_s, cfg.db_url) == (7, "sqlite:///from-env.db")
    assert load_settings(f, db_url="sqlite:///from-cli.db").db_url == "sqlite:///from-cli.db"
    assert load_settings(f, db_url=None).db_url == "sqlite:///from-env.db"


@pytest.mark.parametrize(
    ("content", "message"),
    [("queue: [1, 2\n", "not valid YAML"), ("- a\n- b\n", "must hold a mapping")],
)
def test_unusable_files_are_named(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(content)
    with pytest.raises(ConfigError, match=message) as exc:
        load_settings(f)
    assert str(f) in str(exc.value)


def test_missing_file_and_unknown_or_invalid_fields(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")
    f = tmp_path / "typo.yaml"
    f.write_text("queue:\n  leas_s: 3\n")
    with pytest.raises(ValidationError, match="leas_s"):
        load_settings(f)
    f.write_text("queue:\n  lease_s: -1\n")
    with pytest.raises(ValidationError, match="lease_s"):
        load_settings(f)


def test_deep_merge() -> None:
    assert deep_merge({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"b": 3}, "e": 4}) == {
        "a": {"b": 3, "c": 2},
        "d": 1,
        "e": 4,
    }


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")),
    ids=lambda p: p.name,
)
def test_every_shipped_config_is_valid(path: Path) -> None:
    load_settings(path)


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("TTRL_DEAMON__VOTES", "TTRL_DAEMON__VOTES"),
        ("TTRL_DB_ULR", "TTRL_DB_URL"),
        ("TTRL_QUEUES__LEASE_S", "TTRL_QUEUE__LEASE_S"),
    ],
)
def test_a_misspelt_ttrl_variable_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, meant: str
) -> None:
    """Ignored before: the defaults ran and the command exited 0."""
    monkeypatch.setenv(name, "3")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert name in str(exc.value) and f"did you mean {meant}?" in str(exc.value)


def test_other_ttrl_variables_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "TTRL_TEST_PG_URL",
        "TTRL_BENCH_PG_URL",
        "TTRL_CRASH_AT",
        "TTRL_PG_PASSWORD",
        "TTRL_DATABASE__IO_TIMEOUT_S",
    ):
        monkeypatch.setenv(name, "5")
    assert load_settings().database.io_timeout_s == 5


def test_secrets_are_masked_when_shown() -> None:
    from ttrl.config import masked

    cfg = load_settings(
        db_url="postgresql://ttrl:hunter2@db:5432/ttrl?sslpassword=pw&sslmode=require"
    )
    shown = masked(cfg)
    assert "hunter2" not in str(shown) and "pw" not in shown["db_url"]
    assert shown["db_url"] == "postgresql://ttrl:***@db:5432/ttrl?sslmode=require&sslpassword=***"
    assert cfg.db_url.endswith("sslmode=require")  # the settings themselves are untouched


def test_the_trainer_follows_the_engine_sampling_and_refuses_a_contradiction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rl.temperature and rl.max_completion_tokens used to be overwritten silently."""
    from ttrl.daemon.startup import rl_config

    f = tmp_path / "mine.yaml"
    f.write_text("engine:\n  sampling:\n    temperature: 0.8\n    max_new_tokens: 96\n")
    rl = rl_config(load_settings(f))
    assert (rl.temperature, rl.max_completion_tokens) == (0.8, 96)
    monkeypatch.setenv("TTRL_RL__TEMPERATURE", "0.8")
    assert rl_config(load_settings(f)).temperature == 0.8  # the same value: no contradiction
    monkeypatch.setenv("TTRL_RL__TEMPERATURE", "0.6")
    with pytest.raises(ConfigError, match=r"rl.temperature=0.6 differs from engine.sampling"):
        rl_config(load_settings(f))
    monkeypatch.delenv("TTRL_RL__TEMPERATURE")
    monkeypatch.setenv("TTRL_RL__MAX_COMPLETION_TOKENS", "64")
    with pytest.raises(ConfigError, match=r"engine.sampling.max_new_tokens=96"):
        rl_config(load_settings(f))
