"""The encrypted file format, driven on real WAV files.

Each attack is made on the bytes of a real encrypted recording and must
fail with its own clear error, leaving no plaintext (not even a .part file).
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
from pathlib import Path

import pytest

from callguard.vault.envelope import (
    ExtendedError, FormatError, IntegrityError, ReorderedError, TamperedError, TruncatedError,
    WrongKeyError, decrypt_to_file, encrypt_stream, read_header, scan_structure, verify_stream,
)
from callguard.vault.keys import KeyFileError, KeyStore, Keyring, PrivateKeys, check_wrapped, \
    generate_pair, private_pem, unwrap, wrap

from tests.vault.vault_audio import noise_wav, speech_wav

CHUNK = 4096  # small chunks so modest real files have many of them


def _encrypt(src: Path, dst: Path, key: bytes, rid: str, chunk: int = CHUNK):
    with open(src, "rb") as s, open(dst, "wb") as d:
        return encrypt_stream(s, d, data_key=key, recording_id=rid, key_id="0" * 16, chunk_size=chunk)


@pytest.fixture(scope="module")
def wavs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("wavs")
    files = {
        "speech-8k": speech_wav(d / "speech8k.wav", "Thank you for calling, how can I help?", 8000),
        "noise-16k-3s": noise_wav(d / "noise16k.wav", 3, 16000),
        "noise-8k-20s": noise_wav(d / "noise8k.wav", 20, 8000),
    }
    # exactly four chunks of plaintext: the final chunk is full, a boundary case
    exact = d / "exact.wav"
    exact.write_bytes((d / "noise8k.wav").read_bytes()[: 4 * CHUNK])
    files["exact-multiple"] = exact
    empty = d / "empty.wav"
    empty.write_bytes(b"")
    files["empty"] = empty
    return files


@pytest.mark.parametrize("name", ["speech-8k", "noise-16k-3s", "noise-8k-20s", "exact-multiple", "empty"])
@pytest.mark.parametrize("chunk", [CHUNK, 1 << 20])
def test_round_trip_real_wavs(wavs, tmp_path, name, chunk):
    src = wavs[name]
    key, rid = secrets.token_bytes(32), secrets.token_hex(16)
    result = _encrypt(src, tmp_path / "rec.cgv", key, rid, chunk)
    data = src.read_bytes()
    assert result.plaintext_size == len(data)
    assert result.plaintext_sha256 == hashlib.sha256(data).hexdigest()
    assert result.ciphertext_size == (tmp_path / "rec.cgv").stat().st_size
    assert data[:64] not in (tmp_path / "rec.cgv").read_bytes() or not data
    out = tmp_path / "out.wav"
    reader = decrypt_to_file(tmp_path / "rec.cgv", out, key, expect_recording=rid,
                             expect_size=result.ciphertext_size)
    assert out.read_bytes() == data
    assert reader.chunks == result.chunks
    with open(tmp_path / "rec.cgv", "rb") as f:
        header, chunks, chain = scan_structure(f)
    assert (header.recording_id, chunks, chain) == (rid, result.chunks, result.tag_chain)


@pytest.fixture
def sealed(wavs, tmp_path):
    key, rid = secrets.token_bytes(32), secrets.token_hex(16)
    path = tmp_path / "rec.cgv"
    result = _encrypt(wavs["noise-8k-20s"], path, key, rid)
    assert result.chunks > 50
    return path, key, rid, result


def _sealed_size():
    return CHUNK + 16


def _assert_fails_without_plaintext(path: Path, key: bytes, rid: str, error: type, match: str,
                                    expect_size: int | None = None) -> None:
    out = path.with_name("plain.wav")
    with pytest.raises(error, match=match):
        decrypt_to_file(path, out, key, expect_recording=rid, expect_size=expect_size)
    assert not out.exists()
    assert not out.with_name("plain.wav.part").exists()


def test_flipped_byte_in_a_chunk_is_tampering(sealed):
    path, key, rid, _ = sealed
    data = bytearray(path.read_bytes())
    header = read_header(io.BytesIO(bytes(data)))
    data[header.size + 7 * _sealed_size() + 100] ^= 0x01
    path.write_bytes(bytes(data))
    _assert_fails_without_plaintext(path, key, rid, TamperedError, r"chunk 7 failed authentication")


def test_edited_header_is_detected(sealed):
    path, key, rid, _ = sealed
    data = path.read_bytes()
    # change the chunk size in the header: structure check or every chunk fails
    edited = data.replace(b'"chunk":4096', b'"chunk":8192', 1)
    assert edited != data
    path.write_bytes(edited)
    _assert_fails_without_plaintext(path, key, rid, IntegrityError, r"chunk 0")


def test_truncation_at_a_chunk_boundary_is_named(sealed):
    path, key, rid, _ = sealed
    data = path.read_bytes()
    header = read_header(io.BytesIO(data))
    path.write_bytes(data[: header.size + 10 * _sealed_size()])
    _assert_fails_without_plaintext(path, key, rid, TruncatedError, r"chunk 9 is not the final chunk")


def test_truncation_against_the_catalogue_size(sealed):
    path, key, rid, result = sealed
    path.write_bytes(path.read_bytes()[:-5])
    _assert_fails_without_plaintext(path, key, rid, TruncatedError, r"truncated",
                                    expect_size=result.ciphertext_size)


def test_reordered_chunks_are_named(sealed):
    path, key, rid, _ = sealed
    data = path.read_bytes()
    header = read_header(io.BytesIO(data))
    size = _sealed_size()
    body = data[header.size:]
    chunks = [body[i:i + size] for i in range(0, len(body), size)]
    chunks[3], chunks[5] = chunks[5], chunks[3]
    path.write_bytes(data[: header.size] + b"".join(chunks))
    _assert_fails_without_plaintext(path, key, rid, ReorderedError, r"position 3 holds chunk 5")


def test_appended_chunk_is_extension(sealed, wavs, tmp_path):
    path, key, rid, result = sealed
    data = path.read_bytes()
    header = read_header(io.BytesIO(data))
    size = _sealed_size()
    path.write_bytes(data + data[header.size: header.size + size])
    # with the size the catalogue recorded at ingest
    _assert_fails_without_plaintext(path, key, rid, ExtendedError, r"appended",
                                    expect_size=result.ciphertext_size)
    # from the final-chunk flag alone (final chunk full, so boundaries line up)
    exact = tmp_path / "exact.cgv"
    _encrypt(wavs["exact-multiple"], exact, key, rid)
    data = exact.read_bytes()
    exact.write_bytes(data + data[header.size: header.size + size])
    _assert_fails_without_plaintext(exact, key, rid, ExtendedError, r"chunk 3 is the final chunk but data follows")
    # and without the size, a partial final chunk followed by junk still fails closed
    _assert_fails_without_plaintext(path, key, rid, IntegrityError, r"chunk \d+")


def test_wrong_data_key(sealed):
    path, _, rid, _ = sealed
    _assert_fails_without_plaintext(path, secrets.token_bytes(32), rid, WrongKeyError, r"key check failed")


def test_swapped_file_is_detected(sealed):
    path, key, _, _ = sealed
    _assert_fails_without_plaintext(path, key, secrets.token_hex(16), TamperedError, r"swapped")


def test_not_a_vault_file(wavs, tmp_path):
    with pytest.raises(FormatError, match="not a callguard vault file"):
        decrypt_to_file(wavs["speech-8k"], tmp_path / "x.wav", secrets.token_bytes(32))
    assert not (tmp_path / "x.wav").exists()


def test_existing_target_is_not_overwritten(sealed):
    path, key, rid, _ = sealed
    target = path.with_name("keep.wav")
    target.write_bytes(b"mine")
    with pytest.raises(Exception, match="already exists"):
        decrypt_to_file(path, target, key, expect_recording=rid)
    assert target.read_bytes() == b"mine"


def test_structure_scan_detects_swap_without_key(sealed):
    path, _, _, result = sealed
    data = path.read_bytes()
    header = read_header(io.BytesIO(data))
    size = _sealed_size()
    body = bytearray(data[header.size:])
    body[0:size], body[size:2 * size] = body[size:2 * size], body[0:size]
    path.write_bytes(data[: header.size] + bytes(body))
    with open(path, "rb") as f:
        _, chunks, chain = scan_structure(f)
    assert chunks == result.chunks and chain != result.tag_chain


# -- key wrapping ------------------------------------------------------------------


def test_wrap_unwrap_and_ingest_side_check(tmp_path):
    private = generate_pair()
    rid = secrets.token_hex(16)
    data_key = secrets.token_bytes(32)
    wrapped, ephemeral = wrap(data_key, private.public_key(), rid)
    store = KeyStore(tmp_path / "ks")
    store.put(wrapped)
    reread = store.get(rid)
    # the PBX host proves the stored entry is good without the private key
    assert check_wrapped(reread, ephemeral, private.public_key(), data_key)
    assert not check_wrapped(reread, ephemeral, private.public_key(), secrets.token_bytes(32))
    assert unwrap(reread, private, rid) == data_key
    with pytest.raises(WrongKeyError, match="wrapped for key"):
        unwrap(reread, generate_pair(), rid)
    with pytest.raises(WrongKeyError, match="belongs to recording"):
        unwrap(reread, private, secrets.token_hex(16))
    assert store.shred(rid)
    assert not store.exists(rid)
    with pytest.raises(KeyFileError, match="crypto-shredded"):
        store.get(rid)
    assert not store.shred(rid)


def test_rotation_keeps_old_keys_readable(tmp_path):
    ring = Keyring(tmp_path / "ring")
    old, new = generate_pair(), generate_pair()
    kid_old = ring.add(old.public_key(), activate=True, now=1.0)
    kid_new = ring.add(new.public_key(), activate=True, now=2.0)
    assert ring.active_id() == kid_new
    info = {k.kid: k for k in ring.keys()}
    assert info[kid_old].retired_at == 2.0 and info[kid_new].active
    privdir = tmp_path / "priv"
    privdir.mkdir()
    (privdir / f"{kid_old}.pem").write_bytes(private_pem(old, b"pw"))
    keys = PrivateKeys(privdir, b"pw")
    rid = secrets.token_hex(16)
    wrapped, _ = wrap(b"k" * 32, ring.public(kid_old), rid)
    assert unwrap(wrapped, keys.get(kid_old), rid) == b"k" * 32
    with pytest.raises(KeyFileError, match=f"private key {kid_new} is not in"):
        keys.get(kid_new)
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        PrivateKeys(privdir, b"nope").get(kid_old)
    with pytest.raises(KeyFileError, match="passphrase-protected"):
        PrivateKeys(privdir, None).get(kid_old)


def test_constant_memory_streaming_of_a_pipe(tmp_path):
    """A non-seekable source with short reads (a pipe) still yields fixed chunks."""
    r, w = os.pipe()
    payload = os.urandom(3 * CHUNK + 17)
    os.write(w, payload)
    os.close(w)
    key, rid = secrets.token_bytes(32), secrets.token_hex(16)
    sink = io.BytesIO()
    with os.fdopen(r, "rb", buffering=0) as source:
        result = encrypt_stream(source, sink, data_key=key, recording_id=rid, key_id="0" * 16,
                                chunk_size=CHUNK)
    assert result.chunks == 4
    sink.seek(0)
    reader = verify_stream(sink, key, expect_recording=rid)
    assert reader.plaintext_size == len(payload)
