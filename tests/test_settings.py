"""Settings live in one object: defaults, ``VPOP_*`` variables, an optional TOML file.

Also holds the house rule that ``vpop/core/settings.py`` is the only reader of the
process environment under ``vpop/`` and ``webhooks/``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from vpop.core.errors import ConfigError
from vpop.core.settings import PROJECT_ROOT, Settings, load_settings, os_user
from vpop.monitoring.service import MonitorSettings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``VPOP_*`` variable of the caller's shell (or of conftest) reaches these tests."""
    for name in list(os.environ):
        if name.upper().startswith("VPOP_"):
            monkeypatch.delenv(name)


def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    """Write ``text`` as the config file and point ``VPOP_CONFIG`` at it."""
    path = tmp_path / "vpop.toml"
    path.write_text(text)
    monkeypatch.setenv("VPOP_CONFIG", str(path))
    return path


def one_line(err: pytest.ExceptionInfo[ConfigError]) -> str:
    """The error's message, checked to be one line."""
    message = err.value.message
    assert "\n" not in message
    return message


def test_defaults() -> None:
    settings = load_settings()
    assert settings.lab_dir == Path("/run/vpop-lab")
    assert settings.lab_hosts_file == Path("/run/vpop-lab/hosts.yaml")
    assert settings.database_url == f"sqlite:///{PROJECT_ROOT}/var/vpop.sqlite"
    assert settings.queue_url == f"sqlite:///{PROJECT_ROOT}/var/queue.sqlite"
    assert settings.inventory_hosts == ""
    assert settings.state_dir == Path("/var/lib/vpop")
    assert settings.secret_key is None
    assert settings.router_password is None
    assert settings.webhook_secrets == ""
    assert settings.callback_allow_private is False
    assert settings.session_cookie_secure is False
    assert settings.portal_link_max_age == 86400
    assert (settings.poll_counters_seconds, settings.poll_probes_seconds) == (5, 10)
    assert settings.poll_batch == 8
    assert (settings.retention_raw_days, settings.retention_rollup_days) == (7, 400)
    assert settings.probe_target is None  # the lab's service address, filled by monitoring


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPOP_LAB_DIR", "/srv/lab")
    monkeypatch.setenv("VPOP_POLL_COUNTERS_SECONDS", "2.5")
    monkeypatch.setenv("VPOP_PROBE_COUNT", "7")
    monkeypatch.setenv("VPOP_CALLBACK_ALLOW_PRIVATE", "1")
    monkeypatch.setenv("VPOP_ROUTER_PASSWORD", "hunter2")
    monkeypatch.setenv("VPOP_NOT_A_SETTING", "ignored")
    settings = load_settings()
    assert settings.lab_hosts_file == Path("/srv/lab/hosts.yaml")
    assert settings.poll_counters_seconds == 2.5
    assert settings.probe_count == 7
    assert settings.callback_allow_private is True
    assert isinstance(settings.router_password, SecretStr)
    assert settings.router_password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings)


def test_environment_is_read_on_each_call_not_at_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().inventory_hosts == ""
    monkeypatch.setenv("VPOP_INVENTORY_HOSTS", "/etc/vpop/hosts.yaml")
    assert load_settings().inventory_hosts == "/etc/vpop/hosts.yaml"
    monkeypatch.setenv("VPOP_INVENTORY_HOSTS", "")  # empty counts as unset
    assert load_settings().inventory_hosts == ""


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.lab_dir = Path("/tmp")  # type: ignore[misc]


def test_config_file_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(
        tmp_path,
        monkeypatch,
        'lab_dir = "/srv/lab"\nprobe_count = 3\nsecret_key = "from-the-file"\n',
    )
    monkeypatch.setenv("VPOP_PROBE_COUNT", "9")
    settings = load_settings()
    assert settings.lab_dir == Path("/srv/lab")  # from the file
    assert settings.probe_count == 9  # the variable overrides the file
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == "from-the-file"


def test_a_changed_config_file_is_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, monkeypatch, "probe_count = 3\n")
    assert load_settings().probe_count == 3
    path.write_text("probe_count = 40\n")
    assert load_settings().probe_count == 40


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("VPOP_POLL_COUNTERS_SECONDS", "soon", "valid number"),
        ("VPOP_POLL_COUNTERS_SECONDS", "0", "greater than 0"),
        ("VPOP_PROBE_COUNT", "2.5", "valid integer"),
        ("VPOP_POLL_BATCH", "0", "greater than or equal to 1"),
        ("VPOP_POLL_BATCH", "65", "less than or equal to 64"),
        # a throughput figure older than 5 minutes is not shown: tests must come sooner
        ("VPOP_PROBE_THROUGHPUT_EVERY_SECONDS", "600", "less than or equal to 240"),
        ("VPOP_PROBE_THROUGHPUT_EVERY_SECONDS", "-1", "greater than or equal to 0"),
        ("VPOP_CALLBACK_ALLOW_PRIVATE", "maybe", "valid boolean"),
    ],
)
def test_a_bad_variable_is_a_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, why: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = one_line(err)
    assert message.startswith(f"{name}: ")
    assert why in message and repr(value) in message


def test_a_bad_value_in_the_file_names_the_file_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, monkeypatch, 'prune_seconds = "hourly"\n')
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert one_line(err).startswith(f"VPOP_CONFIG={path}: prune_seconds: ")


def test_a_bad_secret_is_not_echoed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, monkeypatch, "router_password = 123456789\n")
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = one_line(err)
    assert "router_password" in message and "123456789" not in message


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (None, "no such file"),
        ("lab_dir = /srv/lab\n", "not valid TOML"),
        ('lab_dri = "/srv/lab"\n', "unknown key(s) ['lab_dri']"),
    ],
    ids=["missing", "not-toml", "unknown-key"],
)
def test_a_bad_config_file_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str | None, why: str
) -> None:
    path = tmp_path / "vpop.toml"
    if text is not None:
        path.write_text(text)
    monkeypatch.setenv("VPOP_CONFIG", str(path))
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = one_line(err)
    assert message.startswith(f"VPOP_CONFIG={path}: ") and why in message


def test_monitor_settings_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from vpop.lab.service import SERVICE_ADDRESS

    monkeypatch.setenv("VPOP_POLL_PROBES_SECONDS", "1.5")
    monkeypatch.setenv("VPOP_RETENTION_RAW_DAYS", "2")
    monitor = MonitorSettings(counters_seconds=0.5)
    assert monitor.counters_seconds == 0.5  # given
    assert monitor.probes_seconds == 1.5  # from the environment
    assert monitor.raw_days == 2
    assert monitor.probe_count == 20  # default
    assert monitor.throughput_every_seconds == 60  # default
    assert monitor.probe_target == SERVICE_ADDRESS
    monkeypatch.setenv("VPOP_PROBE_TARGET", "192.0.2.1")
    assert MonitorSettings().probe_target == "192.0.2.1"


def test_os_user_prefers_the_login_behind_sudo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "root")
    monkeypatch.setenv("SUDO_USER", "alice")
    assert os_user() == "alice"
    monkeypatch.delenv("SUDO_USER")
    assert os_user() == "root"


def test_every_setting_has_a_documented_variable() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    missing = [
        name
        for name in Settings.model_fields
        if f"VPOP_{name.upper()}" not in readme
        and not re.search(rf"`VPOP_{name.upper().split('_')[0]}_\*`", readme)
    ]
    assert missing == [], "add these settings to the README's settings table"


ENVIRONMENT_READERS = re.compile(r"os\.environ|os\.getenv|getenv\(|from_prefixed_env|\benviron\b")


# the thin client reads VPOP_SERVER_URL and VPOP_API_TOKEN_FILE itself: `vpop select` against
# a server must not import pydantic (docs/cli.md)
ENVIRONMENT_READING_MODULES = (
    PROJECT_ROOT / "vpop" / "core" / "settings.py",
    PROJECT_ROOT / "vpop" / "cli" / "remote.py",
)


def test_only_the_settings_module_reads_the_environment() -> None:
    offenders = sorted(
        f"{path.relative_to(PROJECT_ROOT)}:{number}: {line.strip()}"
        for package in ("vpop", "webhooks")
        for path in (PROJECT_ROOT / package).rglob("*.py")
        if path not in ENVIRONMENT_READING_MODULES
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if ENVIRONMENT_READERS.search(line)
    )
    assert offenders == [], "read settings through vpop.core.settings.load_settings()"
