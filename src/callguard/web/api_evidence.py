"""``/api/v1`` evidence: ledger timelines and verification, recordings, holds, DSARs, the audit.

Every route is a thin layer over the same vault and ledger functions the
CLI uses (:mod:`callguard.vault.recordings`, ``.holds``, ``.dsar``,
``.audit``, :mod:`callguard.ledger.verify`), so each access is authorized
by the vault's RBAC and written to its access log exactly as from the CLI,
with ``authenticated_by: web``.  They are plain ``def`` routes: FastAPI
runs them on worker threads, never on the event loop the engine needs.

Listening streams the verified plaintext while the vault decrypts it (a
worker thread writes into a bounded queue the response drains), so a long
recording is never held in memory and never written to disk.
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from fastapi import APIRouter, Body, Depends, HTTPException, Query, status
from fastapi.responses import FileResponse, StreamingResponse
from starlette.background import BackgroundTask

from callguard.vault.envelope import VaultError
from callguard.vault.permissions import MIN_REASON_LEN
from callguard.vault.service import AccessDenied
from callguard.web.auth import Principal
from callguard.web.context import Console

_DONE = object()
#: chunks buffered between the decrypting thread and the HTTP response
_STREAM_DEPTH = 8


def vault_call(work: Callable[[], Any]) -> Any:
    """Run a vault operation, turning its refusals into HTTP errors a client can act on."""
    try:
        return work()
    except AccessDenied as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    except VaultError as exc:
        message = str(exc)
        code = status.HTTP_404_NOT_FOUND if message.startswith("no ") else status.HTTP_400_BAD_REQUEST
        raise HTTPException(code, message) from None


def check_reason(reason: str) -> str:
    """Refuse a missing reason before anything is decrypted (the vault logs the attempt too)."""
    if len((reason or "").strip()) < MIN_REASON_LEN:
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            f"say why you need this: a reason of at least {MIN_REASON_LEN} characters "
                            f"(e.g. 'complaint #4411 review'); it goes into the access log")
    return reason.strip()


class _QueueSink:
    """A file-like sink the vault writes plaintext into, read by the HTTP response."""

    def __init__(self) -> None:
        self.chunks: queue.Queue[Any] = queue.Queue(_STREAM_DEPTH)

    def write(self, data: bytes) -> int:
        self.chunks.put(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


def stream_recording(console: Console, user: str, recording_id: str, reason: str) -> Iterator[bytes]:
    """Authorize, log and decrypt on a worker thread; yields the plaintext as it is verified.

    The first item is awaited before the response starts, so a refusal or a
    tampered file becomes an HTTP error, not a 200 with a broken body.
    """
    from callguard.vault import recordings

    sink = _QueueSink()

    def work() -> None:
        try:
            recordings.listen(console.vault(), user, recording_id, reason, sink)  # type: ignore[arg-type]
        except BaseException as exc:  # handed to the reader
            sink.chunks.put(exc)
        else:
            sink.chunks.put(_DONE)

    threading.Thread(target=work, name=f"callguard-listen-{recording_id}", daemon=True).start()
    first = sink.chunks.get()
    if isinstance(first, BaseException):
        vault_call(lambda: (_ for _ in ()).throw(first))

    def rest() -> Iterator[bytes]:
        item = first
        while item is not _DONE:
            if isinstance(item, BaseException):
                raise item  # mid-stream failure: the connection is cut, the vault logged it
            yield item
            item = sink.chunks.get()

    return rest()


def dsar_zip(console: Console, user: str, request_id: int, reason: str) -> FileResponse:
    """Export a request's bundle (authorized and logged by the vault) and send it as a zip, then delete it."""
    from callguard.vault import dsar

    tmp = Path(tempfile.mkdtemp(prefix="callguard-dsar-"))
    try:
        bundle = vault_call(lambda: dsar.export_bundle(console.vault(), user, request_id, tmp, reason))
        archive = shutil.make_archive(str(tmp / bundle.name), "zip", root_dir=tmp, base_dir=bundle.name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FileResponse(archive, media_type="application/zip", filename=Path(archive).name,
                        headers={"Cache-Control": "no-store"},
                        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))


def evidence_router(console: Console, require: Callable[..., Any]) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["evidence"])
    from callguard.ledger.queries import timeline
    from callguard.ledger.verify import verify
    from callguard.vault import audit, dsar, holds, recordings

    def vault():  # type: ignore[no-untyped-def]
        return console.vault()

    # -- ledger -------------------------------------------------------------------------

    @router.get("/ledger/calls/{call_id}", summary="A call's evidence timeline from the ledger")
    def ledger_call(call_id: str, principal: Principal = Depends(require("evidence"))) -> dict[str, Any]:
        rows = timeline(vault().engine, call_id)
        if not rows:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no ledger entries for call {call_id!r}")
        return {"call_id": call_id, "entries": [r.as_export() for r in rows]}

    @router.get("/ledger/verify", summary="Walk every hash chain and report what does not check out")
    def ledger_verify(principal: Principal = Depends(require("evidence", "audit"))) -> dict[str, Any]:
        report = verify(vault().engine)
        return {"ok": report.ok, "chains": [{"chain_id": c.chain_id, "entries": c.entries, "ok": c.ok}
                                            for c in report.chains],
                "problems": [str(p) for p in report.problems]}

    # -- recordings ---------------------------------------------------------------------

    @router.get("/recordings", summary="The recordings catalogue (metadata only)")
    def list_recordings(call_id: str | None = None, number: str | None = None, purpose: str | None = None,
                        limit: int = Query(200, ge=1, le=1000),
                        principal: Principal = Depends(require("list"))) -> dict[str, Any]:
        views = vault_call(lambda: recordings.list_recordings(vault(), principal.name, call_id=call_id,
                                                              number=number, purpose=purpose, limit=limit))
        return {"recordings": [v.as_dict() for v in views]}

    @router.get("/recordings/{recording_id}", summary="One recording's metadata, holds and deletion record")
    def show_recording(recording_id: str, principal: Principal = Depends(require("list"))) -> dict[str, Any]:
        detail = vault_call(lambda: recordings.show(vault(), principal.name, recording_id))
        return {"recording": detail.recording.as_dict(), "holds": [h.__dict__ for h in detail.holds],
                "deletion": detail.deletion, "dtmf": detail.dtmf}

    @router.get("/recordings/{recording_id}/audio", summary="Listen: the decrypted audio, streamed; needs a reason",
                response_class=StreamingResponse)
    def listen(recording_id: str, reason: str = Query("", description="why you listen (logged)"),
               principal: Principal = Depends(require("listen"))) -> StreamingResponse:
        body = stream_recording(console, principal.name, recording_id, check_reason(reason))
        return StreamingResponse(body, media_type="audio/wav", headers={"Cache-Control": "no-store"})

    @router.post("/recordings/{recording_id}/export", summary="Download a decrypted copy; needs a reason",
                 response_class=FileResponse)
    def download(recording_id: str, reason: str = Body(..., embed=True),
                 principal: Principal = Depends(require("export"))) -> FileResponse:
        reason = check_reason(reason)
        tmp = Path(tempfile.mkdtemp(prefix="callguard-export-"))
        out = tmp / f"{recording_id}.wav"
        try:
            vault_call(lambda: recordings.export(vault(), principal.name, recording_id, reason, out))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return FileResponse(out, media_type="audio/wav", filename=out.name, headers={"Cache-Control": "no-store"},
                            background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))

    # -- legal holds --------------------------------------------------------------------

    @router.get("/holds", summary="Legal holds (active, or all)")
    def list_holds(include_released: bool = False, principal: Principal = Depends(require("list"))) -> dict[str, Any]:
        views = vault_call(lambda: holds.list_holds(vault(), principal.name, include_released=include_released))
        return {"holds": [h.__dict__ for h in views]}

    @router.post("/holds", summary="Place a legal hold on a call or a recording", status_code=201)
    def place_hold(reason: str = Body(...), call_id: str | None = Body(None), recording_id: str | None = Body(None),
                   case_ref: str | None = Body(None), principal: Principal = Depends(require("hold"))) -> dict[str, Any]:
        view = vault_call(lambda: holds.place(vault(), principal.name, check_reason(reason), call_id=call_id,
                                              recording_id=recording_id, case_ref=case_ref))
        return view.__dict__

    @router.post("/holds/{hold_id}/release", summary="Release a legal hold")
    def release_hold(hold_id: int, reason: str = Body(..., embed=True),
                     principal: Principal = Depends(require("hold"))) -> dict[str, Any]:
        return vault_call(lambda: holds.release(vault(), principal.name, hold_id, check_reason(reason))).__dict__

    # -- data-subject requests ----------------------------------------------------------

    @router.get("/dsar", summary="Data-subject requests with their due dates")
    def list_dsar(open_only: bool = False, overdue: bool = False,
                  principal: Principal = Depends(require("dsar"))) -> dict[str, Any]:
        views = vault_call(lambda: dsar.list_requests(vault(), principal.name, overdue=overdue, open_only=open_only))
        return {"requests": [v.__dict__ for v in views]}

    @router.post("/dsar", summary="Open a request for a phone number (the 30-day clock starts)", status_code=201)
    def open_dsar(number: str = Body(...), kind: str = Body("access"), reason: str = Body(...),
                  note: str = Body(""), principal: Principal = Depends(require("dsar"))) -> dict[str, Any]:
        return vault_call(lambda: dsar.open_request(vault(), principal.name, number, kind=kind,
                                                    reason=check_reason(reason), note=note)).__dict__

    @router.post("/dsar/{request_id}/export", summary="The subject's bundle (recordings, timelines, access "
                 "history) as a zip", response_class=FileResponse)
    def export_dsar(request_id: int, reason: str = Body(..., embed=True),
                    principal: Principal = Depends(require("dsar"))) -> FileResponse:
        return dsar_zip(console, principal.name, request_id, check_reason(reason))

    @router.post("/dsar/{request_id}/erase", summary="Erase what may be erased; says what was kept and why")
    def erase_dsar(request_id: int, reason: str = Body(..., embed=True),
                   principal: Principal = Depends(require("dsar"))) -> dict[str, Any]:
        return vault_call(lambda: dsar.erase(vault(), principal.name, request_id, check_reason(reason)))

    # -- the audit ------------------------------------------------------------------------

    @router.get("/audit", summary="The monthly audit report (checks, findings, statistics)")
    def audit_report(month: str = Query(..., pattern=r"^\d{4}-\d{2}$", description="YYYY-MM"),
                     principal: Principal = Depends(require("audit"))) -> dict[str, Any]:
        return vault_call(lambda: audit.run_audit(vault(), principal.name, month)).as_dict()

    return router


__all__ = ["check_reason", "dsar_zip", "evidence_router", "stream_recording", "vault_call"]
