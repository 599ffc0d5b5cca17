"""gunicorn settings shared by `make up` and the production image. With PROMETHEUS_MULTIPROC_DIR set, each
worker writes its metrics to files there; a worker that exits must be marked dead so its live gauges stop
counting (its counters stay, as Prometheus expects)."""

import gc
import os

# Seconds an idle keep-alive connection stays open. gunicorn's default (2 s) is shorter than the pause between two
# requests of the app or of Locust's personas (up to 3 s): the server closed the connection just as the client sent
# its next request on it, which failed with "connection closed". Behind a load balancer it must also outlast the
# balancer's idle timeout (60 s for AWS ALB and a typical nginx upstream keepalive). An idle connection costs the
# gthread worker a socket in its selector, not a thread.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "75"))


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    # The application is loaded: its start-up objects leave the garbage collector's reach, so a full collection
    # triggered by a 1,000-action batch no longer traverses Django's whole heap (backend/celery.py does the same).
    gc.collect()
    gc.freeze()
