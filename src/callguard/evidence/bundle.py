"""Per-call evidence bundles: the format, building one, and checking one offline.

A bundle is a zip file (format ``callguard-evidence-bundle/1``, documented
in ``docs/evidence-bundle.md``) that lets anyone check, without callguard's
database and without trusting its operator, that a call's ledger entries
are exactly those in a log whose signed checkpoint they hold:

* ``manifest.json``: format, call id, export time, and per chain the
  checkpoint file; the prompt audio hashes and recording hashes the entries
  state, for convenience (each is also inside a hashed entry);
* ``entries.jsonl``: one entry per line with every hashed field, its hash,
  ``leaf_index`` (= seq - 1) and ``inclusion_proof`` (base64 hashes);
* ``checkpoints/<chain>.checkpoint``: the signed checkpoint (C2SP note);
* ``openings.json`` (optional): salt and value of sealed personal fields;
* ``recordings/<id>.wav`` (optional): the decrypted recording;
* ``README.txt``: the above in words.

:func:`verify` is the reference checker (``callguard evidence verify``);
``docs/verify_bundle.py`` is an independent one in 60 lines.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callguard.evidence import merkle, pii
from callguard.evidence.note import NoteError, Verifier, open_checkpoint
from callguard.ledger.chain import entry_hash

FORMAT = "callguard-evidence-bundle/1"
HASHED_FIELDS = ("chain_id", "seq", "call_id", "kind", "pbx_time_us", "received_at_us", "data", "prev_hash")
MAX_MEMBER = 64 * 1024 * 1024  #: larger members are refused (a zip bomb must not exhaust the verifier)


class BundleError(Exception):
    """The bundle cannot be read at all (not a zip, no manifest, wrong format)."""


def safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_.@" else "_" for ch in name)[:120]


@dataclass
class Contents:
    """What goes into a bundle (built by :mod:`callguard.evidence.export`)."""

    call_id: str
    exported_at: float
    entries: list[dict[str, Any]]  #: hashed fields + hash + leaf_index + inclusion_proof (list of bytes)
    checkpoints: dict[str, str]  #: chain id -> signed note
    openings: dict[str, dict[str, str]] = field(default_factory=dict)  #: commitment -> {"salt", "value"}
    recordings: dict[str, bytes] = field(default_factory=dict)  #: recording id -> WAV bytes


def _readme(contents: Contents) -> str:
    chains = ", ".join(sorted(contents.checkpoints))
    return f"""Evidence bundle for call {contents.call_id} ({FORMAT})

This file proves what callguard recorded about this call - notice, consent,
recording start/stop/pauses, and who was on the call - and that those entries
are part of a tamper-evident log (chains: {chains}) whose signed checkpoint is
included. Nothing here needs the operator's database.

Check it with:   callguard evidence verify THIS.zip --key LEDGER.pub
or, without callguard:   python3 verify_bundle.py THIS.zip LEDGER.pub
(docs/verify_bundle.py and docs/evidence-bundle.md in the callguard sources).
Get LEDGER.pub (the ledger's verifier key) from the operator through a channel
you trust, or from a witness that published their checkpoints - never only
from this bundle.

entries.jsonl       the call's ledger entries, each with its Merkle inclusion proof
checkpoints/        the signed checkpoint(s) the proofs lead to
manifest.json       index, prompt audio hashes, recording hashes
openings.json       (if present) the personal data sealed in the entries, with salts
recordings/         (if present) the decrypted call recording(s)
"""


def _facts(entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    prompts, recordings = [], []
    for entry in entries:
        data = entry["data"] if isinstance(entry["data"], Mapping) else {}
        if entry["kind"] == "notice-started" and data.get("sha256"):
            prompts.append({"seq": entry["seq"], "chain_id": entry["chain_id"], "prompt_id": data.get("prompt_id"),
                            "language": data.get("language"), "sha256": data.get("sha256")})
        if entry["kind"] in ("recording-stored", "recording-quarantined") and data.get("recording_id"):
            recordings.append({"recording_id": data["recording_id"], "sha256": data.get("sha256"),
                               "chain_id": entry["chain_id"], "seq": entry["seq"]})
    return prompts, recordings


def write(path: Path, contents: Contents) -> None:
    """Write the bundle zip (to a temporary name, renamed when complete)."""
    prompts, recordings = _facts(contents.entries)
    manifest = {
        "format": FORMAT,
        "call_id": contents.call_id,
        "exported_at": contents.exported_at,
        "entries": "entries.jsonl",
        "chains": {chain: {"checkpoint": f"checkpoints/{safe(chain)}.checkpoint"} for chain in contents.checkpoints},
        "prompts": prompts,
        "recordings": [{**r, "file": f"recordings/{r['recording_id']}.wav" if r["recording_id"] in contents.recordings
                        else None} for r in recordings],
        "openings": "openings.json" if contents.openings else None,
    }
    lines = []
    for entry in contents.entries:
        record = {k: entry[k] for k in HASHED_FIELDS}
        record.update(hash=entry["hash"], leaf_index=entry["leaf_index"],
                      inclusion_proof=[base64.b64encode(h).decode() for h in entry["inclusion_proof"]])
        lines.append(json.dumps(record, ensure_ascii=False, sort_keys=True))
    tmp = path.with_name(f".{path.name}.part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.txt", _readme(contents))
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
        archive.writestr("entries.jsonl", "\n".join(lines) + "\n")
        for chain, note in contents.checkpoints.items():
            archive.writestr(f"checkpoints/{safe(chain)}.checkpoint", note)
        if contents.openings:
            archive.writestr("openings.json", json.dumps(contents.openings, indent=2, ensure_ascii=False))
        for rid, audio in contents.recordings.items():
            archive.writestr(f"recordings/{rid}.wav", audio)
    tmp.replace(path)


@dataclass
class Report:
    """What :func:`verify` found; ``problems`` empty means the bundle holds."""

    call_id: str = ""
    entries: int = 0
    chains: dict[str, int] = field(default_factory=dict)  #: chain id -> checkpoint tree size
    opened: int = 0
    recordings_checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _member(archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise BundleError(f"{name} is missing from the bundle") from None
    if info.file_size > MAX_MEMBER:
        raise BundleError(f"{name} is {info.file_size} bytes; refusing members over {MAX_MEMBER}")
    return archive.read(info)


def _checkpoints(archive: zipfile.ZipFile, manifest: Mapping[str, Any], verifier: Verifier,
                 report: Report) -> dict[str, tuple[int, bytes]]:
    roots = {}
    for chain, info in manifest.get("chains", {}).items():
        name = info.get("checkpoint", "")
        try:
            checkpoint = open_checkpoint(_member(archive, name).decode("utf-8"), verifier)
        except (NoteError, UnicodeDecodeError) as exc:
            report.problems.append(f"checkpoint of chain {chain!r} ({name}): {exc}")
            continue
        if not checkpoint.origin.endswith("/" + chain):
            report.problems.append(f"checkpoint {name} is of log {checkpoint.origin!r}, not chain {chain!r}")
            continue
        roots[chain] = (checkpoint.size, checkpoint.root_hash)
        report.chains[chain] = checkpoint.size
    return roots


def _check_entry(entry: Mapping[str, Any], roots: Mapping[str, tuple[int, bytes]], report: Report) -> str | None:
    where = f"entry chain {entry.get('chain_id')!r} seq {entry.get('seq')} ({entry.get('kind')})"
    try:
        computed = entry_hash(**{k: entry[k] for k in HASHED_FIELDS})
    except (KeyError, TypeError, ValueError) as exc:
        return f"{where}: malformed ({exc})"
    if computed != entry.get("hash"):
        return f"{where}: its content does not match its hash: the entry was changed after export"
    root = roots.get(entry["chain_id"])
    if root is None:
        return f"{where}: no verified checkpoint for its chain"
    size, root_hash = root
    try:
        proof = [base64.b64decode(h, validate=True) for h in entry["inclusion_proof"]]
        leaf = merkle.leaf_hash(bytes.fromhex(computed))
        if entry["leaf_index"] != entry["seq"] - 1:
            return f"{where}: leaf_index {entry['leaf_index']} is not seq - 1"
        merkle.verify_inclusion(entry["leaf_index"], size, leaf, proof, root_hash)
    except (merkle.ProofError, ValueError, KeyError, TypeError) as exc:
        return f"{where}: not proven to be in the signed log of size {size}: {exc}"
    return None


def _check_links(entries: list[Mapping[str, Any]], report: Report) -> None:
    by_key = {(e.get("chain_id"), e.get("seq")): e for e in entries}
    for entry in entries:
        before = by_key.get((entry.get("chain_id"), (entry.get("seq") or 0) - 1))
        if before is not None and entry.get("prev_hash") != before.get("hash"):
            report.problems.append(f"entry chain {entry.get('chain_id')!r} seq {entry.get('seq')}: prev_hash does "
                                   f"not link to seq {before.get('seq')}")


def _check_openings(archive: zipfile.ZipFile, manifest: Mapping[str, Any], entries: list[Mapping[str, Any]],
                    report: Report) -> None:
    if not manifest.get("openings"):
        return
    try:
        openings = json.loads(_member(archive, manifest["openings"]))
    except (ValueError, BundleError) as exc:
        report.problems.append(f"openings: unreadable ({exc})")
        return
    sealed = {s["commit"] for e in entries for s in pii.sealed_values(e.get("data"))}
    for commit, opening in openings.items():
        if commit not in sealed:
            report.problems.append(f"openings.json: {commit[:16]}... is not a commitment in any entry")
        elif not pii.check_opening(commit, opening):
            report.problems.append(f"openings.json: the value given for {commit[:16]}... does not match its "
                                   "commitment: it was altered")
        else:
            report.opened += 1


def _check_recordings(archive: zipfile.ZipFile, manifest: Mapping[str, Any], entries: list[Mapping[str, Any]],
                      report: Report) -> None:
    stated = {}
    for entry in entries:
        data = entry.get("data")
        if entry.get("kind") in ("recording-stored", "recording-quarantined") and isinstance(data, Mapping):
            stated[data.get("recording_id")] = data.get("sha256")
    for recording in manifest.get("recordings", []):
        name = recording.get("file")
        if not name:
            continue
        try:
            digest = hashlib.sha256(_member(archive, name)).hexdigest()
        except BundleError as exc:
            report.problems.append(str(exc))
            continue
        if stated.get(recording.get("recording_id")) != digest:
            report.problems.append(f"{name}: its SHA-256 is not the one the ledger recorded for recording "
                                   f"{recording.get('recording_id')}: the audio was altered or swapped")
        else:
            report.recordings_checked += 1


def verify(source: Path | bytes, verifier: Verifier) -> Report:
    """Check a bundle offline; every problem is worded for a reader who never saw callguard."""
    report = Report()
    try:
        archive = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BundleError(f"not a readable zip file ({exc})") from None
    with archive:
        try:
            manifest = json.loads(_member(archive, "manifest.json"))
        except ValueError as exc:
            raise BundleError(f"manifest.json is not JSON ({exc})") from None
        if manifest.get("format") != FORMAT:
            raise BundleError(f"not a {FORMAT} bundle (format {manifest.get('format')!r})")
        report.call_id = str(manifest.get("call_id"))
        roots = _checkpoints(archive, manifest, verifier, report)
        entries = []
        for number, line in enumerate(_member(archive, manifest.get("entries", "entries.jsonl")).decode("utf-8")
                                      .splitlines(), 1):
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except ValueError:
                report.problems.append(f"entries.jsonl line {number} is not JSON")
        for entry in entries:
            if entry.get("call_id") != report.call_id:
                report.problems.append(f"entry chain {entry.get('chain_id')!r} seq {entry.get('seq')} belongs to "
                                       f"call {entry.get('call_id')!r}, not {report.call_id!r}")
            problem = _check_entry(entry, roots, report)
            if problem:
                report.problems.append(problem)
        report.entries = len(entries)
        if not entries:
            report.problems.append("the bundle holds no entries")
        _check_links(entries, report)
        _check_openings(archive, manifest, entries, report)
        _check_recordings(archive, manifest, entries, report)
    return report


__all__ = ["FORMAT", "BundleError", "Contents", "Report", "safe", "verify", "write"]
