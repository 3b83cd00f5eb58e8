"""Settings: one object, read in one place, from ``VPOP_*`` variables and an optional file.

Every setting of vpop is a field of :class:`Settings`; nothing else under ``vpop/`` reads
the process environment (a test holds this), so this module is the whole list of what an
operator can set. Each field is read from the variable ``VPOP_<FIELD NAME>`` (``lab_dir``
from ``VPOP_LAB_DIR``); ``VPOP_CONFIG`` may name a TOML file whose keys are the field names
(``lab_dir = "/srv/lab"``), and a variable overrides the same key of the file. Empty
variables count as unset; ``VPOP_*`` variables that are no setting are ignored.

Secrets (router credentials, webhook keys) are never defaults: they come from the
environment, the config file or files outside the repository (the lab writes its own under
``VPOP_LAB_DIR``), and are held as :class:`~pydantic.SecretStr` so that they do not show
up in a printed settings object.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from vpop.core.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]

ENV_PREFIX = "VPOP_"
CONFIG_VARIABLE = f"{ENV_PREFIX}CONFIG"

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class Settings(BaseSettings):
    """Runtime settings of every part of vpop; build with :func:`load_settings`.

    Fields are grouped by the part that reads them. Defaults that belong to another room
    (the lab's namespace prefix, the lab's service address) are ``None`` here and filled
    in by that room, so that ``vpop.core`` imports nothing above it.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    # storage
    database_url: str = f"sqlite:///{PROJECT_ROOT}/var/vpop.sqlite"
    queue_url: str = f"sqlite:///{PROJECT_ROOT}/var/queue.sqlite"

    # the lab
    lab_dir: Path = Path("/run/vpop-lab")
    lab_prefix: str | None = None  # None: vpop.lab's NAMESPACE_PREFIX ("vpop-")
    lab_crash_at: str = ""  # fault injection for tests: the step of `lab up` to die at

    # routers (Nornir)
    inventory_hosts: str = ""
    router_username: str | None = None
    router_password: SecretStr | None = None
    router_key_file: str | None = None
    # the OpenSSH known-hosts file pinning the routers' host keys (docs/security.md);
    # None: `known_hosts` beside the inventory's hosts file
    known_hosts: Path | None = None

    # the server's own key and state
    secret_key: SecretStr | None = None
    state_dir: Path = Path("/var/lib/vpop")

    # webhooks, callbacks and pages
    webhook_secrets: str = ""  # comma-separated whsec_... secrets
    callback_secret: SecretStr | None = None
    callback_allow_private: bool = False
    session_cookie_secure: bool = False
    portal_link_max_age: Annotated[int, Field(gt=0)] = 86400
    # the address subscribers and ISPs reach vpop's pages at (portal and consent links)
    public_url: str = "http://127.0.0.1:8080"

    # the CLI: a running server to submit to (else the CLI takes the router lock itself),
    # and the file holding the API token it submits with (outside the repository)
    server_url: str | None = None
    api_token_file: Path | None = None

    # RADIUS (vpop/aaa): FreeRADIUS's ports on 127.0.0.1, the secret of a 127.0.0.1 client
    # for the lab, the ISP a line gets when no rule, selection or profile chooses one, the
    # interval the NAS sends interim updates at, and where CoA requests go on a NAS
    radius_auth_port: Annotated[int, Field(gt=0, lt=65536)] = 1812
    radius_acct_port: Annotated[int, Field(gt=0, lt=65536)] = 1813
    radius_secret: SecretStr | None = None
    radius_default_isp: str | None = None
    radius_interim_seconds: Annotated[int, Field(ge=60, le=86400)] = 300
    radius_coa_port: Annotated[int, Field(gt=0, lt=65536)] = 3799

    # locks (vpop/core/locks.py): a holder that stops renewing loses its lock after this
    lock_ttl_seconds: Annotated[float, Field(gt=0, le=30)] = 15

    # monitoring (docs/monitoring.md)
    poll_counters_seconds: PositiveFloat = 5
    # routers per counters job: asked at once, stored in one transaction (a job per batch)
    poll_batch: Annotated[int, Field(ge=1, le=64)] = 8
    poll_probes_seconds: PositiveFloat = 10
    prune_seconds: PositiveFloat = 3600
    retention_raw_days: PositiveFloat = 7
    retention_rollup_days: PositiveFloat = 400
    probe_count: Annotated[int, Field(ge=1)] = 20
    probe_interval: NonNegativeFloat = 0.01
    probe_throughput_seconds: NonNegativeFloat = 0.3
    # a router's ISPs get a throughput test when its last one is this old (0: every probe);
    # at most 240 s, so the figure shown (samples up to 5 minutes old) never goes stale
    probe_throughput_every_seconds: Annotated[float, Field(ge=0, le=240)] = 60
    probe_target: str | None = None  # None: vpop.lab's SERVICE_ADDRESS

    # leases (docs/leases.md): how often scheduled starts and planned ends are enforced
    lease_check_seconds: PositiveFloat = 10

    # payments and settlements (docs/payments.md)
    billing_currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    spending_limit_minor: Annotated[int, Field(ge=0, le=2**62)] = 5000  # per subscriber/month
    hold_days: Annotated[int, Field(ge=1, le=30)] = 7  # an uncaptured authorisation expires
    payment_check_seconds: PositiveFloat = 60  # how often expired holds are released
    # the routing centre's own bank account: debtor of payouts (pain.001), creditor of
    # direct debits (pain.008, with its SEPA creditor identifier)
    sepa_name: str = "vPoP routing centre"
    sepa_iban: str | None = None
    sepa_bic: str | None = None
    sepa_creditor_id: str | None = None

    @property
    def lab_hosts_file(self) -> Path:
        """The Nornir hosts file that ``vpop lab up`` writes."""
        return self.lab_dir / "hosts.yaml"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then ``VPOP_*`` variables, then the ``VPOP_CONFIG`` file.

        Earlier sources win. No ``.env`` file and no secrets directory are read: the
        environment and one named file are the whole story.
        """
        return init_settings, env_settings, ConfigFileSource(settings_cls)


class ConfigFileSource(TomlConfigSettingsSource):
    """The TOML file named by ``VPOP_CONFIG`` (none when unset), checked strictly.

    pydantic-settings skips a missing file silently and would ignore unknown keys; a
    setting an operator wrote into a file must not vanish that way, so both are refused.
    """

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        """Read and check the file now (each :class:`Settings` build reads it afresh).

        Args:
            settings_cls: The settings class whose field names are the allowed keys.

        Raises:
            ConfigError: the file is missing, unreadable, not TOML, or has unknown keys.
        """
        path = config_path()
        if path is None:
            super().__init__(settings_cls, toml_file=None)
            return
        if not path.is_file():
            raise ConfigError(f"{CONFIG_VARIABLE}={path}: no such file")
        try:
            super().__init__(settings_cls, toml_file=path)
        except OSError as err:
            raise ConfigError(f"{CONFIG_VARIABLE}={path}: cannot read it: {err}") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{CONFIG_VARIABLE}={path}: not valid TOML: {err}") from None
        unknown = sorted(set(map(str.lower, self.toml_data)) - set(settings_cls.model_fields))
        if unknown:
            raise ConfigError(
                f"{CONFIG_VARIABLE}={path}: unknown key(s) {unknown}; "
                "keys are setting names such as lab_dir"
            )


def config_path() -> Path | None:
    """The config file named by ``VPOP_CONFIG``, or None when the variable is unset."""
    value = os.environ.get(CONFIG_VARIABLE)
    return Path(value).expanduser() if value else None


def load_settings() -> Settings:
    """Read settings from the environment and the config file now (not at import time).

    The environment is read on every call, so a changed variable is seen at once; the
    settings built from it are reused while the ``VPOP_*`` variables and the config file
    (its modification time and size) stay the same, because building them costs about
    half a millisecond and sessions, polls and Nornir runs ask for them all the time.
    Reuse is safe: :class:`Settings` is frozen.

    Raises:
        ConfigError: one line naming the variable (or the config file's key) that is
            wrong and why, or what is wrong with the config file.
    """
    global _cached
    key = _sources_version()
    cached = _cached
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        settings = Settings()
    except ValidationError as err:
        raise ConfigError(_describe(err)) from None
    _cached = (key, settings)
    return settings


_cached: tuple[tuple[object, ...], Settings] | None = None


def _sources_version() -> tuple[object, ...]:
    """What the settings are built from: every ``VPOP_*`` variable and the file's version.

    Variable names are matched without regard to case, as pydantic-settings matches them.
    Read through ``os.environb`` (the same variables, as bytes): iterating ``os.environ``
    decodes every name and value, 33 us a call against 7 here, and every wake-up asks.
    """
    environ = os.environb
    prefix = ENV_PREFIX.encode()
    variables = tuple(sorted((k, environ[k]) for k in environ if k[:5].upper() == prefix))
    path = config_path()
    if path is None:
        return variables
    try:
        stat = path.stat()
    except OSError:
        return (*variables, None)  # missing: Settings() raises, nothing is cached
    return (*variables, stat.st_mtime_ns, stat.st_size, stat.st_ino)


def _describe(err: ValidationError) -> str:
    """One line for the first invalid setting: where it came from, what is wrong."""
    errors = err.errors()
    first = errors[0]
    name = str(first["loc"][0]) if first["loc"] else ""
    variable = f"{ENV_PREFIX}{name.upper()}"
    if any(k.upper() == variable and v for k, v in os.environ.items()):
        where = variable
    else:
        where = f"{CONFIG_VARIABLE}={config_path()}: {name}"
    shown = "" if _is_secret(name) else f" (got {first['input']!r})"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{shown}{more}"


def _is_secret(name: str) -> bool:
    """Whether the field ``name`` holds a secret, whose value must never be echoed."""
    field = Settings.model_fields.get(name)
    return field is None or "SecretStr" in str(field.annotation)


def os_user() -> str | None:
    """The login behind this process (``SUDO_USER``, else ``USER``), for audit records.

    Not a vpop setting, but read here so that this module stays the only reader of the
    environment.
    """
    return os.environ.get("SUDO_USER") or os.environ.get("USER") or None


def child_environment() -> dict[str, str]:
    """A copy of this process's environment, to hand to a child process as its own.

    Not settings: lab processes and ``vpop lab exec`` commands inherit the environment
    they were started from (``PATH``, locale, the ``VPOP_*`` variables of the lab under
    test). Read here so that this module stays the only reader of the environment.
    """
    return os.environ.copy()
