"""Server-rendered SVG charts for the admin: no JavaScript, no external assets, escaped labels.

`diverging_bars` draws one horizontal bar per row around a zero line (gains to the right in green, losses to
the left in red), scaled to the largest absolute value, with the value printed beside each bar."""

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

ROW_HEIGHT = 22
LABEL_WIDTH = 170
BAR_WIDTH = 460
VALUE_WIDTH = 110


def _fmt(value: int) -> str:
    return f"{value:+,}" if value else "0"


def diverging_bars(rows: list[tuple[str, int]], *, title: str, unit: str) -> SafeString:
    """rows: [(label, signed integer)], drawn in the given order. Returns an inline <svg> (safe HTML)."""
    if not rows:
        return format_html('<p class="help">{}: no data.</p>', title)
    largest = max(abs(value) for _, value in rows) or 1
    half = BAR_WIDTH // 2
    zero_x = LABEL_WIDTH + half
    width = LABEL_WIDTH + BAR_WIDTH + VALUE_WIDTH
    height = 28 + ROW_HEIGHT * len(rows) + 6
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="impact-chart" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)} ({escape(unit)})</title>",
        f'<text x="0" y="16" font-weight="bold">{escape(title)} ({escape(unit)})</text>',
        f'<line x1="{zero_x}" y1="22" x2="{zero_x}" y2="{height - 4}" stroke="#888" />',
    ]
    for index, (label, value) in enumerate(rows):
        y = 26 + index * ROW_HEIGHT
        length = round(half * abs(value) / largest)
        x = zero_x if value >= 0 else zero_x - length
        colour = "#2e7d32" if value >= 0 else "#c62828"
        text_x = zero_x + length + 4 if value >= 0 else zero_x + 4
        parts.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 14}" text-anchor="end">{escape(str(label)[:28])}</text>'
            f'<rect x="{x}" y="{y + 3}" width="{max(length, 1)}" height="{ROW_HEIGHT - 6}" fill="{colour}">'
            f"<title>{escape(str(label))}: {_fmt(value)} {escape(unit)}</title></rect>"
            f'<text x="{max(text_x, zero_x + 4)}" y="{y + 14}" fill="#333">{_fmt(value)}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every label and title above went through escape()
