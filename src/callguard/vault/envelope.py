"""The encrypted recording file: chunked AES-256-GCM with a fresh data key.

Layout of a ``.cgv`` file (all integers big-endian)::

    magic        8 bytes   b"CGVAULT" + format version (1)
    header_len   2 bytes
    header       JSON      {"v":1,"alg":"AES-256-GCM","rid":...,"kid":...,
                            "chunk":<plaintext bytes per chunk>,"kcv":<hex>}
    chunk 0..n   each = AES-256-GCM(data_key, nonce=index (96 bit),
                                    aad=SHA256(magic|len|header) | index u64 | final u8)
                 = ciphertext (chunk bytes, the last one 0..chunk) + 16-byte tag

Why this shape:

* One data key per recording, never stored in the file: the key is wrapped
  for the vault's public key and kept in a separate key store
  (:mod:`callguard.vault.keys`), so destroying that small wrapped key makes
  this file - and every copy of it, backups included - unreadable
  (crypto-shredding).  Because the key is fresh, the chunk index is a safe
  GCM nonce.
* The chunk index and a "final chunk" flag are authenticated (AAD) together
  with a digest of the header, so reordering, dropping the tail
  (truncation), appending chunks (extension) or editing the header all fail
  authentication.  On such a failure the reader diagnoses which it was
  (trying the chunk at other positions / with the other final flag) so the
  error says "truncated after chunk 3" rather than just "bad tag".
* ``kcv`` (key check value) is an HMAC of a constant under the data key.
  It reveals nothing about the key but lets a reader tell "wrong key" apart
  from "tampered data" before touching a chunk.
* Fixed-size chunks make reading and writing constant-memory for any file
  size: the writer holds one chunk and one chunk of look-ahead (to know which
  chunk is final), the reader the same.

Readers never release plaintext of a chunk that failed authentication, and
:func:`decrypt_file` writes to a temporary file renamed into place only after
the final chunk verified, so a bad file leaves no plaintext behind.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import io
import json
import os
import struct
import threading
import queue
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"CGVAULT\x01"
FORMAT_VERSION = 1
ALGORITHM = "AES-256-GCM"
TAG_LEN = 16
KEY_LEN = 32
DEFAULT_CHUNK_SIZE = 1 << 20
MIN_CHUNK_SIZE = 4 << 10
MAX_CHUNK_SIZE = 16 << 20
MAX_HEADER_LEN = 4096
_KCV_LABEL = b"callguard-vault key check v1"
#: How many alternative positions the reader tries when diagnosing a bad chunk.
_DIAGNOSE_LIMIT = 4096


class VaultError(Exception):
    """A vault problem worded for the operator: what failed and what to do."""


class IntegrityError(VaultError):
    """The ciphertext is not exactly what the vault wrote (base of the specific kinds)."""


class TamperedError(IntegrityError):
    """A chunk or the header was modified."""


class TruncatedError(IntegrityError):
    """The file ends before its final chunk."""


class ReorderedError(IntegrityError):
    """Chunks are present but out of order."""


class ExtendedError(IntegrityError):
    """Data follows the final chunk."""


class WrongKeyError(VaultError):
    """The data key (or the private key that unwrapped it) is not this recording's."""


class FormatError(VaultError):
    """Not a callguard vault file, or an unsupported version."""


@dataclass(frozen=True)
class Header:
    """What a reader needs before the first chunk; all of it is authenticated."""

    recording_id: str
    key_id: str
    chunk_size: int
    key_check: str
    raw: bytes  #: magic + length + JSON, exactly as stored

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.raw).digest()

    @property
    def size(self) -> int:
        return len(self.raw)


@dataclass(frozen=True)
class EncryptResult:
    """What the writer learned while encrypting; goes into the catalogue and the ledger."""

    plaintext_size: int
    plaintext_sha256: str | None
    ciphertext_size: int
    chunks: int
    tag_chain: str  #: SHA-256 over header digest and every tag, in order (keyless structure check)


def key_check_value(data_key: bytes, recording_id: str) -> str:
    """HMAC-SHA256(data_key, label|rid), 16 bytes hex: identifies the key, reveals nothing."""
    return hmac.new(data_key, _KCV_LABEL + recording_id.encode(), hashlib.sha256).hexdigest()[:32]


def build_header(recording_id: str, key_id: str, chunk_size: int, data_key: bytes) -> Header:
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise VaultError(f"chunk size {chunk_size} is outside {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE} bytes")
    body = json.dumps(
        {"v": FORMAT_VERSION, "alg": ALGORITHM, "rid": recording_id, "kid": key_id,
         "chunk": chunk_size, "kcv": key_check_value(data_key, recording_id)},
        sort_keys=True, separators=(",", ":"),
    ).encode()
    raw = MAGIC + struct.pack(">H", len(body)) + body
    return Header(recording_id, key_id, chunk_size, key_check_value(data_key, recording_id), raw)


def read_header(stream: BinaryIO, where: str = "file") -> Header:
    """Parse and sanity-check the header (structure only; no key needed)."""
    start = stream.read(len(MAGIC) + 2)
    if len(start) < len(MAGIC) + 2 or start[:7] != MAGIC[:7]:
        raise FormatError(f"{where}: not a callguard vault file (bad magic)")
    if start[7] != FORMAT_VERSION:
        raise FormatError(f"{where}: vault format version {start[7]} is not supported by this "
                          f"callguard (supports {FORMAT_VERSION}); upgrade callguard")
    (length,) = struct.unpack(">H", start[8:])
    if length > MAX_HEADER_LEN:
        raise FormatError(f"{where}: header length {length} is implausible; the file is damaged")
    body = stream.read(length)
    if len(body) != length:
        raise TruncatedError(f"{where}: file ends inside the header; the file is truncated")
    try:
        fields = json.loads(body)
        header = Header(str(fields["rid"]), str(fields["kid"]), int(fields["chunk"]),
                        str(fields["kcv"]), start + body)
        algorithm = fields["alg"]
    except (ValueError, KeyError, TypeError) as exc:
        raise FormatError(f"{where}: header is not valid ({exc}); the file is damaged") from None
    if algorithm != ALGORITHM:
        raise FormatError(f"{where}: unsupported algorithm {algorithm!r}")
    if not MIN_CHUNK_SIZE <= header.chunk_size <= MAX_CHUNK_SIZE:
        raise FormatError(f"{where}: chunk size {header.chunk_size} is implausible; the file is damaged")
    return header


def _nonce(index: int) -> bytes:
    return index.to_bytes(12, "big")


def _aad(header_digest: bytes, index: int, final: bool) -> bytes:
    return header_digest + struct.pack(">QB", index, 1 if final else 0)


class _Hasher:
    """SHA-256 in a helper thread.

    hashlib releases the GIL on large updates while AES-GCM holds it, so on a
    multi-core host hashing the plaintext costs (almost) no wall time on top
    of encryption.  Buffers are immutable ``bytes``, so handing them over is
    safe; the queue is bounded to keep memory constant.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._thread = threading.Thread(target=self._run, name="vault-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (block := self._queue.get()) is not None:
            self._hash.update(block)

    def update(self, block: bytes) -> None:
        self._queue.put(block)

    def hexdigest(self) -> str:
        self._queue.put(None)
        self._thread.join()
        return self._hash.hexdigest()

    def abort(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def _read_full(stream: BinaryIO, size: int) -> bytes:
    """Read exactly ``size`` bytes unless EOF comes first (pipes return short reads)."""
    data = stream.read(size)
    if data is None:
        data = b""
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = stream.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def encrypt_stream(source: BinaryIO, sink: BinaryIO, *, data_key: bytes, recording_id: str,
                   key_id: str, chunk_size: int = DEFAULT_CHUNK_SIZE,
                   hash_plaintext: bool = True) -> EncryptResult:
    """Encrypt ``source`` into ``sink`` in the vault format, in constant memory.

    ``hash_plaintext`` computes the plaintext SHA-256 the ledger records (in a
    helper thread).  The caller owns ``data_key`` and must wrap it before
    discarding it; see :func:`callguard.vault.ingest.ingest_file`.
    """
    if len(data_key) != KEY_LEN:
        raise VaultError("data key must be 32 bytes (AES-256)")
    header = build_header(recording_id, key_id, chunk_size, data_key)
    aead = AESGCM(data_key)
    digest = header.digest
    tags = hashlib.sha256(digest)
    hasher = _Hasher() if hash_plaintext else None
    sink.write(header.raw)
    written = header.size
    total = 0
    index = 0
    # One reusable output buffer when the library can encrypt into it: no
    # per-chunk allocation, so memory and speed stay flat for any size.
    encrypt_into = getattr(aead, "encrypt_into", None)
    out = bytearray(chunk_size + TAG_LEN) if encrypt_into is not None else None
    try:
        current = _read_full(source, chunk_size)
        while True:
            following = _read_full(source, chunk_size) if len(current) == chunk_size else b""
            final = not following
            if hasher is not None and current:
                hasher.update(current)
            aad = _aad(digest, index, final)
            if out is not None:
                size = len(current) + TAG_LEN
                sealed: bytes | memoryview = memoryview(out)[:size]
                encrypt_into(_nonce(index), current, aad, sealed)  # type: ignore[misc]
            else:
                sealed = aead.encrypt(_nonce(index), current, aad)
                size = len(sealed)
            sink.write(sealed)
            tags.update(sealed[size - TAG_LEN:size])
            written += size
            total += len(current)
            index += 1
            if final:
                break
            current = following
    except BaseException:
        if hasher is not None:
            hasher.abort()
        raise
    return EncryptResult(
        plaintext_size=total,
        plaintext_sha256=hasher.hexdigest() if hasher is not None else None,
        ciphertext_size=written,
        chunks=index,
        tag_chain=tags.hexdigest(),
    )


class ChunkReader:
    """Authenticated, in-order plaintext chunks of one vault file.

    Iterating yields each chunk's plaintext only after its tag verified; the
    last yield is the verified final chunk.  Any problem raises an
    :class:`IntegrityError` subclass naming what happened and where.
    """

    def __init__(self, stream: BinaryIO, data_key: bytes, *, where: str = "file",
                 expect_recording: str | None = None, expect_size: int | None = None) -> None:
        self.stream = stream
        self.where = where
        if expect_size is not None and stream.seekable():
            here = stream.tell()
            size = stream.seek(0, os.SEEK_END)
            stream.seek(here)
            if size < expect_size:
                raise TruncatedError(f"{where}: {size} bytes, but the vault wrote {expect_size}; "
                                     f"the file is truncated")
            if size > expect_size:
                raise ExtendedError(f"{where}: {size} bytes, but the vault wrote {expect_size}; "
                                    f"something was appended to the file")
        self.header = read_header(stream, where)
        if expect_recording is not None and self.header.recording_id != expect_recording:
            raise TamperedError(f"{where}: header names recording {self.header.recording_id!r}, "
                                f"expected {expect_recording!r}; the file was swapped or renamed")
        if len(data_key) != KEY_LEN or not hmac.compare_digest(
                key_check_value(data_key, self.header.recording_id), self.header.key_check):
            raise WrongKeyError(f"{where}: the data key does not belong to this recording "
                                f"(key check failed); wrong key store entry or wrong private key")
        self._aead = AESGCM(data_key)
        self._digest = self.header.digest
        self._sealed_size = self.header.chunk_size + TAG_LEN
        self._tags = hashlib.sha256(self._digest)
        self.plaintext_size = 0
        self.chunks = 0

    @property
    def tag_chain(self) -> str:
        """The tag chain over the chunks read so far (all of them once iteration ended)."""
        return self._tags.hexdigest()

    def __iter__(self) -> Iterator[bytes]:
        index = 0
        current = _read_full(self.stream, self._sealed_size)
        if len(current) < TAG_LEN:
            raise TruncatedError(f"{self.where}: no complete chunk after the header; the file is truncated")
        while True:
            following = _read_full(self.stream, self._sealed_size) if len(current) == self._sealed_size else b""
            final = not following
            try:
                plain = self._aead.decrypt(_nonce(index), current, _aad(self._digest, index, final))
            except InvalidTag:
                raise self._diagnose(index, current, final) from None
            self._tags.update(current[-TAG_LEN:])
            self.plaintext_size += len(plain)
            self.chunks = index + 1
            yield plain
            if final:
                return
            current = following
            index += 1
            if len(current) < TAG_LEN:
                raise TruncatedError(f"{self.where}: chunk {index} is cut short; the file is truncated")

    def _try(self, index: int, sealed: bytes, final: bool) -> bool:
        try:
            self._aead.decrypt(_nonce(index), sealed, _aad(self._digest, index, final))
            return True
        except InvalidTag:
            return False

    def _diagnose(self, index: int, sealed: bytes, final: bool) -> IntegrityError:
        """Say what happened to chunk ``index`` (only runs after a failure)."""
        where = self.where
        if self._try(index, sealed, not final):
            if final:
                return TruncatedError(f"{where}: chunk {index} is not the final chunk but the file ends "
                                      f"after it; the file was truncated")
            return ExtendedError(f"{where}: chunk {index} is the final chunk but data follows it; "
                                 f"something was appended to the file")
        for other in range(min(_DIAGNOSE_LIMIT, index + 64 + _DIAGNOSE_LIMIT // 2)):
            if other != index and (self._try(other, sealed, False) or self._try(other, sealed, True)):
                return ReorderedError(f"{where}: position {index} holds chunk {other}; "
                                      f"the chunks were reordered")
        if final and len(sealed) < self._sealed_size:
            return IntegrityError(f"{where}: the last chunk ({index}) failed authentication: the file "
                                  f"was truncated inside it or modified")
        return TamperedError(f"{where}: chunk {index} failed authentication; the ciphertext was "
                             f"modified or damaged")


def verify_stream(stream: BinaryIO, data_key: bytes, *, where: str = "file",
                  expect_recording: str | None = None, expect_size: int | None = None) -> ChunkReader:
    """Authenticate every chunk without keeping plaintext; returns the finished reader."""
    reader = ChunkReader(stream, data_key, where=where, expect_recording=expect_recording,
                         expect_size=expect_size)
    for _ in reader:
        pass
    return reader


#: write errors that mean "no room here" (full disk, file size limit, quota, read-only or failing disk)
_NO_ROOM = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EIO}


def decrypt_to_file(source: Path, target: Path, data_key: bytes, *,
                    expect_recording: str | None = None, expect_size: int | None = None,
                    expect_sha256: str | None = None,
                    on_chunk: Callable[[int], None] | None = None) -> ChunkReader:
    """Decrypt ``source`` to ``target``; ``target`` appears only if every chunk verified.

    Plaintext goes to ``target.part`` (mode 0600) and is renamed into place
    after the final chunk authenticated (and, with ``expect_sha256``, the
    plaintext hash matched the catalogue); on any failure the part file is
    removed, so no plaintext of a bad file is left on disk.
    """
    if target.exists():
        raise VaultError(f"{target}: already exists; choose another output path or remove it first")
    part = target.with_name(target.name + ".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    digest = hashlib.sha256() if expect_sha256 else None
    try:
        with open(source, "rb") as stream, os.fdopen(fd, "wb") as out:
            reader = ChunkReader(stream, data_key, where=str(source), expect_recording=expect_recording,
                                 expect_size=expect_size)
            for plain in reader:
                out.write(plain)
                if digest is not None:
                    digest.update(plain)
                if on_chunk is not None:
                    on_chunk(len(plain))
            out.flush()
            os.fsync(out.fileno())
        if digest is not None and digest.hexdigest() != expect_sha256:
            raise IntegrityError(f"{source}: decrypts to data whose SHA-256 differs from the one recorded at "
                                 f"ingest; the recording cannot be trusted")
        os.replace(part, target)
        return reader
    except BaseException as exc:
        part.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _NO_ROOM:  # full disk or quota while writing the copy
            raise VaultError(f"{target}: writing the decrypted copy failed ({exc.strerror or exc}). Nothing was "
                             f"lost: the partial file was removed and the recording in the vault is unchanged; "
                             f"free space there and export again") from exc
        raise


class DecryptingReader(io.RawIOBase):
    """A read-only file object over verified plaintext (for ``wave`` and audio scans).

    Each chunk is authenticated before any of its bytes are returned.  A
    truncated file raises :class:`TruncatedError` from ``read`` when the
    missing end is reached, so a consumer never mistakes a cut file for a
    complete one.
    """

    def __init__(self, stream: BinaryIO, data_key: bytes, *, where: str = "file",
                 expect_recording: str | None = None, expect_size: int | None = None) -> None:
        super().__init__()
        self._reader = ChunkReader(stream, data_key, where=where, expect_recording=expect_recording,
                                   expect_size=expect_size)
        self._chunks = iter(self._reader)
        self._buffer = memoryview(b"")

    @property
    def header(self) -> Header:
        return self._reader.header

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:  # type: ignore[override]
        while not self._buffer:
            try:
                self._buffer = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def scan_structure(stream: BinaryIO, *, where: str = "file") -> tuple[Header, int, str]:
    """Keyless structural check: header, chunk sizes and the tag chain.

    Reads only the header and each chunk's 16-byte tag (seeking over the
    bodies), so checking a whole vault is cheap.  Returns (header, chunk
    count, tag chain digest).  Comparing the digest with the one stored at
    ingest (in the hash-chained ledger) detects truncation, extension,
    reordered or substituted chunks and header edits without any key; a
    changed byte *inside* a chunk body needs the data key (or the full
    ciphertext SHA-256, also stored) to detect.
    """
    header = read_header(stream, where)
    size = stream.seek(0, os.SEEK_END)
    body = size - header.size
    sealed = header.chunk_size + TAG_LEN
    if body < TAG_LEN:
        raise TruncatedError(f"{where}: no complete chunk after the header; the file is truncated")
    full, rest = divmod(body, sealed)
    chunks = full + (1 if rest else 0)
    if rest and rest < TAG_LEN:
        raise TruncatedError(f"{where}: the last chunk is cut short ({rest} bytes); the file is truncated")
    tags = hashlib.sha256(header.digest)
    for index in range(chunks):
        end = header.size + min((index + 1) * sealed, body)
        stream.seek(end - TAG_LEN)
        tags.update(stream.read(TAG_LEN))
    return header, chunks, tags.hexdigest()


__all__ = [
    "ALGORITHM",
    "ChunkReader",
    "DEFAULT_CHUNK_SIZE",
    "DecryptingReader",
    "EncryptResult",
    "ExtendedError",
    "FormatError",
    "Header",
    "IntegrityError",
    "KEY_LEN",
    "ReorderedError",
    "TamperedError",
    "TruncatedError",
    "VaultError",
    "WrongKeyError",
    "build_header",
    "decrypt_to_file",
    "encrypt_stream",
    "key_check_value",
    "read_header",
    "scan_structure",
    "verify_stream",
]
