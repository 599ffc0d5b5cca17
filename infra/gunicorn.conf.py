"""gunicorn settings shared by `make up` and the production image. With PROMETHEUS_MULTIPROC_DIR set, each
worker writes its metrics to files there; a worker that exits must be marked dead so its live gauges stop
counting (its counters stay, as Prometheus expects)."""

import os


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
