"""backend/core/db prepared_cursor(): the hot hand-written reads are planned once per connection, and still pass
through Django's query log (query-count tests see them)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backend.ledger.selectors import WALLET_SQL, resident_amounts_attach, resident_transactions, wallet_get
from tests.conftest import requires_postgres
from tests.ledger.helpers import credit

pytestmark = [requires_postgres, pytest.mark.django_db]


def prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_wallet_and_ledger_page_statements_are_prepared_and_logged(resident):
    from backend.ledger.services import action_credits_post_bulk

    action_credits_post_bulk(credits=[credit(resident.pk, points=5), credit(resident.pk, points=7)])
    with CaptureQueriesContext(connection) as ctx:
        for _ in range(3):
            wallet = wallet_get(resident_id=resident.pk)
            page = resident_amounts_attach(
                list(resident_transactions(resident_id=resident.pk).order_by("-id")), resident_id=resident.pk
            )
    assert wallet["points_balance"] == 12
    assert sorted(t.resident_amounts["points"] for t in page) == [5, 7]
    assert len(ctx.captured_queries) == 9  # 3 x (wallet, transactions, amounts): the prepared ones are logged
    logged = [q["sql"] for q in ctx.captured_queries]
    assert all(logged) and sum("WITH acct AS" in q and str(resident.pk) in q for q in logged) == 3  # with values
    statements = prepared_statements()
    assert any(s.startswith(WALLET_SQL.split("%(resident)s")[0]) for s in statements)
    assert any("SUM(p.amount)" in s and "ANY" in s for s in statements)
    assert all("accounts_user" not in s for s in statements)  # the ORM keeps client-side binding


def test_ledger_and_actions_pages_are_prepared_through_the_api(resident):
    from backend.ledger.services import action_credits_post_bulk
    from tests.conftest import client_for

    action_credits_post_bulk(credits=[credit(resident.pk, points=5), credit(resident.pk, points=7)])
    api = client_for(resident)
    first = api.get("/api/v1/me/ledger")
    assert first.status_code == 200 and len(first.json()["results"]) == 2
    assert api.get("/api/v1/me/actions").status_code == 200
    statements = prepared_statements()
    assert any("FROM ledger_ledgertransaction" in s and "LATERAL" in s for s in statements)  # ledger PAGE_SQL
    assert any("FROM actions_action a" in s for s in statements)  # actions LIST_SQL
    assert api.get("/api/v1/me/ledger").json() == first.json()  # the prepared plan answers the same
