"""``vault_transcripts``: one row per encrypted transcript, beside the recording it was made from.

The row holds no words: only where the ciphertext is, which key it is
wrapped for, its retention (copied from the recording: a transcript never
outlives its audio), the engine, the notices that covered transcription,
and the findings' kinds and spans (never their content).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callguard.ledger.models import HASH_LEN, ID_LEN, Base
from callguard.vault.models import KID_LEN, RID_LEN, STORED


class Transcript(Base):
    __tablename__ = "vault_transcripts"

    id: Mapped[str] = mapped_column(String(RID_LEN), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(ID_LEN), index=True)
    recording_id: Mapped[str] = mapped_column(String(RID_LEN), index=True)
    file: Mapped[str] = mapped_column(String(512))
    key_id: Mapped[str] = mapped_column(String(KID_LEN), index=True)
    purpose: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[float] = mapped_column(Float, index=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16), default=STORED)
    deleted_at: Mapped[float | None] = mapped_column(Float)
    engine: Mapped[str] = mapped_column(String(64))
    #: JSON list of the notice prompt ids played on the call (what covered transcription)
    notices: Mapped[str] = mapped_column(Text)
    words: Mapped[int] = mapped_column(Integer)
    #: JSON list of findings: kind, start_s, end_s (no words, no digits)
    findings: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(HASH_LEN))
    ciphertext_size: Mapped[int] = mapped_column(BigInteger)
    ciphertext_sha256: Mapped[str] = mapped_column(String(HASH_LEN))
    ledger_seq: Mapped[int | None] = mapped_column(BigInteger)


__all__ = ["Transcript"]
