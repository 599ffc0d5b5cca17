"""Reference data from ../shared/qingdao.md: Qingdao's ten districts (GB/T 2260 codes) and their 2021-2025
CO2-intensity reduction targets from the 14th Five-Year climate plan. Copied here so a deployment needs no
shared/ folder; a test checks it against qingdao.md."""

DISTRICTS = [
    ("370202", "市南区", "Shinan", "20.5"),
    ("370203", "市北区", "Shibei", "20.5"),
    ("370213", "李沧区", "Licang", "20.5"),
    ("370212", "崂山区", "Laoshan", "20.5"),
    ("370211", "西海岸新区 (黄岛区)", "West Coast New Area", "22.5"),
    ("370214", "城阳区", "Chengyang", "22.5"),
    ("370215", "即墨区", "Jimo", "22.5"),
    ("370281", "胶州市", "Jiaozhou", "22.5"),
    ("370283", "平度市", "Pingdu", "21.5"),
    ("370285", "莱西市", "Laixi", "21.5"),
]


def districts_upsert(district_model) -> int:
    """Create or correct the ten districts; returns how many rows changed (0 on a second run)."""
    from decimal import Decimal

    changed = 0
    existing = {d.code: d for d in district_model.objects.all()}
    for code, name_zh, name_en, target in DISTRICTS:
        values = {"name_zh": name_zh, "name_en": name_en, "co2_intensity_target_pct": Decimal(target)}
        current = existing.get(code)
        if current is None or any(getattr(current, k) != v for k, v in values.items()):
            district_model.objects.update_or_create(code=code, defaults=values)
            changed += 1
    return changed
