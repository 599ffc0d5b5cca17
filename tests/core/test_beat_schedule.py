"""The beat schedule lives in one place (backend/celery.py) and names only tasks that exist; no app registers
anything from AppConfig.ready (beat entries, seeders): those are explicit lists."""

from django.apps import AppConfig, apps

from backend import celery as celery_module
from backend.celery import app
from backend.core.seeding import SEEDERS

EXPECTED = {
    "core-heartbeat": "core.heartbeat",
    "methodologies-activate-due": "methodologies.activate_due_versions",
    "ledger-points-expire": "ledger.points_lots_expire",
    "ledger-merkle-root": "ledger.merkle_root_compute",
    "ledger-reconcile": "ledger.balances_reconcile",
    "partners-prune-nonces": "partners.prune_nonces",
    "actions-reconcile": "actions.reconcile",
    "actions-expire-unclaimed": "actions.expire_unclaimed",
    "stats-aggregate": "stats.aggregate",
    "stats-leaderboards-rebuild": "stats.leaderboards_rebuild",
    "offsets-expire-reservations": "offsets.reservations_expire",
    "offsets-stripe-events-retry": "offsets.stripe_events_retry",
    "offsets-payables-fund": "offsets.payables_fund",
    "offsets-settlements-run": "offsets.settlements_run",
    "rewards-vouchers-expire": "rewards.vouchers_expire",
}


def test_the_schedule_is_the_one_in_backend_celery_and_has_every_expected_entry():
    schedule = app.conf.beat_schedule
    assert schedule is celery_module.BEAT_SCHEDULE or schedule == celery_module.BEAT_SCHEDULE
    assert {name: entry["task"] for name, entry in schedule.items() if name in EXPECTED} == EXPECTED
    assert not hasattr(celery_module, "add_beat_entry")


def test_every_scheduled_task_is_registered():
    app.loader.import_default_modules()  # autodiscovery: every installed app's tasks module
    registered = set(app.tasks)
    missing = sorted(entry["task"] for entry in app.conf.beat_schedule.values() if entry["task"] not in registered)
    assert missing == []


def test_no_project_app_registers_anything_at_import_time():
    ours = [c for c in apps.get_app_configs() if c.name.startswith(("backend.", "rewards"))]
    assert len(ours) >= 8
    assert [c.name for c in ours if type(c).ready is not AppConfig.ready] == []


def test_seeders_are_one_explicit_list_in_order():
    assert [name for name, _ in SEEDERS] == ["districts", "methodologies", "points_policy"]
