"""Configuration: one YAML file, `${VAR}` interpolation, env overrides, secrets from files.

Precedence, highest first: `LEADBRIDGE_*` environment variables, the YAML file, defaults.
Sources and targets are lists in YAML but addressed by name from the environment:
`LEADBRIDGE_TARGETS__SALES__CLIENT_SECRET=…` sets `client_secret` of the target named
`sales`. Every problem is reported as a `ConfigProblem` naming the exact key and the fix,
so `leadbridge config check` can list them all at once.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from leadbridge.core.connector import (
    ConnectorConfig,
    WritesBack,
    connector_class,
    connector_kinds,
    kinds_of,
)
from leadbridge.core.domain.alerting import AlertSettings
from leadbridge.core.domain.console import ConsoleSettings  # issue 19
from leadbridge.core.domain.durations import Duration
from leadbridge.core.domain.qualify import QualificationSettings
from leadbridge.core.store.db import STORE_EXAMPLES, unsupported_store
from leadbridge.core.support import env, logs

ENV_PREFIX = "LEADBRIDGE_"
CONFIG_ENV = env.CONFIG_ENV  # the file: --config, or this variable
_INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
# A whole config — every source, target, field map and qualification rule — is a few
# hundred values. Anchors and aliases (`&a` / `*a`) let a few hundred bytes stand for
# billions (the "billion laughs"), which interpolation and validation would then build.
MAX_CONFIG_VALUES = 100_000
MAX_CONFIG_DEPTH = 64
MASK = "***"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # scheme://…
_SETTING = re.compile(r"^\s*[A-Za-z][\w .-]*=")  # Name=value, one part of a connection string
# Words that make a name carry a credential: URL query parameters (`?password=`, a SAS
# `sig=`, an Azure Functions `code=`), connection-string parts (`AccountKey=`), HTTP
# headers (`Authorization`, `X-Api-Key`). A name is split into words (`AccountKey` →
# account, key); a word that ends with one of these (`sslpassword`, `apikey`) counts.
_SECRET_WORDS = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "key",
    "sig",
    "signature",
    "code",
    "authorization",
    "cookie",
    "credential",
    "credentials",
)


@dataclass(frozen=True)
class ConfigProblem:
    key: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message} — {self.fix}"


class ConfigError(Exception):
    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpSettings(_Strict):
    """The daemon's HTTP server. The limits keep it answering when clients are hostile:
    a connection that dribbles its request (slow loris) is cut at `request_timeout`, an
    idle one at `idle_timeout`, and `health_port` gives the probes a listener of their own
    that a flood on `port` cannot fill (see docs/deploy.md)."""

    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=1, le=65535)
    health_port: int | None = Field(default=None, ge=1, le=65535)  # /healthz /readyz /metrics
    threads: int = Field(default=8, ge=1, le=256)  # requests served at once
    connection_limit: int = Field(default=1000, ge=2, le=100_000)  # open connections on `port`
    # each request's headers and body must have arrived within this
    request_timeout: Duration = Field(default=timedelta(seconds=10), gt=timedelta(0))
    # a connection silent this long is closed
    idle_timeout: Duration = Field(default=timedelta(seconds=30), gt=timedelta(0))
    unready_after_failures: int = Field(default=3, ge=1)  # a job failing this often in a row


class DeliverySettings(_Strict):
    """How the outbox is worked (every target)."""

    claim_ttl: Duration = Field(default=timedelta(minutes=2))  # a dead worker's claim expires
    max_attempts: int = Field(default=20, ge=1)  # retryable failures before dead-lettering
    retry_base: Duration = Field(default=timedelta(seconds=30))  # first back-off, doubling…
    retry_max: Duration = Field(default=timedelta(hours=1))  # …up to this
    fatal_retry: Duration = Field(default=timedelta(minutes=5))  # refused credentials: retry


class ClusterSettings(_Strict):
    """`engine: cluster`: how each replica works the shared procrastinate queue."""

    concurrency: int = Field(default=4, ge=1, le=64)  # jobs one replica runs at once
    heartbeat: Duration = Field(default=timedelta(seconds=5))  # replica row and worker beat
    stalled_after: Duration = Field(default=timedelta(seconds=30))  # silent replica = dead
    sweep_every: Duration = Field(default=timedelta(seconds=15))  # retry dead replicas' jobs
    queue: str = Field(default="leadbridge", pattern=r"^[A-Za-z0-9_\-]{1,100}$")


class ReportSettings(_Strict):
    sla_hours: float = Field(default=24.0, gt=0)  # Contact-me leads expect a call within a day


class RetentionSettings(_Strict):
    """How long personal data stays in landed raw leads (`raw_days`) and in quarantined ones
    (`quarantine_days`) before `db prune` (daily in the daemon) redacts it; null keeps it."""

    raw_days: int | None = Field(default=730, ge=1)
    quarantine_days: int | None = Field(default=90, ge=1)


class PrivacySettings(_Strict):
    """`suppression_key`: the secret of the suppression list's keyed hashes (`leads forget`).
    Keep it as long as the store: without it a forgotten person can't be recognised."""

    suppression_key: SecretStr | None = None


class ConnectorEntry(BaseModel):
    """A source or target as written in YAML; its own keys are checked by its connector."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
    kind: str


class Settings(BaseSettings):
    """The whole effective configuration."""

    model_config = SettingsConfigDict(extra="forbid")

    store: str = "sqlite:///leadbridge.db"
    engine: Literal["single", "cluster"] = "single"
    http: HttpSettings = Field(default_factory=HttpSettings)
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    sources: list[ConnectorEntry] = Field(default_factory=list)
    targets: list[ConnectorEntry] = Field(default_factory=list)
    qualification: QualificationSettings = Field(default_factory=QualificationSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    reports: ReportSettings = Field(default_factory=ReportSettings)
    test_leads: Literal["quarantine", "deliver"] = "quarantine"
    dnc: Literal["push_flagged", "skip"] = "push_flagged"
    offers: dict[str, str] = Field(default_factory=dict)  # offer display title → publisher.offer
    placeholder: str = "[not provided]"
    batch_size: int = Field(default=500, ge=1, le=10000)
    # A long ingest parses on a second process (core/ingest/parse_ahead.py); false keeps
    # every step in this one (a machine with one core, or to compare).
    parse_worker: bool = True
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    # --- alerts (issue 18) ---
    alerts: AlertSettings = Field(default_factory=AlertSettings)  # docs/alerts.md
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)  # issue 19, docs/console.md
    # --- people and companies (issue 16) ---

    _connectors: dict[str, ConnectorConfig] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = settings_cls.model_config.get("yaml_file") or os.environ.get(CONFIG_ENV)
        return (init_settings, YamlSource(settings_cls, yaml_file=yaml_file or None))

    def source(self, name: str) -> ConnectorConfig:
        return self._connectors[f"sources:{name}"]

    def target(self, name: str) -> ConnectorConfig:
        return self._connectors[f"targets:{name}"]

    def source_configs(self) -> list[ConnectorConfig]:
        return [self._connectors[f"sources:{e.name}"] for e in self.sources]

    def target_configs(self) -> list[ConnectorConfig]:
        return [self._connectors[f"targets:{e.name}"] for e in self.targets]

    def masked(self) -> dict[str, Any]:
        """The effective config as plain data with every secret replaced by asterisks:
        SecretStr fields (pydantic masks them), the store URL (SQLAlchemy parses it), and
        the credentials inside ordinary strings and header maps (`mask_secrets`)."""
        data = self.model_dump(mode="json", exclude={"sources", "targets", "store"})
        for section in ("sources", "targets"):
            data[section] = [
                self._connectors[f"{section}:{e.name}"].model_dump(mode="json")
                for e in getattr(self, section)
            ]
        return {"store": mask_url(self.store), **mask_secrets(data)}


class YamlSource(YamlConfigSettingsSource):
    """pydantic-settings' YAML source, with leadbridge's rules on top: a file that can't be
    read, broken YAML or an alias bomb is a problem naming the fix (not skipped, not a
    traceback); `${VAR}` is interpolated; `LEADBRIDGE_…` variables override any key, a
    source or target by its name (`LEADBRIDGE_TARGETS__SALES__CLIENT_SECRET`)."""

    def _read_files(self, files: Any, deep_merge: bool = False) -> dict[str, Any]:
        # The base skips a path that isn't a file; a config given and missing is a mistake.
        return {} if files is None else self._read_file(Path(files).expanduser())

    def _read_file(self, file_path: Path) -> dict[str, Any]:
        return read_yaml(file_path)

    def __call__(self) -> dict[str, Any]:
        problems: list[ConfigProblem] = []
        data: dict[str, Any] = interpolate(super().__call__(), "", problems)
        apply_env_overrides(data, os.environ, self.settings_cls, problems)
        if problems:
            raise ConfigError(problems)
        return data


@functools.cache
def _settings_for(path: Path | None) -> type[Settings]:
    """Settings reading this YAML file: pydantic-settings takes the file from the class's
    `model_config`, so each file gets its own (cached) subclass — no global to set."""
    if path is None:
        return Settings
    config = SettingsConfigDict(**{**Settings.model_config, "yaml_file": path})
    return type("Settings", (Settings,), {"model_config": config, "__module__": __name__})


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [
                ConfigProblem(
                    "--config",
                    f"cannot read {path} ({exc.strerror})",
                    f"pass --config PATH or set {CONFIG_ENV} to an existing YAML file",
                )
            ]
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        raise ConfigError(
            [
                ConfigProblem(
                    str(path),
                    f"not valid YAML at {where}: {getattr(exc, 'problem', exc)}",
                    "fix the YAML syntax there (indentation; quote values containing ': ' or '#')",
                )
            ]
        ) from exc
    if data is None:
        return {}
    refuse_alias_bombs(data, str(path))
    if not isinstance(data, dict):
        raise ConfigError(
            [
                ConfigProblem(
                    str(path),
                    "the top level is not a mapping",
                    "start the file with keys such as `store:` and `sources:`",
                )
            ]
        )
    return data


def refuse_alias_bombs(data: Any, where: str) -> None:
    """Count the values the YAML stands for, as a tree, before anything walks it.

    PyYAML loads aliases as shared references, so the load itself is cheap; but
    interpolation, validation and `config show` each walk the data as a tree, and a
    375-byte file of nested aliases is then hundreds of millions of values (minutes, GBs).
    The count stops at the bound, without copying, so a hostile file costs milliseconds.
    A self-referencing alias (`a: &a [*a]`) is infinitely deep and is refused the same way.
    """
    stack: list[tuple[Any, int]] = [(data, 0)]
    counted = 0
    while stack:
        node, depth = stack.pop()
        counted += 1
        if counted > MAX_CONFIG_VALUES or depth > MAX_CONFIG_DEPTH:
            raise ConfigError([_alias_bomb_problem(where, depth > MAX_CONFIG_DEPTH)])
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)


def _alias_bomb_problem(where: str, too_deep: bool) -> ConfigProblem:
    size = (
        f"nests deeper than {MAX_CONFIG_DEPTH} levels"
        if too_deep
        else f"expands to more than {MAX_CONFIG_VALUES:,} values"
    )
    return ConfigProblem(
        where,
        f"the YAML {size} once its aliases (*name) are expanded — anchors (&name) that "
        "hold aliases multiply (an alias bomb); not loaded",
        "write the repeated values out, or alias only small blocks that contain no aliases; "
        "a leadbridge config has a few hundred values",
    )


def interpolate(value: Any, key: str, problems: list[ConfigProblem]) -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string; `$$` is a literal `$`."""
    if isinstance(value, dict):
        return {k: interpolate(v, _join(key, k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, _item_key(key, v, i), problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group("name"), match.group("default")
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        problems.append(
            ConfigProblem(
                key,
                f"environment variable {name} is not set",
                f"export {name}=… before starting leadbridge, or write ${{{name}:-default}}",
            )
        )
        return ""

    return _INTERPOLATION.sub(replace, value)


def apply_env_overrides(
    data: dict[str, Any],
    environ: os._Environ[str] | dict[str, str],
    settings_cls: type[BaseSettings],
    problems: list[ConfigProblem],
) -> None:
    """Set `LEADBRIDGE_A__B=v` as data[a][b] = v; list sections are addressed by item name.

    Variables that name no setting (e.g. a token only used through `${…}`) are left alone.
    """
    for env_name, value in sorted(environ.items()):
        if not env_name.startswith(ENV_PREFIX) or env_name == CONFIG_ENV:
            continue
        parts = [p.lower() for p in env_name[len(ENV_PREFIX) :].split("__") if p]
        if not parts or parts[0] not in settings_cls.model_fields:
            continue
        if parts[0] in ("sources", "targets"):
            if len(parts) < 3:
                continue
            items = data.setdefault(parts[0], [])
            item = next(
                (
                    i
                    for i in items
                    if isinstance(i, dict) and _env_name(str(i.get("name", ""))) == parts[1]
                ),
                None,
            )
            if item is None:
                problems.append(
                    ConfigProblem(
                        env_name,
                        f"no {parts[0][:-1]} named {parts[1]!r} in the config file",
                        f"add it under `{parts[0]}:` in the YAML, or unset {env_name}",
                    )
                )
                continue
            _set_path(item, parts[2:], value)
        else:
            _set_path(data, parts, value)


def _set_path(data: dict[str, Any], parts: list[str], value: str) -> None:
    for part in parts[:-1]:
        child = data.get(part)
        if not isinstance(child, dict):
            child = {}
            data[part] = child
        data = child
    data[parts[-1]] = value


def _env_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "_", name.lower())


def _join(key: str, part: Any) -> str:
    return f"{key}.{part}" if key else str(part)


def _item_key(key: str, item: Any, index: int) -> str:
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        return f"{key}[{item['name']}]"
    return f"{key}[{index}]"


def load_settings(path: Path | str | None = None, **overrides: Any) -> Settings:
    """Read, interpolate, override and validate; every problem is collected into one ConfigError,
    the connectors' own keys included even when the top level has errors too."""
    cls = _settings_for(Path(path) if path is not None else None)
    try:
        settings = cls(**overrides)
    except ValidationError as exc:
        raw = _raw_data(cls)
        problems = problems_from(exc, "", raw)
        _validate_connectors(raw, problems)
        raise ConfigError(problems) from None
    problems = _engine_problems(settings)
    settings._connectors.update(_validate_connectors(settings.model_dump(), problems))
    if not problems:
        _add_write_back_targets(settings, problems)
        _add_score_fields(settings)
    if problems:
        raise ConfigError(problems)
    for config in settings._connectors.values():
        _register_secrets(config)
    for secret in store_passwords(settings.store):
        logs.register_secret(secret)
    for secret in settings.alerts.secrets():  # apprise URLs carry tokens in their path
        logs.register_secret(secret)
    return settings


def config_warnings(settings: Settings, sources: list[str] | None = None) -> list[ConfigProblem]:
    """What is valid but can't work yet, for `config check` to show without failing (of
    every source, or of the `sources` named).

    A source's file that isn't there: a drop folder gets its file later, so this is normal
    for a while and not an error; a command that reads the source now fails with a message.
    """
    warnings = []
    for config in settings.source_configs():
        if sources is not None and config.name not in sources:
            continue
        path = getattr(config, "path", None)  # a source reading a local file names it `path`
        if isinstance(path, Path) and not path.exists():
            where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
            warnings.append(
                ConfigProblem(
                    f"sources[{config.name}].path",
                    f"{path} does not exist{where}",
                    "correct the path; if the file is dropped there later, ignore this (until "
                    "then each read of this source fails and is tried again)",
                )
            )
    return warnings


def _engine_problems(settings: Settings) -> list[ConfigProblem]:
    """Replicas share their work through PostgreSQL; SQLite has one writer and no queue."""
    problems = _store_problems(settings.store)
    if settings.engine == "cluster" and not settings.store.startswith("postgres"):
        problems.append(
            ConfigProblem(
                "engine",
                "engine: cluster needs a PostgreSQL store",
                "set `store: postgresql://user@host/db`, or use `engine: single`",
            )
        )
    return problems


def _store_problems(store: str) -> list[ConfigProblem]:
    """A store URL SQLAlchemy can't read, or one whose password has a bare '@' (then the
    host is wrong and part of the password would be shown as host). Never echoes it."""
    try:
        url = make_url(store)
    except ArgumentError:
        return [
            ConfigProblem(
                "store",
                "not a database URL",
                f"use {STORE_EXAMPLES}",
            )
        ]
    unsupported = unsupported_store(url)
    if unsupported:
        return [ConfigProblem("store", unsupported, f"use {STORE_EXAMPLES}")]
    if url.host and "@" in url.host:
        return [
            ConfigProblem(
                "store",
                "the password contains an unencoded '@'",
                "URL-encode the password's special characters ('@' is %40, ':' is %3A, "
                "'/' is %2F), or pass it as ?password=…",
            )
        ]
    return []


def _add_write_back_targets(settings: Settings, problems: list[ConfigProblem]) -> None:
    """A source that writes stages back (`WritesBack`, e.g. with `write_back: true`) is also
    a target, under its own name, so write-back rides the outbox like any push."""
    names = {t.name for t in settings.targets}
    for entry in settings.sources:
        config = settings._connectors[f"sources:{entry.name}"]
        cls = connector_class(entry.kind)
        kind = cls.write_back_kind(config) if issubclass(cls, WritesBack) else None
        if kind is None:
            continue
        if entry.name in names:
            problems.append(
                ConfigProblem(
                    f"sources[{entry.name}]",
                    "its write-back needs a target of the same name",
                    "rename the source or the target",
                )
            )
            continue
        target_cls = connector_class(kind)
        settings._connectors[f"targets:{entry.name}"] = target_cls.Config.model_validate(
            {**config.model_dump(), "kind": kind}
        )
        settings.targets.append(ConnectorEntry(name=entry.name, kind=kind))


def _add_score_fields(settings: Settings) -> None:
    """With fit × engagement scoring configured (docs/scoring.md), each target's map gets
    its CRM's fields for the grade and the two numbers — under what the target's own
    `fields:` says (a key given there wins; `null` drops one). Without it nothing is added,
    so a config without the scoring keys sends, and checks, exactly what it did."""
    if not settings.qualification.graded:
        return
    # Here, not at the top: the HTTP machinery loads only for a config that scores this way
    # (a command that reads the store only, `leads list`, never needs it).
    from leadbridge.core.connector import HttpTarget, TargetConfig

    for key, config in list(settings._connectors.items()):
        cls = connector_class(config.kind)
        if not (key.startswith("targets:") and isinstance(cls, type)):
            continue
        if issubclass(cls, HttpTarget) and isinstance(config, TargetConfig) and cls.score_fields:
            fields = {**cls.score_fields, **config.fields}
            settings._connectors[key] = config.model_copy(update={"fields": fields})


def _register_secrets(config: BaseModel) -> None:
    """Every configured secret is redacted from every log line, wherever it would appear:
    SecretStr fields whole and their parts (a connection string's `AccountKey`), and the
    credentials inside ordinary values (a URL's `?code=`, a header)."""
    found: set[str] = set()
    for name in type(config).model_fields:
        value = getattr(config, name)
        if isinstance(value, SecretStr):
            logs.register_secret(value.get_secret_value())
            found |= embedded_secrets(value.get_secret_value())
    found |= embedded_secrets(config.model_dump(mode="json"))
    for secret in found:
        for form in _written_forms(secret):
            logs.register_secret(form)


def _raw_data(cls: type[Settings]) -> dict[str, Any]:
    """The data as the YAML source reads it, to say which key each problem is at."""
    yaml_file = cls.model_config.get("yaml_file") or os.environ.get(CONFIG_ENV)
    try:
        return YamlSource(cls, yaml_file=yaml_file or None)()
    except ConfigError:
        return {}


def _validate_connectors(data: dict[str, Any], problems: list[ConfigProblem]) -> dict[str, Any]:
    """Validate each source and target with its connector's own Config model."""
    kinds = connector_kinds()
    configs: dict[str, ConnectorConfig] = {}
    for section in ("sources", "targets"):
        entries = data.get(section)
        seen: dict[str, str] = {}  # environment name → the name as written
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str):
                continue  # the top-level validation reports the shape
            name = str(entry.get("name", index))
            key = f"{section}[{name}]"
            clash = _name_clash(section, name, seen.get(_env_name(name)))
            if clash:
                problems.append(clash)
                continue
            seen[_env_name(name)] = name
            kind = entry["kind"]
            if kind not in kinds:
                problems.append(
                    ConfigProblem(
                        f"{key}.kind",
                        f"unknown kind {kind!r}",
                        f"use one of: {', '.join(kinds_of(section[:-1]))}",
                    )
                )
                continue
            cls = connector_class(kind)
            if cls.role != section[:-1]:
                problems.append(
                    ConfigProblem(
                        f"{key}.kind",
                        f"{kind!r} is a {cls.role}, not a {section[:-1]}",
                        f"move it under `{cls.role}s:`",
                    )
                )
                continue
            try:
                configs[f"{section}:{name}"] = cls.Config.model_validate(entry)
            except ValidationError as exc:
                problems.extend(problems_from(exc, key, entry))
            except ValueError as exc:
                problems.append(ConfigProblem(key, str(exc), "see the message"))
    return configs


def _name_clash(section: str, name: str, earlier: str | None) -> ConfigProblem | None:
    """Two entries one environment variable can't tell apart: `my-src` and `my_src` (or
    `Sales` and `sales`) are both LEADBRIDGE_SOURCES__MY_SRC__…, so an override would
    silently land on whichever comes first."""
    if earlier is None:
        return None
    if earlier == name:
        return ConfigProblem(
            f"{section}[{name}]",
            "the name is used twice",
            f"give every entry under {section} its own name",
        )
    return ConfigProblem(
        f"{section}[{name}]",
        f"the name is the same as {earlier!r} for environment overrides (both are "
        f"{ENV_PREFIX}{section.upper()}__{_env_name(name).upper()}__…)",
        "rename one of them: names that differ only in case or in '-' and '_' can't be "
        "told apart from the environment",
    )


def problems_from(exc: ValidationError, prefix: str, data: dict[str, Any]) -> list[ConfigProblem]:
    """Turn pydantic's errors into key / message / fix lines an operator can act on."""
    problems = []
    for error in exc.errors():
        loc = _readable_loc(error["loc"], data)
        key = _join(prefix, loc) if loc else (prefix or "config")
        problems.append(ConfigProblem(key, _message(error), _fix(error, key)))
    return problems


def _readable_loc(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    parts: list[str] = []
    node: Any = data
    for part in loc:
        if isinstance(part, int) and isinstance(node, list):
            item = node[part] if part < len(node) else None
            name = item.get("name") if isinstance(item, dict) else None
            parts[-1] = f"{parts[-1]}[{name if name else part}]" if parts else f"[{part}]"
            node = item
        else:
            parts.append(str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts)


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required but not set"
    if kind == "extra_forbidden":
        return "not a known setting"
    given = error.get("input")
    shown = "a secret" if _looks_secret(error["loc"]) else repr(given)
    return f"{error['msg']} (got {shown})" if not isinstance(given, dict | list) else error["msg"]


def _fix(error: ErrorDetails, key: str) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    name = key.rsplit(".", 1)[-1]
    if kind == "missing":
        return f"add `{name}: …` (see config/leadbridge.example.yaml)"
    if kind == "extra_forbidden":
        return "remove it or fix its spelling (config/leadbridge.example.yaml lists every option)"
    if kind in ("literal_error", "enum"):
        return f"use one of: {ctx.get('expected', 'the documented values')}"
    if kind.startswith("int_") or kind.startswith("float_"):
        return "use a number"
    if kind.startswith("bool"):
        return "use true or false"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return "use a value in the documented range"
    if kind == "string_pattern_mismatch":
        return "use letters, digits, '-' and '_' only"
    if kind == "value_error":
        return "see the message"
    return "see config/leadbridge.example.yaml"


def _looks_secret(loc: tuple[Any, ...]) -> bool:
    return any(
        isinstance(p, str) and re.search(r"secret|token|password|key|connection", p) for p in loc
    )


def is_secret_name(name: str) -> bool:
    """True for a name that carries a credential (see `_SECRET_WORDS`)."""
    words = re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", name)
    return any(word.lower().endswith(_SECRET_WORDS) for word in words)


def mask_url(url: str) -> str:
    """The store URL with its password and any credential in its query hidden.

    Parsed by SQLAlchemy, as the engine will parse it, so what is hidden is exactly what
    would be sent: `p%40ss` (`p@ss`) and `?password=` as well as `user:pass@`. A URL it
    cannot parse is not shown at all (it may be a password pasted in the wrong place).
    """
    try:
        url_ = make_url(url)
    except ArgumentError:
        return f"{MASK} (not a database URL)"
    if url_.host and "@" in url_.host:  # an unencoded '@' in the password
        url_ = url_.set(host=url_.host.rsplit("@", 1)[1], password=MASK)
    query = {k: (MASK if is_secret_name(k) else v) for k, v in url_.query.items()}
    shown = url_.set(query={}).render_as_string(hide_password=True)
    return f"{shown}?{urlencode(query, doseq=True, safe='*')}" if query else shown


def store_passwords(url: str) -> set[str]:
    """The credentials in a store URL, decoded and as written (all are redacted from every
    log line: cluster mode hands the URL to procrastinate's pool as well)."""
    try:
        url_ = make_url(url)
    except ArgumentError:
        return set()
    found = [url_.password] if url_.password else []
    for name, value in url_.query.items():
        if is_secret_name(name):
            found.extend([value] if isinstance(value, str) else value)
    return {form for secret in map(str, found) for form in _written_forms(secret)}


def _written_forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote_plus(secret)}


def mask_secrets(value: Any) -> Any:
    """Hide every credential in plain config data (`config show`): URLs' passwords and
    credential query parameters, connection strings' keys, credential headers.

    SecretStr fields are masked by pydantic already; this catches the secrets that sit
    inside ordinary strings — a webhook `url` with `?code=`, a SAS `sig=`, a proxy URL with
    `user:pass@` — and in free-form header maps.
    """
    return _Masker().mask(value)


def embedded_secrets(value: Any) -> set[str]:
    """The credentials `mask_secrets` would hide, so that logs redact them too."""
    masker = _Masker()
    masker.mask(value)
    return masker.found


class _Masker:
    """One walk over config data: what it shows, and (`found`) every value it hid."""

    def __init__(self) -> None:
        self.found: set[str] = set()

    def mask(self, value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            headers = key == "headers"
            return {
                k: self._hide(v) if headers and is_secret_name(str(k)) else self.mask(v, str(k))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.mask(v, key) for v in value]
        if not isinstance(value, str):
            return value
        if _URL.match(value):
            return self._web_url(value)
        if "=" in value and all(_SETTING.match(p) for p in value.split(";") if p.strip()):
            return self._connection_string(value)
        return value

    def _hide(self, secret: Any) -> str:
        if isinstance(secret, str) and secret and secret != MASK:
            self.found.add(secret)
        return MASK

    def _web_url(self, url: str) -> str:
        try:
            parts = urlsplit(url)
            password = parts.password
        except ValueError:
            return f"{MASK} (not a URL)"
        netloc = parts.netloc
        if password is not None:
            self._hide(password)
            netloc = f"{parts.username or ''}:{MASK}@{parts.netloc.rsplit('@', 1)[1]}"
        return urlunsplit(parts._replace(netloc=netloc, query=self._query(parts.query)))

    def _connection_string(self, text: str) -> str:
        """`AccountName=x;AccountKey=…;` (Azure storage, Service Bus, ADO.NET) with the
        keys, passwords and shared access signatures hidden."""
        shown = []
        for part in text.split(";"):
            name, sep, value = part.partition("=")
            if sep and is_secret_name(name.strip()):
                part = f"{name}={self._hide(value)}"
            elif "&" in value:  # a SAS token on its own: sv=…&sig=…
                part = self._query(part)
            elif _URL.match(value):
                part = f"{name}={self._web_url(value)}"
            shown.append(part)
        return ";".join(shown)

    def _query(self, query: str) -> str:
        pairs = parse_qsl(query, keep_blank_values=True)
        return urlencode(
            [(k, self._hide(v) if is_secret_name(k) else v) for k, v in pairs], safe="*"
        )
