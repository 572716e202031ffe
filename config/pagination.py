from rest_framework.pagination import CursorPagination as BaseCursorPagination


class CursorPagination(BaseCursorPagination):
    """Keyset pagination: the cost of a page does not grow with its depth, and no COUNT(*) is run."""

    ordering = "-created_at"
    page_size_query_param = "page_size"
    max_page_size = 200
