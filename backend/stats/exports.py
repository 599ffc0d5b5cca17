"""Streamed CSV and XLSX exports of the reviewers' daily statistics: rows leave as they are read (a server-side
cursor), never a whole file in memory (openpyxl's write-only workbook streams rows to a temporary file)."""

import csv
import tempfile
from collections.abc import Iterator

from django.http import StreamingHttpResponse

COLUMNS = [
    "day",
    "district",
    "methodology",
    "source",
    "active_residents",
    "new_residents",
    "actions",
    "grams",
    "points_issued",
    "points_redeemed",
    "quantity",
]
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def export_rows(queryset) -> Iterator[list]:
    for row in queryset.values_list(*COLUMNS).iterator(chunk_size=2000):
        yield [row[0].isoformat(), *row[1:10], str(row[10])]


class _Echo:
    def write(self, value):
        return value


def csv_response(queryset, filename: str) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def lines():
        yield "\ufeff"  # a BOM: Excel opens UTF-8 CSV with Chinese text correctly
        yield writer.writerow(COLUMNS)
        for row in export_rows(queryset):
            yield writer.writerow(row)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
    return response


def xlsx_response(queryset, filename: str) -> StreamingHttpResponse:
    from openpyxl import Workbook

    def chunks():
        # Write-only mode keeps one row in memory at a time; the zip is assembled in a temporary file and then
        # streamed out in 64 KB pieces.
        with tempfile.TemporaryFile() as tmp:
            wb = Workbook(write_only=True)
            ws = wb.create_sheet("daily statistics")
            ws.append(COLUMNS)
            for row in export_rows(queryset):
                ws.append(row)
            wb.save(tmp)
            tmp.seek(0)
            while piece := tmp.read(65536):
                yield piece

    response = StreamingHttpResponse(chunks(), content_type=XLSX_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{filename}.xlsx"'
    return response
