"""The seeders `manage.py seed` (and `make run`, and the test fixtures) run, in this order: one explicit list,
not a registry filled by AppConfig.ready at import time. Each is idempotent and returns how many rows it
created or changed, so a second run reporting 0 everywhere shows idempotence; PRESENT says what is in place
afterwards ("11 methodologies, 11 active versions"), so a fresh database whose rows came from a data migration
does not read as "nothing happened". A new domain adds its seeder here. Imports are inside the functions: this
module is imported by the command before it knows which apps load."""

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


def _districts_present() -> str:
    from backend.accounts.models import District

    return f"{District.objects.count()} districts"


def _methodologies_present() -> str:
    from backend.methodologies.services import methodologies_present

    return methodologies_present()


def _points_policy_present() -> str:
    from backend.methodologies.services import points_policy_present

    return points_policy_present()


PRESENT: dict[str, Callable[[], str]] = {
    "districts": _districts_present,
    "methodologies": _methodologies_present,
    "points_policy": _points_policy_present,
}


def seed_line(name: str, changed: int) -> str:
    """One line of `manage.py seed` output: what changed and what is in place."""
    line = f"{name}: {changed} row(s) created or updated"
    if name in PRESENT:
        line += f"; in place: {PRESENT[name]()}"
    return line
