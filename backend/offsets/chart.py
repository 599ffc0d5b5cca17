"""A small inline SVG for the admin: the reward fund's balance beside outstanding payables and the fund's
deficit (refunds it could not cover), in fen."""

from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext


def yuan(fen: int) -> str:
    """Integer fen as yuan with thousands separators, by integer division (never through float)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole:,}.{cents:02d}"


def fund_chart_svg(balance: int, payables: int, deficit: int = 0) -> str:
    top = max(balance, payables, deficit, 1)
    bars = []
    rows = [(gettext("reward fund"), balance, "#2e7d32"), (gettext("payables"), payables, "#c62828")]
    if deficit:
        rows.append((gettext("fund deficit"), deficit, "#6a1b9a"))
    for i, (label, value, colour) in enumerate(rows):
        width = 300 * max(value, 0) // top  # pixels; a negative figure draws no bar
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
                yuan(value),
            )
        )
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" width="520" height="{}" role="img" aria-label="{}">{}</svg>',
        10 + 40 * len(rows),
        gettext("reward fund against payables"),
        mark_safe("".join(bars)),  # noqa: S308 - each bar was built by format_html
    )
