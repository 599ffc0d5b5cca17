"""The admin in a real browser: headless Chromium (Debian's `chromium` + `chromium-driver`, installed by
`make test`) driven by Selenium logs in as a reviewer, opens a submitted version, approves it with a note on the
version's own page and saves screenshots under .local/. Skips, saying why, only where no browser is installed."""

import shutil
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from backend.methodologies import services
from backend.methodologies.models import ImpactPreview, MethodologyVersion, VersionTransition
from tests.conftest import PASSWORD

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install -r requirements.txt)"
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOTS = Path(settings.BASE_DIR) / ".local" / "screenshots"
WIDTH = 1366  # the reviewers' laptops


@pytest.fixture
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(
            "no headless browser: `chromium` and `chromium-driver` (Debian) are not installed and could not be "
            "installed here (make test installs them when it runs as root)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--lang=en"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={WIDTH},1000")
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


@pytest.fixture
def submitted(make_user):
    """A bus_ride draft with one changed parameter, submitted for review by its author."""
    author = make_user(role="reviewer", display_name="Author")
    draft = services.methodology_version_create_draft(code="bus_ride", author=author)
    parameters = dict(draft.parameters)
    parameters["baseline_g_per_pkm"] = {**parameters["baseline_g_per_pkm"], "value": "80"}
    services.methodology_version_update_draft(
        version_id=draft.id, actor=author, parameters=parameters, effective_from=timezone.now() + timedelta(days=3)
    )
    version = services.methodology_version_submit(version_id=draft.id, actor=author, note="Newer survey")
    # A finished impact preview as the preview task stores it (its computation is tested in tests/methodologies).
    districts = [("370202", 5200), ("370203", 3100), ("370211", -800), ("370212", 2500)]
    ImpactPreview.objects.create(
        version=version,
        window_start=timezone.now() - timedelta(days=30),
        window_end=timezone.now(),
        status=ImpactPreview.Status.DONE,
        progress_done=420,
        progress_total=420,
        result={
            "totals": {"actions": 420, "current_grams": 90_000, "preview_grams": 100_000, "delta_grams": 10_000},
            "by_district": [
                {"district": d, "actions": 100, "current_grams": 0, "preview_grams": g, "delta_grams": g}
                for d, g in districts
            ],
            "residents_affected": 57,
            "largest_changes": [
                {"resident_id": 100 + i, "district": "370202", "current_grams": 0, "preview_grams": 0, "delta_grams": g}
                for i, g in enumerate([640, 590, -420, 380, 300])
            ],
        },
    )
    return version


def shot(driver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WIDTH, min(max(height, 800), 4000))
    path = SCREENSHOTS / name
    driver.save_screenshot(str(path))
    return path


def test_reviewer_approves_a_submitted_version_on_its_page_in_a_real_browser(
    live_server, browser, make_user, submitted
):
    reviewer = make_user(role="reviewer", display_name="Wang Fang")

    # Given the branded login page that asks for a phone (not a hash)
    browser.get(f"{live_server.url}/admin/login/?next=/admin/")
    assert "青碳行 administration" in browser.find_element(By.ID, "site-name").text
    assert browser.find_element(By.CSS_SELECTOR, "label[for=id_username]").text.startswith("Phone")
    browser.find_element(By.ID, "id_username").send_keys(reviewer.raw_phone)
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    # Then the header greets the display name
    WebDriverWait(browser, 10).until(expected_conditions.presence_of_element_located((By.ID, "user-tools")))
    assert browser.find_element(By.CSS_SELECTOR, "#user-tools strong").get_attribute("textContent") == "Wang Fang"

    # When the reviewer opens the submitted version: the diff beside the active version fits the screen
    browser.get(f"{live_server.url}/admin/methodologies/methodologyversion/{submitted.pk}/change/")
    shot(browser, "admin-version-in-review.png")
    changed = browser.find_element(By.CSS_SELECTOR, "table.version-diff tr.changed")
    assert "parameters.baseline_g_per_pkm" in changed.text
    assert browser.execute_script("return document.documentElement.scrollWidth") <= WIDTH
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.impact-chart rect")) == 4 + 5  # districts, largest
    shot(browser, "admin-version-in-review.png")

    # And approves it with a note on the version's own page
    browser.find_element(By.CSS_SELECTOR, "a.version-approve").click()
    browser.find_element(By.ID, "id_note").send_keys("Checked against the 2026 bus survey.")
    browser.find_element(By.CSS_SELECTOR, "#transition-form input[type=submit]").click()

    # Then the version is approved through the service, the note kept, and the page says so
    WebDriverWait(browser, 10).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".messagelist")))
    assert "Approve: done" in browser.find_element(By.CSS_SELECTOR, ".messagelist").text
    path = shot(browser, "admin-version-approved.png")
    version = MethodologyVersion.objects.get(pk=submitted.pk)
    assert version.status == "approved" and version.decided_by_id == reviewer.pk
    assert version.decision_note == "Checked against the 2026 bus survey."
    assert VersionTransition.objects.filter(methodology_version=version, to_status="approved", actor=reviewer).exists()
    assert path.stat().st_size > 10_000
    assert Decimal(version.parameters["baseline_g_per_pkm"]["value"]) == 80
