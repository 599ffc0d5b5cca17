"""A small inline SVG for the admin: the reward fund's balance beside outstanding payables (fen)."""

from django.utils.html import format_html
from django.utils.safestring import mark_safe


def fund_chart_svg(balance: int, payables: int) -> str:
    top = max(balance, payables, 1)
    bars = []
    for i, (label, value, colour) in enumerate(
        (("reward fund", balance, "#2e7d32"), ("payables", payables, "#c62828"))
    ):
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
        '<svg xmlns="http://www.w3.org/2000/svg" width="520" height="90" role="img" '
        'aria-label="reward fund against payables">{}</svg>',
        mark_safe("".join(bars)),  # noqa: S308 - each bar was built by format_html
    )
