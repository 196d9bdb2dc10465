"""The demo's missed-pause call, after the PBX part: its recording through the vault's transcription stage.

The demo's fake PBXs record nothing audible, so this writes the file the
PBX would have written for the call (quiet line hiss from the ledger's
recording start to its stop, the caller's voice - a shipped espeak-ng clip
reading the test card number 4111 1111 1111 1111 - at ``SPEECH_AT_S``),
then ingests it into a throw-away vault next to the demo ledger with
transcription declared, exactly as ``callguard vault ingest`` would.
Afterwards it reads back what a compliance officer would check: the stored
recording is digital silence over the span, the transcript shows
``[card number redacted]``, the ledger has the finding, the audit's missed
pauses name the agent.

The demo's ``[transcripts]`` declares that the shipped notice covers
transcription; a real site words its notice to say so.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from sqlalchemy.engine import make_url

from callguard.config import Config, parse_config
from callguard.ledger.db import sqlite_path

SPEECH_AT_S = 6.0
DEMO_ROLES = {"demo-officer": ["ingest", "list", "export", "audit", "transcript:read"]}


@dataclass
class CardDemo:
    call_id: str
    recording_id: str = ""
    transcript: str = ""
    findings: list[dict[str, object]] = field(default_factory=list)
    span: tuple[float, float] | None = None
    silent: bool = False
    missed_pauses: list[dict[str, object]] = field(default_factory=list)
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return (self.problem is None and self.silent and "[card number redacted]" in self.transcript
                and any(f.get("kind") == "card-number" for f in self.findings) and bool(self.missed_pauses))


def speech_clip() -> Path:
    return Path(str(resources.files("callguard") / "data" / "demo" / "customer-reads-card.wav"))


def write_recording(path: Path, seconds: float, rate: int = 8000) -> None:
    """What the PBX would have recorded: line hiss, the caller's voice at SPEECH_AT_S."""
    with wave.open(str(speech_clip()), "rb") as clip:
        voice = np.frombuffer(clip.readframes(clip.getnframes()), dtype="<i2")
    total = max(int(seconds * rate), int(SPEECH_AT_S * rate) + len(voice) + rate)
    audio = np.random.default_rng(17).normal(0, 60, total)
    at = int(SPEECH_AT_S * rate)
    audio[at:at + len(voice)] += voice
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.clip(audio, -32768, 32767).astype("<i2").tobytes())


def demo_config(ledger_url: str, work: Path, user: str) -> Config:
    return parse_config({
        "ledger": {"url": ledger_url},
        "vault": {"dir": str(work / "vault"), "private_keys": str(work / "private"), "bind_os_user": False,
                  "scan_dtmf": True},
        "transcripts": {"purposes": ["qa"], "notice_prompts": ["notice"]},
        "roles": DEMO_ROLES, "users": {user: "demo-officer"},
    }, "<demo>", environ={})


def run_card_demo(ledger_url: str, call_id: str) -> CardDemo:
    """Ingest the missed-pause call's recording with transcription; report what the evidence shows."""
    from callguard.ledger.queries import timeline
    from callguard.transcripts.store import show
    from callguard.transcripts.worker import close_shared
    from callguard.vault.audit import run_audit
    from callguard.vault.ingest import ingest_file
    from callguard.vault.keys import Keyring, generate_pair, private_pem
    from callguard.vault.recordings import export
    from callguard.vault.service import Vault, os_user
    from callguard.transcripts.engines import read_mono

    result = CardDemo(call_id)
    path = sqlite_path(make_url(ledger_url))
    work = (path.parent if path else Path.cwd()) / "vault-demo"
    user = os_user()
    config = demo_config(ledger_url, work, user)
    private = generate_pair()
    kid = Keyring(work / "vault" / "keyring").add(private.public_key(), activate=True)
    (work / "private").mkdir(parents=True, exist_ok=True)
    (work / "private" / f"{kid}.pem").write_bytes(private_pem(private, None))
    try:
        with Vault.open(config) as vault:
            with vault.session() as session:
                entries = timeline(session, call_id)
            started = next(e for e in entries if e.kind == "recording-started")
            stopped = next((e for e in entries if e.kind in ("recording-stopped", "hangup")), entries[-1])
            name = Path(str(started.data.get("file") or f"{call_id}.wav")).name
            spool = work / "spool"
            spool.mkdir(exist_ok=True)
            write_recording(spool / name, stopped.pbx_time - started.pbx_time)
            stored = ingest_file(vault, spool / name, call_id, user=user)
            result.recording_id = stored.recording_id
            spans = (stored.transcription or {}).get("redacted_spans") or []
            out = work / "stored-recording.wav"
            export(vault, user, stored.recording_id, "demo: check the redaction", out)
            samples, rate = read_mono(out)
            if spans:
                a, b = spans[0]
                result.span = (a, b)
                result.silent = not samples[int(a * rate) + 1:int(b * rate) - 1].any()
            [transcript] = show(vault, user, call_id, "demo: read the redacted transcript")
            result.transcript = " ".join(str(w[0]) for w in transcript["words"])
            with vault.session() as session:
                result.findings = [e.data for e in timeline(session, call_id) if e.kind == "speech-redacted"]
            month = __import__("time").strftime("%Y-%m", __import__("time").gmtime(started.pbx_time))
            report = run_audit(vault, user, month, verify_chains=False)
            result.missed_pauses = [m for m in report.stats["missed_pauses"] if call_id in m["call_ids"]]
    except Exception as exc:  # noqa: BLE001 - the demo reports, the CLI decides the exit code
        result.problem = f"{type(exc).__name__}: {exc}"
    finally:
        close_shared()
    return result


__all__ = ["CardDemo", "SPEECH_AT_S", "run_card_demo", "write_recording"]
