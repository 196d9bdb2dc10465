"""Prometheus ``/metrics``: what the operations team watches (prometheus_client).

Two kinds of figures:

* read at scrape time from the engine, the listener probe and the vault
  (active calls, decisions by outcome, PBX connection, ledger backlog,
  vault backlog, last retention sweep) by a custom collector, so nothing
  is counted twice and nothing runs on the call path;
* counted as they happen, from the engine's ledger entries (pauses and
  payments by source, PBX-confirmation latency histograms), by an engine
  observer that does one dict lookup per entry.

Each console has its own registry, so two listeners in one test process
never clash, and the default process/GC collectors are added to it.
"""

from __future__ import annotations

from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from callguard.core.commands import LedgerEntry
from callguard.runtime import Engine
from callguard.web.probe import ListenerProbe

#: PBX confirmation latencies: a mute must be confirmed within ~0.5 s; 20 ms is the API target.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_CONFIRMATIONS = {"recording-started": "start", "recording-muted": "mute", "recording-unmuted": "unmute"}


class ConsoleMetrics(Collector):
    def __init__(self, engine: Engine, probe: ListenerProbe, pbx: str,
                 last_sweep: Callable[[], float | None] = lambda: None):
        self.engine, self.probe, self.pbx, self.last_sweep = engine, probe, pbx, last_sweep
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.pauses = Counter("callguard_pause_requests", "Pause requests by source (hotkey, IVR, API, engine)",
                              ["source"], registry=self.registry)
        self.payments = Counter("callguard_payment_segments", "Payment segments started, by source", ["source"],
                                registry=self.registry)
        self.latency = Histogram("callguard_pbx_confirmation_seconds",
                                 "Request to PBX confirmation of a recording start, mute or unmute",
                                 ["change"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.failsafe = Counter("callguard_failsafe_stops", "Recordings stopped because the PBX did not confirm "
                                "or refused a change", registry=self.registry)
        self.registry.register(self)
        engine.observers.append(self.observe)

    def observe(self, entry: LedgerEntry) -> None:
        kind = entry.kind
        if kind == "pause-requested":
            self.pauses.labels(entry.data.get("source", "")).inc()
        elif kind == "payment-started":
            self.payments.labels(entry.data.get("source", "")).inc()
        elif kind in _CONFIRMATIONS:
            latency = entry.data.get("latency_s")
            if isinstance(latency, (int, float)):
                self.latency.labels(_CONFIRMATIONS[kind]).observe(latency)
        elif kind == "recording-stopped" and str(entry.data.get("reason", "")).endswith(("-not-confirmed", "-failed")):
            self.failsafe.inc()

    def collect(self) -> Iterator[Metric]:
        stats, probe = self.engine.stats, self.probe
        yield _gauge("callguard_active_calls", "Calls the engine is handling now", len(self.engine.sessions))
        calls = CounterMetricFamily("callguard_calls", "Calls offered to the engine since start")
        calls.add_metric([], stats.calls_started)
        yield calls
        decisions = CounterMetricFamily("callguard_decisions", "Final consent decisions by outcome", labels=["outcome"])
        for outcome, count in sorted(stats.by_outcome.items()):
            decisions.add_metric([outcome], count)
        yield decisions
        connected = GaugeMetricFamily("callguard_pbx_connected", "1 while logged in to the PBX", labels=["pbx"])
        connected.add_metric([self.pbx], 1 if probe.pbx_connected() else 0)
        yield connected
        reconnects = CounterMetricFamily("callguard_pbx_reconnects", "PBX logins after the first", labels=["pbx"])
        reconnects.add_metric([self.pbx], max(probe.connects() - 1, 0))
        yield reconnects
        yield _gauge("callguard_heartbeat_fresh", "1 while the dialplan heartbeat is fresh",
                     1 if probe.heartbeat_fresh() else 0)
        yield _gauge("callguard_ledger_backlog_entries", "Ledger entries queued and not yet committed "
                     "(the write lag, in entries)", probe.ledger_backlog())
        yield _gauge("callguard_ledger_healthy", "1 while the ledger database accepts writes",
                     1 if probe.ledger_healthy() else 0)
        yield _gauge("callguard_vault_backlog_recordings", "Recordings handed to the vault ingest and not done",
                     probe.vault_backlog())
        swept = self.last_sweep()
        if swept is not None:
            yield _gauge("callguard_retention_last_sweep_timestamp_seconds",
                         "When the last retention sweep finished (epoch seconds)", swept)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


__all__ = ["LATENCY_BUCKETS", "ConsoleMetrics"]
