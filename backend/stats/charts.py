"""Server-side SVG charts for the admin dashboard: no JavaScript, no CDN (the admin runs inside a government
network). Small on purpose: a line chart and a bar chart, values as integers, text escaped."""

from html import escape

PALETTE = [
    "#1b7f5b",
    "#2f6db5",
    "#d9822b",
    "#8e44ad",
    "#c0392b",
    "#16a085",
    "#7f8c8d",
    "#b7950b",
    "#34495e",
    "#e84393",
    "#00838f",
    "#6d4c41",
]
W, H, PAD_L, PAD_R, PAD_T, PAD_B = 900, 300, 70, 160, 20, 40


def _fmt(value: int) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 1_000:
        return f"{value / 1_000:.1f}k"
    return str(value)


def _frame(title: str, body: list[str], top: int) -> str:
    grid = []
    for i in range(5):
        y = PAD_T + (H - PAD_T - PAD_B) * i / 4
        value = top * (4 - i) // 4
        grid.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        grid.append(f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{_fmt(value)}</text>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="100%" role="img"'
        f' aria-label="{escape(title)}"><title>{escape(title)}</title>{"".join(grid)}{"".join(body)}</svg>'
    )


def line_chart(title: str, labels: list[str], series: dict[str, list[int]]) -> str:
    """One polyline per series over shared x labels (e.g. 365 days)."""
    top = max([max(v, default=0) for v in series.values()] + [1])
    n = max(len(labels) - 1, 1)
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    body = []
    for i, (name, values) in enumerate(sorted(series.items())):
        colour = PALETTE[i % len(PALETTE)]
        points = " ".join(
            f"{PAD_L + plot_w * x / n:.1f},{PAD_T + plot_h * (1 - v / top):.1f}" for x, v in enumerate(values)
        )
        body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>')
        y = PAD_T + 14 * i + 8
        body.append(f'<rect x="{W - PAD_R + 10}" y="{y - 8}" width="10" height="10" fill="{colour}"/>')
        body.append(f'<text x="{W - PAD_R + 24}" y="{y + 1}" font-size="11">{escape(name)}</text>')
    step = max(len(labels) // 6, 1)
    for x in range(0, len(labels), step):
        body.append(
            f'<text x="{PAD_L + plot_w * x / n:.1f}" y="{H - PAD_B + 16}" font-size="11" text-anchor="middle">'
            f"{escape(labels[x])}</text>"
        )
    return _frame(title, body, top)


def bar_chart(title: str, bars: list[tuple[str, int]]) -> str:
    """Bars side by side (e.g. districts), labelled under each bar."""
    top = max([v for _, v in bars] + [1])
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    slot = plot_w / max(len(bars), 1)
    body = []
    for i, (label, value) in enumerate(bars):
        height = plot_h * value / top
        x = PAD_L + slot * i + slot * 0.15
        body.append(
            f'<rect x="{x:.1f}" y="{PAD_T + plot_h - height:.1f}" width="{slot * 0.7:.1f}" height="{height:.1f}"'
            f' fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(label)}: {value}</title></rect>'
        )
        body.append(
            f'<text x="{x + slot * 0.35:.1f}" y="{H - PAD_B + 16}" font-size="11" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    return _frame(title, body, top)
