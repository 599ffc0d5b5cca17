"""Registry of idempotent seeders run by `manage.py seed` (and `make run`). Each returns how many rows it
created or changed, so a second run reporting 0 everywhere shows idempotence."""

from collections.abc import Callable

SEEDERS: list[tuple[str, Callable[[], int]]] = []


def register_seeder(name: str):
    def decorator(func: Callable[[], int]) -> Callable[[], int]:
        if all(existing != name for existing, _ in SEEDERS):
            SEEDERS.append((name, func))
        return func

    return decorator
