"""Build runtime objects from :class:`~callguard.config.Config`.

The core takes plain values (it never reads config files); this module is
the one place that knows how config sections map onto them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from callguard.config import Config
from callguard.core.jurisdictions import DEFAULT_LANGUAGES
from callguard.core.policy import Policy
from callguard.core.prompts import PromptResolver
from callguard.core.session import SessionSettings
from callguard.runtime import Engine, LedgerSink, PbxDriver, Scheduler

if TYPE_CHECKING:
    from callguard.ledger import Ledger


def build_policy(config: Config) -> Policy:
    """The site's :class:`Policy` from ``[policy]``."""
    p = config.policy
    languages = {**DEFAULT_LANGUAGES, **{k.upper(): v for k, v in p.languages.items()}}
    return Policy.with_overrides(
        p.jurisdictions,
        default_regime=p.default_regime,
        unknown_regime=p.unknown_regime,
        gdpr_explicit_consent=p.gdpr_explicit_consent,
        home=p.home or None,
        internal_numbers=p.internal_numbers,
        default_region=p.default_region or None,
        default_language=p.default_language,
        languages=languages,
    )


def build_session_settings(config: Config) -> SessionSettings:
    """The per-call consent flow settings from ``[consent]`` and ``[recording]``."""
    c, r = config.consent, config.recording
    return SessionSettings(
        grant_digits=c.grant_digits,
        decline_digits=c.decline_digits,
        timeout_ms=c.timeout_ms,
        max_attempts=c.max_attempts,
        decline_destination=c.decline_destination or None,
        confirm_timeout_s=r.confirm_timeout_ms / 1000.0,
        start_timeout_s=r.start_timeout_ms / 1000.0,
        max_pause_s=r.max_pause_s,
        notice_start_limit_s=c.notice_start_limit_s,
        notice_end_limit_s=c.notice_end_limit_s,
        notice_prompt=c.notice_prompt,
        recording_extension=r.format,
    )


def build_engine(config: Config, driver: PbxDriver, ledger: LedgerSink, scheduler: Scheduler,
                 prompts: PromptResolver | None = None) -> Engine:
    """An :class:`Engine` for ``config``; ``prompts`` defaults to the configured catalogue."""
    return Engine(
        settings=build_session_settings(config),
        policy=build_policy(config),
        prompts=prompts if prompts is not None else build_prompts(config),
        ledger=ledger,
        driver=driver,
        scheduler=scheduler,
    )


def build_prompts(config: Config) -> PromptResolver:
    """The prompt catalogue named in ``[prompts]`` (default: the shipped one)."""
    from callguard.prompts.catalog import PromptCatalog

    return PromptCatalog.from_config(config)


def build_ledger(config: Config, chain_id: str | None = None) -> "Ledger":
    """The listener's ledger writer on ``[ledger] url``, resuming its chain."""
    from callguard.ledger import Ledger

    return Ledger.open(config.ledger.url, chain_id or config.chain_id(),
                       batch_max=config.ledger.batch_max, batch_wait_ms=config.ledger.batch_wait_ms)
