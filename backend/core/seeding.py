"""Registry of idempotent seeders run by `manage.py seed` (and `make run`). Each returns how many rows it
created or changed, so a second run reporting 0 everywhere shows idempotence; its optional `present` callable
says what is in place afterwards ("11 methodologies, 11 active versions"), so a fresh database whose rows came
from a data migration does not read as "nothing happened"."""

from collections.abc import Callable

SEEDERS: list[tuple[str, Callable[[], int]]] = []
PRESENT: dict[str, Callable[[], str]] = {}


def register_seeder(name: str, *, present: Callable[[], str] | None = None):
    def decorator(func: Callable[[], int]) -> Callable[[], int]:
        if all(existing != name for existing, _ in SEEDERS):
            SEEDERS.append((name, func))
        if present is not None:
            PRESENT[name] = present
        return func

    return decorator


def seed_line(name: str, changed: int) -> str:
    """One line of `manage.py seed` output: what changed and what is in place."""
    line = f"{name}: {changed} row(s) created or updated"
    if name in PRESENT:
        line += f"; in place: {PRESENT[name]()}"
    return line
