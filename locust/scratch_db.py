"""A throwaway PostgreSQL database for the in-process benchmarks (bench_ledger.py, bench_stats.py): created
fresh beside the database of DATABASE_URL as `<db>_bench`, pointed at by DATABASE_URL while the benchmark runs,
and dropped afterwards whatever happens. The real database is never written."""

import contextlib
import os


@contextlib.contextmanager
def scratch_database(url: str, suffix: str = "_bench"):
    """Create `<db><suffix>` on the cluster of `url`, set DATABASE_URL (and DJANGO_SETTINGS_MODULE) to it for the
    duration, close Django's connections and drop it on the way out. Yields the scratch URL."""
    import psycopg

    base, _, name = url.rpartition("/")
    scratch = f"{name}{suffix}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
        conn.execute(f'CREATE DATABASE "{scratch}"')
    os.environ["DATABASE_URL"] = f"{base}/{scratch}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
    try:
        yield os.environ["DATABASE_URL"]
    finally:
        with contextlib.suppress(Exception):  # Django may not have been set up when the benchmark failed early
            from django.db import connections

            connections.close_all()
        os.environ["DATABASE_URL"] = url
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
