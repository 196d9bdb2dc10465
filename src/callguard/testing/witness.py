"""A C2SP tlog-witness on a real HTTPS port, for tests and trials of checkpoint witnessing.

``FakeWitness`` implements ``POST /add-checkpoint`` as the spec says: it
checks the log's signature with the verifier keys it trusts (403
otherwise; 404 for an unknown origin), that ``old`` equals the size it last
cosigned (409 with ``text/x.tlog.size`` otherwise), and the consistency
proof from there (422 when it does not verify: a rewritten history), then
stores the checkpoint and answers with an Ed25519 cosignature/v1 line.
It runs in a thread, like aiosmtpd's ``Controller``; :func:`self_signed`
makes a throwaway CA and server certificate for ``127.0.0.1``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import ipaddress
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from callguard.evidence import merkle
from callguard.evidence.note import Checkpoint, NoteError, Verifier, cosignature_line, open_note


def self_signed(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) PEM files for ``host``, valid for a day."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "callguard test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]
                                                       if host[0].isdigit() else [x509.DNSName(host)]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = (directory / "ca.pem", directory / "server.pem", directory / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class FakeWitness:
    """A witness trusting ``logs`` (origin -> verifier key), served over HTTPS on 127.0.0.1."""

    def __init__(self, logs: dict[str, Verifier], cert: Path, key: Path, name: str = "witness.test/w1") -> None:
        self.logs = logs
        self.name = name
        self.key = Ed25519PrivateKey.generate()
        self.latest: dict[str, Checkpoint] = {}  #: origin -> last cosigned checkpoint
        self.requests: list[tuple[int, str]] = []  #: (status, origin) of every add-checkpoint
        self._lock = threading.Lock()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-witness", daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeWitness:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_checkpoint(self, body: str) -> tuple[int, str, str]:
        """(status, content type, body) for one request body."""
        head, sep, note = body.partition("\n\n")
        lines = head.split("\n")
        if not sep or not lines[0].startswith("old "):
            return 400, "text/plain", "malformed request\n"
        try:
            old = int(lines[0][4:])
            proof = [base64.b64decode(line, validate=True) for line in lines[1:]]
            origin = note.split("\n", 1)[0]
            verifier = self.logs.get(origin)
            if verifier is None:
                return 404, "text/plain", f"unknown log {origin}\n"
            try:
                text = open_note(note, verifier)
            except NoteError as exc:
                return 403, "text/plain", f"{exc}\n"
            checkpoint = Checkpoint.parse(text)
        except (ValueError, binascii.Error, NoteError) as exc:
            return 400, "text/plain", f"{exc}\n"
        with self._lock:
            known = self.latest.get(origin)
            known_size = known.size if known else 0
            if old > checkpoint.size:
                return 400, "text/plain", "old size is larger than the checkpoint\n"
            if old != known_size:
                return 409, "text/x.tlog.size", f"{known_size}\n"
            if known is not None and known.size == checkpoint.size and known.root_hash != checkpoint.root_hash:
                return 409, "text/x.tlog.size", f"{known_size}\n"
            if known is not None and known.size < checkpoint.size:
                try:
                    merkle.verify_consistency(known.size, checkpoint.size, known.root_hash, checkpoint.root_hash,
                                              proof)
                except merkle.ProofError as exc:
                    return 422, "text/plain", f"{exc}\n"
            self.latest[origin] = checkpoint
        return 200, "text/plain", cosignature_line(text, self.name, self.key, int(time.time()))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        witness = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace")
                if self.path != "/add-checkpoint":
                    status, kind, answer = 404, "text/plain", "no such endpoint\n"
                else:
                    status, kind, answer = witness.add_checkpoint(body)
                witness.requests.append((status, body.partition("\n\n")[2].split("\n", 1)[0]))
                data = answer.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


__all__ = ["FakeWitness", "self_signed"]
