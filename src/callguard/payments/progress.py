"""Masked payment progress for the agent's screens: the latest view per payment, and subscribers.

The capture session publishes a :class:`~callguard.payments.capture.Progress`
on every change; the hub keeps the latest one per payment (a watcher that
connects late sees the current state at once) and pushes each to every
subscriber's queue.  Subscribers are plain callables so the same hub feeds
an asyncio queue (the CLI's watch stream, the web console) or a list in a
test.  Progress holds counts, brand and states - never a digit - so a
subscriber cannot leak what it never receives.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Callable

from callguard.payments.capture import Progress

log = logging.getLogger("callguard.payments")

Subscriber = Callable[[Progress], None]

#: Finished payments whose last view stays available to late watchers.
KEEP_FINISHED = 256


class ProgressHub:
    def __init__(self) -> None:
        self._latest: OrderedDict[str, Progress] = OrderedDict()
        self._subscribers: list[Subscriber] = []

    def publish(self, progress: Progress) -> None:
        self._latest[progress.payment_id] = progress
        self._latest.move_to_end(progress.payment_id)
        while len(self._latest) > KEEP_FINISHED and self._evict():
            pass
        for subscriber in list(self._subscribers):
            try:
                subscriber(progress)
            except Exception:  # one broken screen must not stop a payment
                log.exception("payment progress subscriber failed; unsubscribing it")
                self.unsubscribe(subscriber)

    def _evict(self) -> bool:
        for key, view in self._latest.items():
            if view.phase == "ended":
                del self._latest[key]
                return True
        return False

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add ``subscriber``; returns the function that removes it."""
        self._subscribers.append(subscriber)
        return lambda: self.unsubscribe(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

    def latest(self, call_or_payment: str | None = None) -> list[Progress]:
        """The latest view of every payment, or of one payment / one call's payments."""
        views = list(self._latest.values())
        if call_or_payment is None:
            return views
        return [v for v in views if call_or_payment in (v.payment_id, v.call_id)]


__all__ = ["ProgressHub", "Subscriber"]
