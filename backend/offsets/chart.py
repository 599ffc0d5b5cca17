"""A small inline SVG for the admin: the reward fund's balance beside outstanding payables and the fund's
deficit (refunds it could not cover), in fen."""

from django.utils.html import format_html
from django.utils.safestring import mark_safe


def fund_chart_svg(balance: int, payables: int, deficit: int = 0) -> str:
    top = max(balance, payables, deficit, 1)
    bars = []
    rows = [("reward fund", balance, "#2e7d32"), ("payables", payables, "#c62828")]
    if deficit:
        rows.append(("fund deficit", deficit, "#6a1b9a"))
    for i, (label, value, colour) in enumerate(rows):
        width = int(300 * value / top)
        y = 10 + i * 40
        bars.append(
            format_html(
                '<rect x="110" y="{}" width="{}" height="26" fill="{}"/>'
                '<text x="0" y="{}" font-size="13">{}</text><text x="{}" y="{}" font-size="13">¥{}</text>',
                y,
                width,
                colour,
                y + 18,
                label,
                116 + width,
                y + 18,
                f"{value / 100:,.2f}",
            )
        )
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" width="520" height="{}" role="img" '
        'aria-label="reward fund against payables">{}</svg>',
        10 + 40 * len(rows),
        mark_safe("".join(bars)),  # noqa: S308 - each bar was built by format_html
    )
