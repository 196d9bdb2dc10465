"""From the running listener into the vault: encrypt each recording once its call has ended.

``callguard vault ingest FILE --call ID`` is the manual path; this module is
the automatic one, shared by both listeners (``callguard run asterisk`` and
``callguard run freeswitch``).  :class:`AutoIngest` sits in front of the
listener's ledger as the engine's :class:`~callguard.runtime.LedgerSink`,
so it works from the evidence itself, whatever the PBX:

* ``recording-started`` (confirmed by the PBX) names the file the engine
  told the PBX to write.  It is in the listener's recording directory
  (``[asterisk] recording_dir`` / ``[freeswitch] recording_dir``: the
  directory the MixMonitor ``File`` and the record_session path are built
  from), so that is where the file is looked for.
* ``hangup`` is always a call's last entry.  It goes to the ledger with an
  ``on_commit`` hook, so the call's files are submitted only once its end
  (and the ``recording-stopped`` written before it) is durably committed:
  the vault's ``require_call_ended`` check reads the ledger.
* The ingest itself (a DTMF scan, encryption, an authenticated re-read,
  fsyncs) runs on the :class:`~callguard.vault.ingest.VaultIngestor`'s
  worker thread, never on the event loop or the ledger writer.  The outcome
  is logged; nothing is raised into the event path; a failed ingest keeps
  the plaintext for ``callguard vault ingest``.

Why the hangup and not ``recording-stopped``: a stop the listener asks for
(opt-out, an unconfirmed mute) is logged when it is *sent*, and the PBX may
still be writing.  A hung-up channel's recording is over.  A recording
still running when the listener shuts down belongs to a call that has not
ended; it stays for ``callguard vault ingest``.

Why wait for the file to go quiet: MixMonitor's thread and FreeSWITCH's
record_session close the file a moment *after* the hangup event (the
captured FreeSWITCH stream has RECORD_STOP after CHANNEL_HANGUP_COMPLETE),
and ingest refuses a file that changes while it is being encrypted.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from callguard.config import Config
from callguard.core.commands import LedgerEntry
from callguard.runtime import LedgerSink
from callguard.vault.envelope import VaultError
from callguard.vault.ingest import IngestResult, VaultIngestor
from callguard.vault.keys import Keyring
from callguard.vault.service import os_user

log = logging.getLogger("callguard.vault")


class MissingRecording(VaultError):
    """The PBX confirmed the recording, but its file is not on this host."""


@dataclass(frozen=True)
class IngestPlan:
    """Whether the listener ingests on stop, and the sentence that says why (logged at start-up)."""

    enabled: bool
    why: str
    warn: bool = False  #: the site asked for it but it cannot happen: say so loudly


def plan(config: Config, recording_dir: str) -> IngestPlan:
    """Decide, from the config and the keyring, whether this listener ingests; never raises."""
    settings = config.vault
    left = f"finished recordings stay in plaintext in {recording_dir}"
    if not settings.ingest_on_stop:
        return IngestPlan(False, f"[vault] ingest_on_stop = false: {left} until `callguard vault ingest "
                                 f"FILE --call ID` (or another host) encrypts them")
    ring = Keyring(Path(settings.keyring) if settings.keyring else Path(settings.dir) / "keyring")
    try:
        kid = ring.active_id()
    except VaultError as exc:
        return IngestPlan(False, f"vault keyring unreadable ({exc}): {left}", warn=True)
    if not kid:
        return IngestPlan(False, f"no active vault key in {ring.dir}: {left}. Fix: `callguard keys generate` "
                                 f"(or, on a PBX host, `callguard keys import PUBLIC.pem --activate`), then "
                                 f"restart the listener; or set [vault] ingest_on_stop = false if another host "
                                 f"ingests them", warn=True)
    account = os_user()
    role = config.users.get(account)
    if "ingest" not in config.roles.get(role or "", ()):
        holders = sorted(r for r, permissions in config.roles.items() if "ingest" in permissions)
        fix = (f'add `{account} = "{holders[0]}"` to [users]' if holders
               else 'give a role the "ingest" permission in [roles] and this account that role in [users]')
        who = f"role {role!r}" if role else "no role in [users]"
        return IngestPlan(False, f"the listener's account {account!r} may not ingest ({who}): {left}. "
                                 f"Fix: {fix}", warn=True)
    return IngestPlan(True, f"recordings are encrypted into {settings.dir} for key {kid} when each call "
                            f"ends (as {account}, role {role})")


def wait_until_quiet(path: Path, quiet_s: float, limit_s: float) -> bool:
    """Wait until ``path`` has not been written to for ``quiet_s``; False if still busy after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while True:
        age = time.time() - os.stat(path, follow_symlinks=False).st_mtime
        if age >= quiet_s:
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(quiet_s - age, quiet_s, left))


class LiveIngestor(VaultIngestor):
    """The ingestor for files a PBX has just finished: present here? done being written?"""

    #: The file must have been unchanged this long (the PBX closes it just after the hangup).
    quiet_s = 0.5
    #: Give up waiting for quiet after this long and let ingest's own change check decide.
    quiet_limit_s = 30.0

    def __init__(self, config: Config, where: str) -> None:
        super().__init__(config)
        self.where = where
        self._told_missing = False

    def _run(self, call_id: str, path: Path) -> IngestResult:
        if not os.path.lexists(path):
            self._missing(call_id, path)
            raise MissingRecording(f"{path}: no such file")
        try:
            if not wait_until_quiet(path, self.quiet_s, self.quiet_limit_s):
                log.info("vault: %s is still changing after %.0f s; ingesting anyway (the ingest refuses "
                         "a file that changes under it)", path, self.quiet_limit_s)
        except FileNotFoundError:
            pass  # gone meanwhile: ingest says so
        return super()._run(call_id, path)

    def _missing(self, call_id: str, path: Path) -> None:
        """A clear warning per call (no retry loop); the first one explains the usual cause."""
        if self._told_missing:
            log.warning("vault: call %s: %s not found on this host; not ingested", call_id, path)
            return
        self._told_missing = True
        log.warning("vault: call %s: the PBX confirmed recording %s, but there is no such file on this host, "
                    "so nothing was ingested. If the PBX runs on another host, ingest there (`callguard vault "
                    "ingest`) and set [vault] ingest_on_stop = false here; otherwise check %s",
                    call_id, path, self.where)


class AutoIngest:
    """A :class:`LedgerSink` in front of the listener's ledger that ingests each call's recordings.

    Entries pass through unchanged and at once (this is on the pause path:
    one dict lookup per entry, no I/O).  Use :func:`open_auto_ingest`.
    """

    def __init__(self, ledger: LedgerSink, recording_dir: str, ingestor: VaultIngestor) -> None:
        self.ledger = ledger
        self.recording_dir = Path(recording_dir)
        self.ingestor = ingestor
        self.stats = {"submitted": 0, "stored": 0, "missing": 0, "failed": 0}
        self._files: dict[str, list[str]] = {}  #: call id -> file names the PBX confirmed
        self._closed = False
        self._lock = threading.Lock()
        self._on_commit = _takes_on_commit(ledger)

    def append(self, entry: LedgerEntry, received_at: float, on_commit: Callable[[Any], None] | None = None) -> None:
        """Pass ``entry`` on (with the caller's ``on_commit``, when the ledger takes one)."""
        kind = entry.kind
        if kind == "recording-started":
            name = entry.data.get("file")
            if isinstance(name, str) and name:
                files = self._files.setdefault(entry.call_id, [])
                if name not in files:
                    files.append(name)
        elif kind == "hangup" and entry.call_id in self._files:
            call_id, files = entry.call_id, self._files.pop(entry.call_id)
            if self._on_commit:
                def committed(done: Any) -> None:
                    self._submit(call_id, files)
                    if on_commit is not None:
                        on_commit(done)

                self.ledger.append(entry, received_at, on_commit=committed)  # type: ignore[call-arg]
            else:  # a sink without commit hooks: the ingestor retries until the ledger shows the stop
                self.ledger.append(entry, received_at)
                self._submit(call_id, files)
            return
        if on_commit is not None and self._on_commit:
            self.ledger.append(entry, received_at, on_commit=on_commit)  # type: ignore[call-arg]
        else:
            self.ledger.append(entry, received_at)

    def _submit(self, call_id: str, files: list[str]) -> None:
        """Hand the call's files to the ingestor (on the ledger writer thread: never blocks)."""
        with self._lock:
            for name in files:
                if Path(name).name != name or name.startswith("."):
                    log.error("vault: call %s: refusing recording file name %r (not a plain file name)",
                              call_id, name)
                    continue
                path = self.recording_dir / name
                if self._closed:
                    log.warning("vault: call %s: the listener is stopping; %s is left for `callguard vault "
                                "ingest %s --call %s`", call_id, path, path, call_id)
                    continue
                self.stats["submitted"] += 1
                self.ingestor.submit(call_id, path).add_done_callback(self._done)

    def _done(self, future: Future[IngestResult]) -> None:
        # Outcomes are logged where they happen (ingest_file: stored; the ingestor: why not).
        exc = future.exception()
        self.stats["stored" if exc is None else "missing" if isinstance(exc, MissingRecording) else "failed"] += 1

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued (its hangups submit their files), then finish every queued ingest."""
        flush = getattr(self.ledger, "flush", None)
        if callable(flush) and not flush(timeout):
            log.warning("vault: the ledger did not commit within %.0f s; recordings of calls whose end is "
                        "not committed yet are left for `callguard vault ingest`", timeout)
        with self._lock:
            self._closed = True
        self.ingestor.close()

    async def aclose(self, timeout: float = 30.0) -> None:
        """:meth:`close` off the event loop."""
        await asyncio.to_thread(self.close, timeout)


def _takes_on_commit(ledger: LedgerSink) -> bool:
    try:
        return "on_commit" in inspect.signature(ledger.append).parameters
    except (TypeError, ValueError):
        return False


def open_auto_ingest(config: Config, ledger: LedgerSink, recording_dir: str, where: str) -> AutoIngest | None:
    """The ledger sink for a listener: an :class:`AutoIngest`, or None (logged) when it does not ingest.

    ``where`` names the setting the directory came from, for the warnings
    (e.g. ``"[asterisk] recording_dir"``).
    """
    decided = plan(config, recording_dir)
    if not decided.enabled:
        (log.warning if decided.warn else log.info)("vault: %s", decided.why)
        return None
    log.info("vault: %s", decided.why)
    if config.transcripts.purposes:
        from callguard.transcripts.engines import EngineUnavailable, load_engine

        try:  # say it once at start-up, not once per recording
            load_engine(config.transcripts)
            log.info("vault: recordings of purpose %s are transcribed and redacted before encryption (%s)",
                     ", ".join(config.transcripts.purposes), config.transcripts.engine)
        except EngineUnavailable as exc:
            log.warning("vault: [transcripts] declared but the engine cannot run: %s; recordings are stored "
                        "unredacted and the audit reports each one", exc)
    return AutoIngest(ledger, recording_dir, LiveIngestor(config, f"{where} = {recording_dir!r}"))


__all__ = ["AutoIngest", "IngestPlan", "LiveIngestor", "MissingRecording", "open_auto_ingest", "plan",
           "wait_until_quiet"]
