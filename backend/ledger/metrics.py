"""Prometheus metrics of the ledger (exported at /metrics by django-prometheus)."""

from prometheus_client import Gauge

LEDGER_DRIFT = Gauge("ledger_balance_drift_accounts", "Floored accounts whose cached balance differs from postings")
