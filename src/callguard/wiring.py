"""Build runtime objects from :class:`~callguard.config.Config`.

The core takes plain values (it never reads config files); this module is
the one place that knows how config sections map onto them.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from callguard.config import Config
from callguard.core.jurisdictions import DEFAULT_LANGUAGES
from callguard.core.policy import Policy
from callguard.core.prompts import PromptResolver
from callguard.core.session import SessionSettings
from callguard.runtime import Engine, LedgerSink, PbxDriver, Scheduler

if TYPE_CHECKING:
    from sqlalchemy import Engine as SAEngine

    from callguard.evidence.checkpointer import Checkpointer
    from callguard.ledger import Ledger
    from callguard.ledger.process import LedgerProcess
    from callguard.vault.autoingest import AutoIngest

log = logging.getLogger("callguard")


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


def build_ledger(config: Config, chain_id: str | None = None, *, checkpoints: bool = True,
                 writer: str | None = None, recordings: tuple[str, str] | None = None) -> "Ledger | LedgerProcess":
    """The listener's ledger writer on ``[ledger] url``, resuming its chain.

    With ``checkpoints`` and a signing key, a :class:`Checkpointer` signs the
    chains' tree heads every ``[evidence] checkpoint_interval_s`` and once
    more when the ledger closes.  ``[ledger] writer = "process"`` (or
    ``writer=``) runs this very function with the thread writer in a child
    process (:mod:`callguard.ledger.process`): checkpointer included, and,
    with ``recordings`` (the PBX's recording directory and the setting it came
    from), the vault's ingest of finished recordings (``[vault] ingest_on_stop``).
    """
    chain = chain_id or config.chain_id()
    if (writer or config.ledger.writer) == "process":
        from callguard.ledger.process import LedgerProcess

        ingest = None if recordings is None else functools.partial(_ingest_in_writer, config, *recordings)
        return LedgerProcess(build_ledger, config, chain, checkpoints=checkpoints, writer="thread", chain_id=chain,
                             read_url=config.ledger.url, ingest=ingest)
    from callguard.ledger import Ledger

    ledger = Ledger.open(config.ledger.url, chain,
                         batch_max=config.ledger.batch_max, batch_wait_ms=config.ledger.batch_wait_ms,
                         seal=config.evidence.seal_personal_data)
    if checkpoints:
        checkpointer = build_checkpointer(config, ledger.engine)
        if checkpointer is not None:
            checkpointer.start()
            ledger.on_close(checkpointer.stop)
    return ledger


def build_ingest(config: Config, ledger: LedgerSink, recording_dir: str, where: str) -> "AutoIngest | None":
    """The vault's ingest of finished recordings, in front of ``ledger`` in this process.

    None when ``ledger``'s writer process was given the job (:func:`build_ledger`
    with ``recordings``: it ingests there, or logged why not), or when the
    vault does not ingest (logged).
    """
    if getattr(ledger, "ingests", None) is not None:
        return None
    from callguard.vault.autoingest import open_auto_ingest

    return open_auto_ingest(config, ledger, recording_dir, where)


def _ingest_in_writer(config: Config, recording_dir: str, where: str, ledger: "Ledger") -> object | None:
    """In the writer process: the vault's AutoIngest in front of its ledger (None: logged why not)."""
    from callguard.vault.autoingest import open_auto_ingest

    return open_auto_ingest(config, ledger, recording_dir, where)


def build_checkpointer(config: Config, engine: "SAEngine", *, required: bool = False) -> "Checkpointer | None":
    """The checkpointer of ``[evidence]``; None (with a warning) when there is no signing key.

    ``required``: raise :class:`~callguard.evidence.signing.SigningKeyError` instead.
    """
    from callguard.evidence.checkpointer import Checkpointer
    from callguard.evidence.signing import SigningKeyError, load_signer
    from callguard.evidence.witness import DirectoryWitness, HttpWitness

    settings = config.evidence
    passphrase = os.environ.get(settings.passphrase_env)
    try:
        signer = load_signer(Path(settings.signing_key), passphrase.encode() if passphrase else None)
    except SigningKeyError as exc:
        if required:
            raise
        log.warning("ledger checkpoints are NOT signed: %s", exc)
        return None
    checkpointer = Checkpointer(engine, signer, settings.origin, interval_s=settings.checkpoint_interval_s)
    if settings.witness_dir:
        checkpointer.witnesses.append(DirectoryWitness(Path(settings.witness_dir)))
    for url in settings.witness_urls:
        try:
            checkpointer.witnesses.append(HttpWitness(url, checkpointer.proof_for, ca_file=settings.witness_ca_file,
                                                      timeout_s=settings.witness_timeout_s))
        except ValueError as exc:
            log.error("%s; checkpoints are not sent to it", exc)
    return checkpointer
