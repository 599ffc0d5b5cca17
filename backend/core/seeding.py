"""The seeders `manage.py seed` (and `make run`, and the test fixtures) run, in this order: one explicit list,
not a registry filled by AppConfig.ready at import time. Each is idempotent and returns how many rows it
created or changed, so a second run reporting 0 everywhere shows idempotence. A new domain adds its seeder here.
Imports are inside the functions: this module is imported by the command before it knows which apps load."""

from collections.abc import Callable


def _districts() -> int:
    from backend.accounts.models import District
    from backend.accounts.reference import districts_upsert

    return districts_upsert(District)


def _methodologies() -> int:
    from backend.methodologies.services import methodologies_seed

    return methodologies_seed()


def _points_policy() -> int:
    from backend.methodologies.services import points_policy_seed

    return points_policy_seed()


SEEDERS: list[tuple[str, Callable[[], int]]] = [
    ("districts", _districts),
    ("methodologies", _methodologies),
    ("points_policy", _points_policy),
]
