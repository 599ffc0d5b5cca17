from rest_framework import pagination
from rest_framework.exceptions import NotFound


class CursorPagination(pagination.CursorPagination):
    """Cursor pagination for every list: stable under inserts, no COUNT(*) over big tables."""

    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100
    ordering = "-id"


def cursor_pagination(*ordering: str) -> type[CursorPagination]:
    """The one pagination rule with a list's own stable ordering (a unique, unchanging field last)."""
    name = "CursorPagination_" + "_".join(o.lstrip("-") for o in ordering)
    return type(name, (CursorPagination,), {"ordering": ordering if len(ordering) > 1 else ordering[0]})


def paginated_response(view, queryset, serializer_class, **serializer_kwargs):
    """One cursor page of `queryset` for an APIView whose `pagination_class` is set: {next, previous, results}."""
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, view.request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True, **serializer_kwargs).data)


BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1


class KeysetRows:
    """A hot list's rows for DRF's CursorPagination without a queryset: the paginator calls `order_by` (the
    ordering or its reverse), `filter(<field>__lt|__gt=position)` when the cursor has a position, and takes one
    slice `[offset:offset + page_size + 1]`; the slice runs `fetch(descending=, bound=, offset=, limit=)`, one
    statement returning rows already written out as the API's dicts (the ordering field among their keys, from
    which the paginator takes the next cursor's position). So cursors, links and the page are exactly DRF's,
    without building an ORM query or a model per row. Only a single integer field ordering, descending by
    default (`-id`). Without a position the bound is the end of bigint's range: one statement text per direction,
    prepared once per connection."""

    def __init__(self, fetch, *, field: str = "id"):
        self.fetch = fetch
        self.field = field
        self.descending = True
        self.bound: int | None = None

    def order_by(self, *ordering: str) -> "KeysetRows":
        if ordering not in ((f"-{self.field}",), (self.field,)):
            raise ValueError(f"KeysetRows orders by {self.field} only, not {ordering}")
        self.descending = ordering[0].startswith("-")
        return self

    def filter(self, **position) -> "KeysetRows":
        ((lookup, value),) = position.items()
        if lookup != (f"{self.field}__lt" if self.descending else f"{self.field}__gt"):
            raise ValueError(f"KeysetRows cannot filter {lookup} ordered {'down' if self.descending else 'up'}")
        try:
            self.bound = int(value)
        except (TypeError, ValueError):
            self.bound = None
        if self.bound is None or not BIGINT_MIN <= self.bound <= BIGINT_MAX:
            # A forged cursor's position: the ORM would have failed converting it (a 500).
            raise NotFound(CursorPagination.invalid_cursor_message)
        return self

    def __getitem__(self, window: slice) -> list[dict]:
        if not isinstance(window, slice) or window.step is not None:
            raise TypeError("KeysetRows takes one slice [offset:offset + limit]")
        offset = window.start or 0
        bound = self.bound
        if bound is None:
            bound = BIGINT_MAX if self.descending else BIGINT_MIN
        return self.fetch(descending=self.descending, bound=bound, offset=offset, limit=window.stop - offset)
