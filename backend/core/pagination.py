from rest_framework import pagination


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
