"""A small client for the running listener's API, for CLI commands (``callguard payment start``).

The CLI runs in another process than the listener; it reaches the engine
through the console API, authenticated by an API token, so a CLI request
takes the same path (and leaves the same ledger entries, with the token's
user) as the console's buttons.  URL and token come from ``[web] url`` (or
``host``/``port``) and the environment variable named by ``[web] token_env``.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, NoReturn

import httpx

from callguard.web.settings import WebConfig

#: Control requests wait for the PBX's confirmation (the engine gives up after its own limit).
DEFAULT_TIMEOUT_S = 10.0


class ApiError(RuntimeError):
    """The API refused or could not be reached; the message says why and what to do."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ConsoleClient:
    """``with ConsoleClient.from_config(config.web) as api: api.pause("current")``."""

    def __init__(self, base_url: str, token: str, *, timeout: float = DEFAULT_TIMEOUT_S,
                 transport: httpx.BaseTransport | None = None):
        if not token:
            raise ApiError("no API token: create one with `callguard console token create YOUR-NAME` and put it in "
                           "the environment variable named by [web] token_env (CALLGUARD_API_TOKEN by default)")
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport,
                                  headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})

    @classmethod
    def from_config(cls, web: WebConfig, token: str | None = None, **options: Any) -> "ConsoleClient":
        return cls(web.api_url(), token if token is not None else os.environ.get(web.token_env, ""), **options)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "ConsoleClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the API ---------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call; its JSON body, or :class:`ApiError` with the server's explanation."""
        try:
            response = self._http.request(method, f"/api/v1{path}", **kwargs)
        except httpx.TimeoutException:
            raise ApiError(f"the listener at {self.base_url} did not answer in time; is it overloaded?") from None
        except httpx.TransportError as exc:
            raise ApiError(f"cannot reach the listener's API at {self.base_url} ({exc}); is `callguard run` "
                           f"running with [web] enabled = true, and [web] url right?") from None
        if response.is_success:
            return response.json()
        self._raise(response, method, path)

    @staticmethod
    def _raise(response: httpx.Response, method: str, path: str) -> NoReturn:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ApiError(f"{method} {path}: {response.status_code} {detail}", response.status_code)

    def me(self) -> dict[str, Any]:
        return self.request("GET", "/me")

    def calls(self) -> list[dict[str, Any]]:
        return self.request("GET", "/calls")["calls"]

    def call(self, call_id: str = "current") -> dict[str, Any]:
        return self.request("GET", f"/calls/{_seg(call_id)}")

    def pause(self, call_id: str = "current") -> dict[str, Any]:
        return self.request("POST", f"/calls/{_seg(call_id)}/pause")

    def resume(self, call_id: str = "current") -> dict[str, Any]:
        return self.request("POST", f"/calls/{_seg(call_id)}/resume")

    def start_payment(self, call_id: str = "current") -> dict[str, Any]:
        return self.request("POST", f"/calls/{_seg(call_id)}/payment/start")

    def cancel_payment(self, call_id: str = "current") -> dict[str, Any]:
        return self.request("POST", f"/calls/{_seg(call_id)}/payment/cancel")

    # -- card payments the agent never hears ---------------------------------------------

    def start_card_payment(self, call_id: str = "current", amount: str | None = None,
                           currency: str = "") -> dict[str, Any]:
        return self.request("POST", f"/calls/{_seg(call_id)}/card-payment",
                            json={"amount": amount, "currency": currency})

    def cancel_card_payment(self, call_id: str = "current") -> dict[str, Any]:
        return self.request("POST", f"/calls/{_seg(call_id)}/card-payment/cancel")

    def card_payment(self, call_id: str = "current") -> dict[str, Any]:
        return self.request("GET", f"/calls/{_seg(call_id)}/card-payment")

    def watch_card_payments(self, call_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Masked progress as the listener publishes it (Server-Sent Events), until the stream ends."""
        from httpx_sse import SSEError, connect_sse

        params = {"call": call_id} if call_id else {}
        try:
            with connect_sse(self._http, "GET", "/api/v1/card-payments/events", params=params,
                             timeout=httpx.Timeout(10.0, read=None)) as source:
                if not source.response.is_success:
                    source.response.read()
                    self._raise(source.response, "GET", "/card-payments/events")
                for event in source.iter_sse():
                    if event.event == "progress":
                        yield event.json()
                    elif event.event == "resync":
                        raise ApiError("the watch fell behind the listener; run it again")
        except SSEError as exc:
            raise ApiError(f"the listener's event stream is not usable: {exc}") from None
        except httpx.TransportError as exc:
            raise ApiError(f"lost the listener's API at {self.base_url} ({exc})") from None


def _seg(call_id: str) -> str:
    from urllib.parse import quote

    return quote(call_id, safe="")


__all__ = ["ApiError", "ConsoleClient"]
