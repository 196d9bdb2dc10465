"""Publishing checkpoints where the operator cannot silently take them back.

Two kinds of witness, any number of each:

* :class:`DirectoryWitness` writes each checkpoint as its own file,
  ``<dir>/<origin with / as _>/<tree size>-<unix time>.checkpoint``,
  created exclusively and fsynced (never overwritten), so the directory can
  be an NFS mount on another host, synced to object storage with object
  lock, or copied by a cron job - a log of what was claimed, and when.
* :class:`HttpWitness` speaks the C2SP tlog-witness protocol
  (``POST <prefix>/add-checkpoint``): it sends the witness's last known
  size and a consistency proof from there; the witness verifies both the
  signature and the proof *itself* and answers with a cosignature, so a
  rewritten history is refused by a party the operator does not control
  (HTTP 422), not just logged.

I/O lives here and in the checkpointer; the formats are in ``note``/``merkle``.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from callguard.evidence.note import Checkpoint

log = logging.getLogger("callguard.evidence")

ProofFor = Callable[[str, int, int], list[bytes]]  #: (chain id, old size, new size) -> consistency proof


@dataclass(frozen=True)
class Outcome:
    witness: str
    outcome: str  #: "published", "cosigned", "refused", "failed"
    detail: str = ""


class Witness(Protocol):
    name: str

    def publish(self, chain_id: str, checkpoint: Checkpoint, note: str) -> Outcome: ...


def safe_name(origin: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]", "_", origin)[:200]


class DirectoryWitness:
    """One write-once file per checkpoint in a directory meant to leave the building."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.name = f"dir:{directory}"

    def publish(self, chain_id: str, checkpoint: Checkpoint, note: str) -> Outcome:
        folder = self.directory / safe_name(checkpoint.origin)
        path = folder / f"{checkpoint.size:012d}-{checkpoint.timestamp or 0}.checkpoint"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return Outcome(self.name, "published", f"{path} (already there)")
        except OSError as exc:
            return Outcome(self.name, "failed", f"cannot write {path}: {exc.strerror}")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(note)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            return Outcome(self.name, "failed", f"cannot write {path}: {exc.strerror}")
        return Outcome(self.name, "published", str(path))


def read_directory(directory: Path) -> list[tuple[Path, str]]:
    """Every checkpoint file under a witness directory: (path, note text), oldest size first."""
    found = [(p, p.read_text(encoding="utf-8")) for p in directory.rglob("*.checkpoint") if p.is_file()]
    return sorted(found, key=lambda item: item[0].name)


class HttpWitness:
    """A C2SP tlog-witness over HTTPS (httpx; the CA may be private)."""

    def __init__(self, prefix: str, proof_for: ProofFor, *, ca_file: str = "", timeout_s: float = 10.0) -> None:
        self.prefix = prefix.rstrip("/")
        self.name = self.prefix
        self.proof_for = proof_for
        try:
            verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"witness {prefix}: cannot use [evidence] witness_ca_file {ca_file!r}: {exc}") from None
        self.client = httpx.Client(verify=verify, timeout=timeout_s,
                                   headers={"User-Agent": "callguard-ledger"})
        self._known: dict[str, int] = {}  #: origin -> size the witness last cosigned

    def close(self) -> None:
        self.client.close()

    def _body(self, chain_id: str, old: int, checkpoint: Checkpoint, note: str) -> bytes:
        proof = self.proof_for(chain_id, old, checkpoint.size) if 0 < old < checkpoint.size else []
        lines = [f"old {old}"] + [base64.b64encode(h).decode() for h in proof]
        return ("\n".join(lines) + "\n\n" + note).encode()

    def publish(self, chain_id: str, checkpoint: Checkpoint, note: str) -> Outcome:
        old = self._known.get(checkpoint.origin, 0)
        for _ in range(2):  # a 409 tells us the witness's size: retry once from there
            try:
                response = self.client.post(f"{self.prefix}/add-checkpoint",
                                            content=self._body(chain_id, old, checkpoint, note),
                                            headers={"Content-Type": "text/plain; charset=utf-8"})
            except httpx.HTTPError as exc:
                return Outcome(self.name, "failed", f"{type(exc).__name__}: {exc}")
            if response.status_code == 200:
                self._known[checkpoint.origin] = checkpoint.size
                return Outcome(self.name, "cosigned", response.text)
            if response.status_code == 409 and response.headers.get("content-type", "").startswith("text/x.tlog.size"):
                try:
                    witnessed = int(response.text.strip())
                except ValueError:
                    break
                if witnessed > checkpoint.size:
                    return Outcome(self.name, "refused", f"the witness has already cosigned size {witnessed}, "
                                                         f"larger than this checkpoint ({checkpoint.size})")
                old = witnessed
                continue
            break
        reason = {
            403: "the witness does not trust this signing key",
            404: "the witness does not know this log's origin",
            409: "the witness holds a different root for this size: a rewritten history",
            422: "the witness found the consistency proof wrong: the history it saw was rewritten",
        }.get(response.status_code, "unexpected answer")
        return Outcome(self.name, "refused", f"HTTP {response.status_code}: {reason}: {response.text.strip()[:200]}")


__all__ = ["DirectoryWitness", "HttpWitness", "Outcome", "ProofFor", "Witness", "read_directory", "safe_name"]
