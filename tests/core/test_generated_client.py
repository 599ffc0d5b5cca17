"""The schema is a contract a mobile team can generate a client from: `make client` generates a typed Python
client (openapi-python-client) from the committed api_schema/openapi.yaml, and this test drives a live server
with it: register, login, wallet, calculator and a documented 409, parsed into typed models."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = ROOT / ".local" / "qingdao-client"


@pytest.fixture(scope="module")
def qingdao_client():
    if not (CLIENT_DIR / "qingdao_client").exists():  # `make test` generates it before pytest; alone, do it here
        subprocess.run(["make", "--no-print-directory", "client"], cwd=ROOT, check=True, capture_output=True)
    sys.path.insert(0, str(CLIENT_DIR))
    try:
        import qingdao_client

        yield qingdao_client
    finally:
        sys.path.remove(str(CLIENT_DIR))


@pytest.mark.django_db(transaction=True)
def test_generated_client_registers_logs_in_reads_wallet_and_calculates(qingdao_client, live_server, seeded):
    from qingdao_client import AuthenticatedClient, Client
    from qingdao_client.api.auth import auth_register, auth_token
    from qingdao_client.api.me import me_wallet
    from qingdao_client.api.methodologies import methodologies_calculate
    from qingdao_client.models import (
        AuthRegisterError409,
        AuthRegisterError409ItemCodeEnum,
        CalculateInputRequest,
        CalculateInputRequestData,
        CalculateOutput,
        Me,
        RegisterInputRequest,
        TokenObtainInputRequest,
        TokenPair,
        Wallet,
    )

    anonymous = Client(base_url=live_server.url, raise_on_unexpected_status=True)
    body = RegisterInputRequest(
        phone="13800001234", password="a long passphrase 9", display_name="小李", district="370202"
    )
    me = auth_register.sync(client=anonymous, body=body)
    assert isinstance(me, Me) and me.phone == "138****1234"

    again = auth_register.sync_detailed(client=anonymous, body=body)
    assert again.status_code == 409
    assert isinstance(again.parsed, AuthRegisterError409)  # a typed error the app can branch on
    assert again.parsed.errors[0].code is AuthRegisterError409ItemCodeEnum.PHONE_TAKEN

    tokens = auth_token.sync(
        client=anonymous, body=TokenObtainInputRequest(phone="13800001234", password="a long passphrase 9")
    )
    assert isinstance(tokens, TokenPair)
    resident = AuthenticatedClient(base_url=live_server.url, token=tokens.access, raise_on_unexpected_status=True)
    wallet = me_wallet.sync(client=resident)
    assert isinstance(wallet, Wallet) and wallet.points_balance == 0 and wallet.points_expiring == []

    calculation = methodologies_calculate.sync(
        "bus_ride",
        client=resident,
        body=CalculateInputRequest(data=CalculateInputRequestData.from_dict({"distance_km": "10"})),
    )
    assert isinstance(calculation, CalculateOutput)
    assert (calculation.grams, calculation.points) == (300, 300)
