"""The retirement certificate as a PDF (reportlab): company, quantity, serial ranges, methodologies, status and
a QR code to the public verification page. Chinese text uses reportlab's built-in STSong-Light CID font, so no
font file ships with the project."""

import io

from django.conf import settings
from django.urls import reverse
from reportlab.graphics import renderPDF
from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

FONT = "STSong-Light"
pdfmetrics.registerFont(UnicodeCIDFont(FONT))
MAX_RANGE_LINES = 40


def verify_url(code: str) -> str:
    path = reverse("offsets-certificate-verify", kwargs={"code": code})
    return settings.OFFSET_PUBLIC_BASE_URL.rstrip("/") + path


def certificate_pdf(certificate) -> bytes:
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4, invariant=1)
    c.setTitle(f"Retirement certificate {certificate.code}")
    width, height = A4
    y = height - 30 * mm
    c.setFont(FONT, 20)
    c.drawString(20 * mm, y, "碳普惠减排量注销证明 Retirement certificate")
    y -= 12 * mm
    c.setFont(FONT, 11)
    status = "VALID 有效" if certificate.status == "issued" else "REVOKED 已撤销"
    lines = [
        f"Certificate 证书编号: {certificate.code}",
        f"Status 状态: {status}",
        f"Buyer 购买方: {certificate.company_name}",
        f"Unified social credit code 统一社会信用代码: {certificate.tax_id}",
        f"Quantity 数量: {certificate.quantity_kg} kg CO2e ({certificate.quantity_kg / 1000:.3f} t)",
        f"Methodologies 方法学: {', '.join(certificate.methodologies)}",
        f"Issued 签发: {certificate.issued_at:%Y-%m-%d %H:%M} UTC",
        "Serial ranges 序列号:",
    ]
    if certificate.revoked_at:
        lines.insert(2, f"Revoked 撤销: {certificate.revoked_at:%Y-%m-%d %H:%M} UTC")
    ranges = certificate.serial_ranges
    lines += [f"  {r['label']}  ({r['kg']} kg, {r['methodology']})" for r in ranges[:MAX_RANGE_LINES]]
    if len(ranges) > MAX_RANGE_LINES:
        lines.append(f"  ... {len(ranges) - MAX_RANGE_LINES} more ranges: see the verification page")
    for line in lines:
        c.drawString(20 * mm, y, line)
        y -= 7 * mm
    url = verify_url(certificate.code)
    qr = QrCodeWidget(url)
    x0, y0, x1, y1 = qr.getBounds()
    size = 40 * mm
    drawing = Drawing(size, size, transform=[size / (x1 - x0), 0, 0, size / (y1 - y0), 0, 0])
    drawing.add(qr)
    renderPDF.draw(drawing, c, width - 20 * mm - size, 20 * mm)
    c.setFont(FONT, 8)
    c.drawString(20 * mm, 22 * mm, f"Verify 验证: {url}")
    c.showPage()
    c.save()
    return buf.getvalue()
