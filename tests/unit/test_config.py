"""Settings precedence: flags > env > file > defaults, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfyfleet.config import load_settings
from comfyfleet.errors import ConfigError


def test_defaults_without_file_or_env(tmp_path: Path) -> None:
    s = load_settings(env={}, config_file=tmp_path / "missing.toml")
    assert s.profile == "default"
    assert s.comfy.token is None
    assert s.run.out_dir == Path("outputs")


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('profile = "sandbox"\n[comfy]\nrequest_timeout = 11\npoll_interval = 3\n')
    env = {"COMFYFLEET_PROFILE": "default", "COMFYFLEET_COMFY__REQUEST_TIMEOUT": "22"}
    s = load_settings({"comfy": {"request_timeout": 33}}, env=env, config_file=cfg)
    assert s.comfy.request_timeout == 33
    assert s.comfy.poll_interval == 3
    assert s.profile == "default"
    s = load_settings({}, env=env, config_file=cfg)
    assert s.comfy.request_timeout == 22
    s = load_settings({}, env={}, config_file=cfg)
    assert s.profile == "sandbox"


def test_config_file_from_env_variable(tmp_path: Path) -> None:
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text("[run]\ntimeout = 5\n")
    s = load_settings(env={"COMFYFLEET_CONFIG": str(cfg)})
    assert s.run.timeout == 5


def test_token_is_secret(tmp_path: Path) -> None:
    s = load_settings(env={"COMFYFLEET_COMFY__TOKEN": "s3cr3t"}, config_file=tmp_path / "x")
    assert s.comfy.token is not None
    assert "s3cr3t" not in repr(s)
    assert s.comfy.token.get_secret_value() == "s3cr3t"


def test_bad_value_names_key_and_sources(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"COMFYFLEET_COMFY__POLL_INTERVAL": "-1"}, config_file=tmp_path / "x")
    assert "comfy.poll_interval" in str(info.value)
    assert "COMFYFLEET_" in str(info.value)


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("[comfy]\ntokn = 'x'\n")
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, config_file=cfg)
    assert "comfy.tokn" in str(info.value)


def test_broken_toml_is_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("profile = \n")
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, config_file=cfg)
    assert str(cfg) in str(info.value)
