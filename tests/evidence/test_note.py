"""Signed notes and checkpoints against Go's sumdb/note reference vector."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from callguard.evidence import note

VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
SKEY_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
SIGNED = TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"


def test_reference_note_signs_and_verifies_byte_for_byte():
    signer = note.Signer("PeterNeumann", Ed25519PrivateKey.from_private_bytes(SKEY_SEED))
    assert signer.verifier.vkey == VKEY
    assert note.sign(TEXT, signer) == SIGNED
    assert note.open_note(SIGNED, note.Verifier.from_vkey(VKEY)) == TEXT


def test_altered_notes_and_wrong_keys_are_rejected():
    verifier = note.Verifier.from_vkey(VKEY)
    with pytest.raises(note.NoteError, match="altered"):
        note.open_note(SIGNED.replace("cryptography", "cryptographY"), verifier)
    other = note.Signer("PeterNeumann", Ed25519PrivateKey.generate()).verifier
    with pytest.raises(note.NoteError, match="no signature from the trusted key"):
        note.open_note(SIGNED, other)
    for bad in (VKEY.replace("c74f20a3", "c74f20a4"), VKEY[:-2], "PeterNeumann+c74f20a3", "a b+c74f20a3+AA=="):
        with pytest.raises(note.NoteError):
            note.Verifier.from_vkey(bad)


def test_checkpoint_round_trip_with_time_and_unknown_cosignature():
    signer = note.Signer("callguard-ledger", Ed25519PrivateKey.generate())
    cp = note.Checkpoint("callguard-ledger/asterisk@pbx1", 20852163, bytes(range(32)), 1714567890)
    signed = note.sign_checkpoint(cp, signer)
    assert signed.startswith("callguard-ledger/asterisk@pbx1\n20852163\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
                             "time 1714567890\n\n\u2014 callguard-ledger ")
    witness = Ed25519PrivateKey.generate()
    cosigned = signed + note.cosignature_line(cp.text(), "witness.example/w1", witness, 1714567900)
    assert note.open_checkpoint(cosigned, signer.verifier) == cp
    with pytest.raises(note.NoteError, match="tree size"):
        note.Checkpoint.parse("origin\n012\nAAAA\n")
