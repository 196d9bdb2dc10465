"""``callguard.toml``: one file, typed sections, precise errors, env overrides.

Each ``[section]`` is a frozen dataclass below; the loader checks every key
against the dataclass fields and annotations, so a typo or a wrong type is
reported as ``callguard.toml: [asterisk] prot: unknown key (did you mean
'port'?)`` instead of being silently ignored.  Environment variables
override the file: ``CALLGUARD_<SECTION>__<KEY>`` (double underscore), e.g.
``CALLGUARD_ASTERISK__SECRET=...`` so secrets need not live in the file.
Values from the environment are parsed as TOML values when they look like
one (``true``, ``5038``, ``["en","fr"]``) and as plain strings otherwise.

Why dataclasses and not a schema library: the config is small, and the
error messages are the feature; this keeps them in our hands.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from callguard.core.jurisdictions import REGIMES
from callguard.vault.permissions import DEFAULT_ROLES, PERMISSIONS

DEFAULT_CONFIG_NAME = "callguard.toml"
ENV_PREFIX = "CALLGUARD_"
ENV_CONFIG = "CALLGUARD_CONFIG"


class ConfigError(ValueError):
    """A configuration problem, worded as: where, which key, what is wrong."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class ListenerConfig:
    """Which PBX this listener serves and which ledger chain it writes."""

    pbx: str = "asterisk"
    chain_id: str = ""  #: empty: "<pbx>@<hostname>"


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class ConsentConfig:
    """The notice + consent gather."""

    grant_digits: str = "1"
    decline_digits: str = "2"
    timeout_ms: int = 5000
    max_attempts: int = 2
    decline_destination: str = ""  #: dialplan target for declined calls; empty: continue
    notice_prompt: str = "notice"  #: "notice-sensitive" for regulated lines (health, finance)
    notice_start_limit_s: float = 2.0
    notice_end_limit_s: float = 10.0


@dataclass(frozen=True)
class RecordingConfig:
    """Recording control and the fail-safe limits around it."""

    confirm_timeout_ms: int = 500  #: mute/unmute must be confirmed within this
    start_timeout_ms: int = 3000  #: recording start must be confirmed within this
    max_pause_s: float = 0.0  #: auto-resume a manual pause after this; 0 = never
    format: str = "wav"


@dataclass(frozen=True)
class PolicyConfig:
    default_regime: str = "all-party"
    unknown_regime: str = "all-party"
    gdpr_explicit_consent: bool = True
    home: str = ""
    internal_numbers: str = r"^[0-9]{2,6}$"
    default_region: str = ""
    default_language: str = "en"
    jurisdictions: dict[str, str] = field(default_factory=dict)
    languages: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LedgerConfig:
    url: str = "sqlite:///callguard.sqlite"
    batch_max: int = 256
    batch_wait_ms: float = 2.0


@dataclass(frozen=True)
class PromptsConfig:
    catalog: str = ""  #: empty: the catalogue shipped with callguard
    audio_dir: str = ""
    languages: list[str] = field(default_factory=lambda: ["en", "es", "fr"])
    notice_max_s: float = 10.0
    asterisk_dir: str = ""  #: where `prompts install --asterisk` put them; empty: the build dir
    freeswitch_dir: str = ""  #: where `prompts install --freeswitch` put them; empty: the build dir


@dataclass(frozen=True)
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
    passphrase_env: str = "CALLGUARD_VAULT_PASSPHRASE"  #: env var holding the private keys' passphrase
    chain_id: str = ""  #: ledger chain for vault entries; empty: "vault@<hostname>"
    chunk_kib: int = 1024  #: plaintext per encrypted chunk
    default_purpose: str = "qa"
    legal_duty_purposes: list[str] = field(default_factory=lambda: ["compliance"])
    require_call_ended: bool = True  #: ingest only after the ledger shows the recording stopped
    ingest_on_stop: bool = True  #: the listener ingests each recording when its call ends (see above)
    scan_dtmf: bool = True  #: DTMF leak scan at ingest (on the plaintext, before it is removed)
    bind_os_user: bool = True  #: --as must be the operating-system account running the command
    sweep_interval_h: float = 24.0  #: how often the retention sweep must run (the audit checks it)
    dsar_due_days: int = 30
    export_alert_per_day: int = 10  #: exports per user per day above this are flagged by the audit


@dataclass(frozen=True)
class Config:
    """The whole file.  Section names are the field names."""

    listener: ListenerConfig = field(default_factory=ListenerConfig)
    asterisk: AsteriskConfig = field(default_factory=AsteriskConfig)
    freeswitch: FreeswitchConfig = field(default_factory=FreeswitchConfig)
    consent: ConsentConfig = field(default_factory=ConsentConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    vault: VaultConfig = field(default_factory=VaultConfig)
    retention: dict[str, int] = field(default_factory=lambda: {"qa": 90, "dispute": 365, "compliance": 2555})
    #: role -> permissions (see callguard.vault.permissions); a [roles] table replaces the defaults
    roles: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_ROLES.items()})
    #: user (operating-system account name) -> role
    users: dict[str, str] = field(default_factory=dict)
    source: str = field(default="<defaults>", compare=False)

    def chain_id(self) -> str:
        """This listener's hash-chain id: configured, else ``pbx@hostname``."""
        return self.listener.chain_id or f"{self.listener.pbx}@{os.uname().nodename}"


# -- validation ----------------------------------------------------------------

_SECTION_CHECKS: dict[str, Any] = {}


def _check(section: str):
    def register(fn):
        _SECTION_CHECKS[section] = fn
        return fn

    return register


@_check("listener")
def _check_listener(c: ListenerConfig) -> list[tuple[str, str]]:
    if c.pbx not in ("asterisk", "freeswitch"):
        return [("pbx", f"must be 'asterisk' or 'freeswitch', got {c.pbx!r}")]
    return []


@_check("consent")
def _check_consent(c: ConsentConfig) -> list[tuple[str, str]]:
    out = []
    for key in ("grant_digits", "decline_digits"):
        value = getattr(c, key)
        if not value or any(ch not in "0123456789*#" for ch in value):
            out.append((key, f"must be keypad digits (0-9, *, #), got {value!r}"))
    if set(c.grant_digits) & set(c.decline_digits):
        out.append(("decline_digits", "shares a digit with grant_digits; a keypress must mean one thing"))
    if c.timeout_ms < 500:
        out.append(("timeout_ms", f"{c.timeout_ms} ms is too short for a caller to answer; use >= 500"))
    if c.max_attempts < 1:
        out.append(("max_attempts", "must be at least 1"))
    return out


@_check("recording")
def _check_recording(c: RecordingConfig) -> list[tuple[str, str]]:
    out = []
    if c.confirm_timeout_ms <= 0:
        out.append(("confirm_timeout_ms", "must be positive"))
    if c.max_pause_s < 0:
        out.append(("max_pause_s", "must be 0 (never auto-resume) or positive"))
    return out


@_check("policy")
def _check_policy(c: PolicyConfig) -> list[tuple[str, str]]:
    out = []
    for key in ("default_regime", "unknown_regime"):
        if getattr(c, key) not in REGIMES:
            out.append((key, f"unknown regime {getattr(c, key)!r}; use one of {', '.join(REGIMES)}"))
    for code, regime in c.jurisdictions.items():
        if regime not in REGIMES:
            out.append((f"jurisdictions.{code}", f"unknown regime {regime!r}; use one of {', '.join(REGIMES)}"))
    if REGIMES.get(c.unknown_regime) and REGIMES[c.unknown_regime].rank < REGIMES["all-party"].rank:
        out.append(("unknown_regime", "must be at least as strict as all-party: unknown counts as strictest"))
    return out


@_check("ledger")
def _check_ledger(c: LedgerConfig) -> list[tuple[str, str]]:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(c.url)
    except ArgumentError as exc:
        return [("url", f"not a database URL ({exc}); e.g. sqlite:///callguard.sqlite")]
    return []


@_check("vault")
def _check_vault(c: VaultConfig) -> list[tuple[str, str]]:
    out = []
    if not 4 <= c.chunk_kib <= 16384:
        out.append(("chunk_kib", f"{c.chunk_kib} is outside 4..16384 (KiB of audio per encrypted chunk)"))
    if c.sweep_interval_h <= 0:
        out.append(("sweep_interval_h", "must be positive (hours between retention sweeps)"))
    if not 1 <= c.dsar_due_days <= 90:
        out.append(("dsar_due_days", f"{c.dsar_due_days} days is outside 1..90; the GDPR clock is one month"))
    if c.export_alert_per_day < 1:
        out.append(("export_alert_per_day", "must be at least 1"))
    if not c.passphrase_env.isidentifier():
        out.append(("passphrase_env", f"{c.passphrase_env!r} is not an environment variable name"))
    return out


def _check_vault_tables(values: Mapping[str, Any], where: str) -> list[str]:
    """Checks across [vault], [retention], [roles] and [users] (each refers to the others)."""
    defaults = Config()
    vault = values.get("vault", defaults.vault)
    retention = values.get("retention", defaults.retention)
    roles = values.get("roles", defaults.roles)
    users = values.get("users", defaults.users)
    out = []
    for purpose, days in retention.items():
        if days < 1:
            out.append(f"{where}: [retention] {purpose}: must be a whole number of days >= 1, got {days}")
    known = ", ".join(sorted(retention)) or "(none)"
    for key, purposes in (("default_purpose", [vault.default_purpose]),
                          ("legal_duty_purposes", vault.legal_duty_purposes)):
        for purpose in purposes:
            if purpose not in retention:
                out.append(f"{where}: [vault] {key}: purpose {purpose!r} has no retention period; "
                           f"add it to [retention] (known: {known})")
    for role, permissions in roles.items():
        for permission in permissions:
            if permission not in PERMISSIONS:
                out.append(f"{where}: [roles] {role}: unknown permission {permission!r}"
                           f"{_suggest(permission, list(PERMISSIONS)).replace('known keys', 'permissions')}")
    for user, role in users.items():
        if role not in roles:
            out.append(f"{where}: [users] {user}: unknown role {role!r}"
                       f"{_suggest(role, list(roles)).replace('known keys', 'roles')}")
    return out


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation in (str, bool):
        return isinstance(value, annotation)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if origin is dict:
        key_t, val_t = typing.get_args(annotation)
        return isinstance(value, dict) and all(
            _type_ok(k, key_t) and _type_ok(v, val_t) for k, v in value.items()
        )
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    return True


def _type_name(annotation: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if annotation in names:
        return names[annotation]
    origin = typing.get_origin(annotation)
    if origin is list:
        return f"a list of {_type_name(typing.get_args(annotation)[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return "a table"
    return str(annotation)


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(known)}"


def _build_section(name: str, cls: Any, raw: Any, where: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    if not isinstance(raw, dict):
        problems.append(f"{where}: [{name}] must be a table, got {type(raw).__name__}")
        return cls()
    known = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in raw.items():
        if key not in known:
            problems.append(f"{where}: [{name}] {key}: unknown key{_suggest(key, known)}")
            continue
        if not _type_ok(value, hints[key]):
            problems.append(
                f"{where}: [{name}] {key}: expected {_type_name(hints[key])}, got {value!r}"
            )
            continue
        if hints[key] is float and isinstance(value, int):
            value = float(value)
        values[key] = value
    section = cls(**values)
    check = _SECTION_CHECKS.get(name)
    if check:
        for key, message in check(section):
            problems.append(f"{where}: [{name}] {key}: {message}")
    return section


def _env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``CALLGUARD_SECTION__KEY=value`` -> {section: {key: value}}."""
    out: dict[str, dict[str, Any]] = {}
    sources: list[str] = []
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name or name == ENV_CONFIG:
            continue
        section, _, key = name[len(ENV_PREFIX):].lower().partition("__")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        out.setdefault(section, {})[key] = value
        sources.append(name)
    return out, sources


def parse_config(data: Mapping[str, Any], where: str = "<config>",
                 environ: Mapping[str, str] | None = None) -> Config:
    """Build a :class:`Config` from parsed TOML, applying env overrides."""
    problems: list[str] = []
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    env, _ = _env_overrides(os.environ if environ is None else environ)
    for section, keys in env.items():
        target = merged.setdefault(section, {})
        if isinstance(target, dict):
            target.update(keys)
    hints = typing.get_type_hints(Config)
    sections = {f.name: f for f in dataclasses.fields(Config) if f.name != "source"}
    values: dict[str, Any] = {}
    for name, raw in merged.items():
        if name not in sections:
            problems.append(f"{where}: [{name}]: unknown section{_suggest(name, list(sections))}")
            continue
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            values[name] = _build_section(name, annotation, raw, where, problems)
        elif _type_ok(raw, annotation):
            values[name] = raw
        else:
            problems.append(f"{where}: [{name}]: expected {_type_name(annotation)}, got {raw!r}")
    if not problems:
        problems.extend(_check_vault_tables(values, where))
    if problems:
        raise ConfigError(problems)
    return Config(**values, source=where)


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
