"""``callguard.toml``: one file, typed sections, precise errors, env overrides.

Each ``[section]`` is a small validated dataclass (:func:`callguard.config_schema.section`,
pydantic in strict mode), so a typo, a wrong type or a value that would
silently change the law applied is reported before anything runs::

    callguard.toml: [asterisk] prot: unknown key (did you mean 'port'?)
    environment variable CALLGUARD_POLICY__HOME: [policy] home: unknown jurisdiction 'US-CAL' (did you mean 'US-CA'?); ...

Environment variables override the file: ``CALLGUARD_<SECTION>__<KEY>``
(double underscore), e.g. ``CALLGUARD_ASTERISK__SECRET=...`` so secrets need
not live in the file.  Values from the environment are parsed as TOML values
when they look like one (``true``, ``5038``, ``["en","fr"]``) and as plain
strings otherwise; an error in one names the variable, not the file.

A capability adds its own section as a ``@section`` class in its own package
and one field on :class:`Config` (see ``config_schema``).
"""

from __future__ import annotations

import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

from pydantic import AfterValidator, ValidationError, ValidationInfo, field_validator

from callguard.config_schema import build, describe, is_section, one_of, rule, section, suggest, table_adapter
from callguard.core.jurisdictions import REGIMES
from callguard.evidence.settings import EvidenceConfig
from callguard.transcripts.settings import TranscriptsConfig
from callguard.vault.permissions import DEFAULT_ROLES, PERMISSIONS
from callguard.ha.settings import HaConfig
from callguard.payments.settings import PaymentsConfig
from callguard.web.settings import WebConfig

DEFAULT_CONFIG_NAME = "callguard.toml"
ENV_PREFIX = "CALLGUARD_"
ENV_CONFIG = "CALLGUARD_CONFIG"


class ConfigError(ValueError):
    """A configuration problem, worded as: where, which key, what is wrong."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@section
class ListenerConfig:
    """Which PBX this listener serves and which ledger chain it writes."""

    pbx: Literal["asterisk", "freeswitch"] = "asterisk"
    chain_id: str = ""  #: empty: "<pbx>@<hostname>"
    #: "json": one JSON object per log line on stderr (journald, Loki, ELK); "text": for people
    log_format: Literal["text", "json"] = "text"


@section
class AsteriskConfig:
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "callguard"
    secret: str = ""
    tls: bool = False
    ca_file: str = ""
    action_timeout_ms: int = 2000
    ping_interval_s: float = 5.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    heartbeat_interval_s: float = 2.0
    heartbeat_variable: str = "CALLGUARD_HEARTBEAT"
    recording_dir: str = "/var/spool/asterisk/monitor/callguard"
    #: seconds the dialplan's TIMEOUT(absolute) guard is pushed back on parked channels (fallback when we die)
    agi_guard_s: float = 3.0
    #: regex on channel names (without the -sequence suffix) that are staff legs, e.g. "PJSIP/agent-.*";
    #: channels the dialplan marked with CALLGUARD_STAFF=1 ([callguard-staff]) are staff too
    staff_channels: str = ""

    @field_validator("staff_channels")
    @classmethod
    def _staff_pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression ({exc}); e.g. 'PJSIP/agent-.*' for "
                             "PJSIP/agent-101, PJSIP/agent-102, ...") from None
        return value


@section
class FreeswitchConfig:
    host: str = "127.0.0.1"
    port: int = 8021
    password: str = "ClueCon"
    listen_host: str = "127.0.0.1"
    listen_port: int = 8084
    action_timeout_ms: int = 2000
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    heartbeat_interval_s: float = 2.0
    recording_dir: str = "/var/lib/freeswitch/recordings/callguard"
    max_calls: int = 2000  #: parked calls served at once; more get `exit` (the dialplan's fallback)
    #: channel variable the site's dial string sets on staff legs ({callguard_staff=true}user/1000)
    staff_variable: str = "callguard_staff"
    #: how long a leg bridged before its own socket session connects may take to connect (seconds)
    join_grace_s: float = 1.5

    @field_validator("staff_variable")
    @classmethod
    def _plain_variable(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", value):
            raise ValueError(f"{value!r} is not a plain channel variable name (letters, digits, _)")
        return value


_KEYPAD = set("0123456789*#")


@section
class ConsentConfig:
    """The notice + consent gather."""

    grant_digits: str = "1"
    decline_digits: str = "2"
    timeout_ms: Annotated[int, rule(lambda v: v >= 500, "{value} ms is too short for a caller to answer; "
                                                        "use >= 500")] = 5000
    max_attempts: Annotated[int, rule(lambda v: v >= 1, "must be at least 1")] = 2
    decline_destination: str = ""  #: dialplan target for declined calls; empty: continue
    notice_prompt: str = "notice"  #: "notice-sensitive" for regulated lines (health, finance)
    notice_start_limit_s: float = 2.0
    notice_end_limit_s: float = 10.0

    @field_validator("grant_digits", "decline_digits")
    @classmethod
    def _keypad(cls, value: str, info: ValidationInfo) -> str:
        if not value or not set(value) <= _KEYPAD:
            raise ValueError(f"must be keypad digits (0-9, *, #), got {value!r}")
        if info.field_name == "decline_digits" and set(value) & set(info.data.get("grant_digits", "")):
            raise ValueError("shares a digit with grant_digits; a keypress must mean one thing")
        return value


@section
class RecordingConfig:
    """Recording control and the fail-safe limits around it."""

    #: mute/unmute must be confirmed within this
    confirm_timeout_ms: Annotated[int, rule(lambda v: v > 0, "must be positive")] = 500
    start_timeout_ms: int = 3000  #: recording start must be confirmed within this
    #: auto-resume a manual pause after this; 0 = never
    max_pause_s: Annotated[float, rule(lambda v: v >= 0, "must be 0 (never auto-resume) or positive")] = 0.0
    format: str = "wav"


_JURISDICTION_FORMS = "a country code (GB, DE) or US-/CA- plus a state or province (US-CA, CA-QC)"


def _jurisdiction(code: str) -> str:
    """An upper-cased jurisdiction code :meth:`Policy.locate` can produce, or ValueError."""
    from callguard.core.jurisdictions import jurisdiction_codes

    return one_of(code.upper(), jurisdiction_codes(), "jurisdiction", accepted=_JURISDICTION_FORMS)


def _regime(name: str) -> str:
    return one_of(name, REGIMES, "regime", accepted=", ".join(REGIMES))


#: a code a caller can be located in; a typo would never match anyone and let the default apply in silence
JurisdictionCode = Annotated[str, AfterValidator(_jurisdiction)]
Regime = Annotated[str, AfterValidator(_regime)]


@section
class PolicyConfig:
    default_regime: Regime = "all-party"
    unknown_regime: Regime = "all-party"
    gdpr_explicit_consent: bool = True
    home: str = ""  #: the site's own jurisdiction, applied to internal extensions; empty: unknown (strictest)
    internal_numbers: str = r"^[0-9]{2,6}$"
    default_region: str = ""
    default_language: str = "en"
    jurisdictions: dict[JurisdictionCode, Regime] = field(default_factory=dict)
    languages: dict[JurisdictionCode, str] = field(default_factory=dict)

    @field_validator("unknown_regime")
    @classmethod
    def _strict_enough(cls, value: str) -> str:
        if REGIMES[value].rank < REGIMES["all-party"].rank:
            raise ValueError("must be at least as strict as all-party: unknown counts as strictest")
        return value

    @field_validator("home")
    @classmethod
    def _home(cls, value: str) -> str:
        return value and _jurisdiction(value)

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        if value and "-" in value:
            raise ValueError(f"{value!r} is a jurisdiction; default_region is a country code (GB, US) "
                             "used to read numbers dialled without +")
        return value and _jurisdiction(value)

    @field_validator("internal_numbers")
    @classmethod
    def _pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression ({exc}); e.g. '^[0-9]{{2,6}}$' "
                             "for 2- to 6-digit extensions") from None
        return value


@section
class LedgerConfig:
    url: str = "sqlite:///callguard.sqlite"
    batch_max: int = 256
    batch_wait_ms: float = 2.0
    #: "process": encoding, hashing and SQL in a child process, off the listener's GIL (pause p99
    #: under load); "thread": in the listener's own interpreter (one process, for constrained hosts).
    writer: Literal["process", "thread"] = "process"

    @field_validator("url")
    @classmethod
    def _driver_installed(cls, value: str) -> str:
        """A URL whose driver is missing would pass here and fail at the first call: check it now."""
        import importlib.util

        # The two shipped URL forms are checked without SQLAlchemy: importing it costs a
        # listener ~30 MiB of RSS, and with the writer process the listener never needs it.
        if value.startswith("sqlite:///") and "?" not in value:
            return value
        if value.startswith("postgresql+psycopg://") and importlib.util.find_spec("psycopg") is not None:
            return value
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        accepted = ("sqlite:///PATH (built in) or postgresql+psycopg://USER@HOST/DB "
                    "(pip install 'callguard[postgres]')")
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(f"not a database URL: {value!r}; accepted: {accepted}") from None
        try:
            url.get_dialect().import_dbapi()
        except NoSuchModuleError:
            raise ValueError(f"unknown database {url.drivername!r}; accepted: {accepted}") from None
        except ImportError as exc:
            raise ValueError(f"the driver for {url.drivername!r} is not installed ({exc}); install that "
                             f"Python package, or use {accepted}") from None
        return value


@section
class PromptsConfig:
    catalog: str = ""  #: empty: the catalogue shipped with callguard
    audio_dir: str = ""
    languages: list[str] = field(default_factory=lambda: ["en", "es", "fr"])
    notice_max_s: float = 10.0
    asterisk_dir: str = ""  #: where `prompts install --asterisk` put them; empty: the build dir
    freeswitch_dir: str = ""  #: where `prompts install --freeswitch` put them; empty: the build dir


@section
class VaultConfig:
    """Encrypted recordings: where they live, which keys, and the vault's own rules.

    ``ingest_on_stop`` (default on): the running listener encrypts each
    recording into the vault once the call's hangup is committed to the
    ledger, verifies the ciphertext and removes the plaintext.  On by
    default because a recording left in plaintext in the spool directory is
    the one copy no access control, retention or crypto-shredding reaches;
    it only needs the *public* key on the PBX host.  It takes effect only
    when the keyring has an active key and the listener's OS account has a
    role with the ``ingest`` permission; otherwise the listener says so once
    at start-up (how to fix it: ``callguard keys generate``, a ``[users]``
    entry) and the recordings stay where the PBX wrote them.  Set it to
    false where another host ingests the files (the PBX writes them
    elsewhere) or a site runs ``callguard vault ingest`` itself.
    """

    dir: str = "callguard-vault"  #: ciphertext (.cgv files); any shared or object-backed filesystem
    keystore: str = ""  #: wrapped data keys; empty: <dir>/keystore.  Keep OUT of long-lived backups
    keyring: str = ""  #: public keys and the active key id; empty: <dir>/keyring
    private_keys: str = ""  #: <kid>.pem private keys; set only on hosts allowed to decrypt
    #: env var holding the private keys' passphrase
    passphrase_env: Annotated[str, rule(str.isidentifier, "{value!r} is not an environment variable name")] = \
        "CALLGUARD_VAULT_PASSPHRASE"
    chain_id: str = ""  #: ledger chain for vault entries; empty: "vault@<hostname>"
    #: plaintext per encrypted chunk
    chunk_kib: Annotated[int, rule(lambda v: 4 <= v <= 16384,
                                   "{value} is outside 4..16384 (KiB of audio per encrypted chunk)")] = 1024
    default_purpose: str = "qa"
    legal_duty_purposes: list[str] = field(default_factory=lambda: ["compliance"])
    require_call_ended: bool = True  #: ingest only after the ledger shows the recording stopped
    ingest_on_stop: bool = True  #: the listener ingests each recording when its call ends (see above)
    scan_dtmf: bool = True  #: DTMF leak scan at ingest (on the plaintext, before it is removed)
    bind_os_user: bool = True  #: --as must be the operating-system account running the command
    #: how often the retention sweep must run (the audit checks it)
    sweep_interval_h: Annotated[float, rule(lambda v: v > 0,
                                            "must be positive (hours between retention sweeps)")] = 24.0
    dsar_due_days: Annotated[int, rule(lambda v: 1 <= v <= 90,
                                       "{value} days is outside 1..90; the GDPR clock is one month")] = 30
    #: exports per user per day above this are flagged by the audit
    export_alert_per_day: Annotated[int, rule(lambda v: v >= 1, "must be at least 1")] = 10


@dataclass(frozen=True)
class Config:
    """The whole file.  Section names are the field names; a new section is one field here."""

    listener: ListenerConfig = field(default_factory=ListenerConfig)
    asterisk: AsteriskConfig = field(default_factory=AsteriskConfig)
    freeswitch: FreeswitchConfig = field(default_factory=FreeswitchConfig)
    consent: ConsentConfig = field(default_factory=ConsentConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    vault: VaultConfig = field(default_factory=VaultConfig)
    ha: HaConfig = field(default_factory=HaConfig)
    payments: PaymentsConfig = field(default_factory=PaymentsConfig)
    transcripts: TranscriptsConfig = field(default_factory=TranscriptsConfig)
    web: WebConfig = field(default_factory=WebConfig)
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    retention: dict[str, int] = field(default_factory=lambda: {"qa": 90, "dispute": 365, "compliance": 2555})
    #: role -> permissions (see callguard.vault.permissions); a [roles] table replaces the defaults
    roles: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_ROLES.items()})
    #: user (operating-system account name) -> role
    users: dict[str, str] = field(default_factory=dict)
    source: str = field(default="<defaults>", compare=False)

    def chain_id(self) -> str:
        """This listener's hash-chain id: configured, else ``pbx@hostname``."""
        return self.listener.chain_id or f"{self.listener.pbx}@{os.uname().nodename}"


def _section_types() -> dict[str, Any]:
    hints = typing.get_type_hints(Config)
    return {name: hint for name, hint in hints.items() if name != "source"}


def _cross_checks(config: Config) -> list[tuple[str, str, str]]:
    """(section, key, problem) across [vault], [retention], [roles] and [users] (each refers to the others)."""
    out = []
    for purpose, days in config.retention.items():
        if days < 1:
            out.append(("retention", purpose, f"must be a whole number of days >= 1, got {days}"))
    for key, purposes in (("default_purpose", [config.vault.default_purpose]),
                          ("legal_duty_purposes", config.vault.legal_duty_purposes)):
        for purpose in purposes:
            if purpose not in config.retention:
                out.append(("vault", key, f"purpose {purpose!r} has no retention period; add it to [retention] "
                                          f"(known: {', '.join(sorted(config.retention)) or '(none)'})"))
    for purpose, days in config.evidence.retention_days.items():
        if purpose not in config.retention:
            out.append(("evidence", "retention_days", f"purpose {purpose!r} is not in [retention] "
                                                      f"(known: {', '.join(sorted(config.retention)) or '(none)'})"))
        elif days < 1:
            out.append(("evidence", "retention_days", f"{purpose}: must be a whole number of days >= 1, got {days}"))
    for role, permissions in config.roles.items():
        for permission in permissions:
            if permission not in PERMISSIONS:
                out.append(("roles", role, f"unknown permission {permission!r}{suggest(permission, PERMISSIONS)}; "
                                           f"accepted: {', '.join(PERMISSIONS)}"))
    for user, role in config.users.items():
        if role not in config.roles:
            out.append(("users", user, f"unknown role {role!r}{suggest(role, config.roles)}; "
                                       f"accepted: {', '.join(config.roles)}"))
    return out


def _env_overrides(environ: Mapping[str, str]) -> dict[tuple[str, str], tuple[str, Any]]:
    """``CALLGUARD_SECTION__KEY=value`` -> {(section, key): (variable name, value)}."""
    out: dict[tuple[str, str], tuple[str, Any]] = {}
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name or name == ENV_CONFIG:
            continue
        section_name, _, key = name[len(ENV_PREFIX):].lower().partition("__")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        out[(section_name, key)] = (name, value)
    return out


def parse_config(data: Mapping[str, Any], where: str = "<config>",
                 environ: Mapping[str, str] | None = None) -> Config:
    """Build a :class:`Config` from parsed TOML, applying env overrides; ConfigError lists every problem."""
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    env = _env_overrides(os.environ if environ is None else environ)
    for (section_name, key), (_, value) in env.items():
        target = merged.setdefault(section_name, {})
        if isinstance(target, dict):
            target[key] = value

    def origin(section_name: str, key: str = "") -> str:
        """The file, or the variable when the value came from the environment."""
        variable = env.get((section_name, key.partition(".")[0]))
        if variable is None and not key:
            variable = next((v for (s, _), v in env.items() if s == section_name and section_name not in data), None)
        return f"environment variable {variable[0]}" if variable else where

    problems: list[str] = []
    types = _section_types()
    values: dict[str, Any] = {}
    for name, raw in merged.items():
        if name not in types:
            problems.append(f"{origin(name)}: [{name}]: unknown section{suggest(name, types)}; "
                            f"known sections: {', '.join(types)}")
            continue
        annotation = types[name]
        if not isinstance(raw, dict):
            problems.append(f"{origin(name)}: [{name}]: must be a table, got {raw!r}")
            continue
        if is_section(annotation):
            built, errors = build(annotation, raw)
        else:
            try:
                built, errors = table_adapter(annotation).validate_python(raw), []
            except ValidationError as exc:
                built, errors = None, [describe(error) for error in exc.errors()]
        problems.extend(f"{origin(name, key)}: [{name}] {key}: {message}" for key, message in errors)
        values[name] = built
    if not problems:
        config = Config(**values, source=where)
        problems.extend(f"{origin(s, k)}: [{s}] {k}: {message}" for s, k, message in _cross_checks(config))
    if problems:
        raise ConfigError(problems)
    return config


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to use: ``--config``, ``$CALLGUARD_CONFIG``, ./callguard.toml, /etc."""
    if explicit:
        return Path(explicit)
    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG])
    for candidate in (Path(DEFAULT_CONFIG_NAME), Path("/etc/callguard") / DEFAULT_CONFIG_NAME):
        if candidate.is_file():
            return candidate
    return None


def load_config(path: str | os.PathLike[str] | None = None,
                environ: Mapping[str, str] | None = None) -> Config:
    """Load and validate the config; defaults when no file is found."""
    found = find_config(path)
    if found is None:
        return parse_config({}, "<defaults>", environ)
    try:
        text = found.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{found}: file not found; pass --config PATH or create it from examples/callguard.toml"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{found}: cannot read: {exc}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{found}: not valid TOML: {exc}"]) from None
    return parse_config(data, str(found), environ)
