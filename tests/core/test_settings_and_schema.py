import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
REAL_SECRET = "k3J9s!vQ2w@pL8zX#rT5yN1mB7cD4fG6hJ0aS9dF2gH5jK8lZ3xC6vB"


def run_manage(*args, **env):
    full_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({}, "SECRET_KEY"),
        (
            {
                "SECRET_KEY": "django-insecure-" + "x" * 60,
                "DATABASE_URL": "postgres://db/x",
                "REDIS_URL": "redis://r:6379/0",
            },
            "SECRET_KEY",
        ),
        ({"SECRET_KEY": REAL_SECRET, "REDIS_URL": "redis://r:6379/0"}, "DATABASE_URL"),
        (
            {"SECRET_KEY": REAL_SECRET, "DATABASE_URL": "sqlite:///x.db", "REDIS_URL": "redis://r:6379/0"},
            "DATABASE_URL",
        ),
        ({"SECRET_KEY": REAL_SECRET, "DATABASE_URL": "postgres://db/x"}, "REDIS_URL"),
        (
            {
                "SECRET_KEY": REAL_SECRET,
                "DATABASE_URL": "postgres://db/x",
                "REDIS_URL": "redis://r:6379/0",
                "FIELD_HASH_KEY": "h" + REAL_SECRET[1:],
                "FIELD_ENCRYPTION_KEY": "l1ZCqXzKE7RJfmw0a2m0m7yvMpG4xu0y1p4mGfXfH2c=",
                "JWT_SIGNING_KEY": "j" + REAL_SECRET[1:],
            },
            "STRIPE_SECRET_KEY",
        ),
    ],
)
def test_production_refuses_insecure_configuration(env, complaint):
    result = run_manage("check", DJANGO_ENV="production", **env)
    assert result.returncode != 0
    assert "Refusing to start" in result.stderr and complaint in result.stderr


def test_production_deploy_check_passes_with_real_configuration():
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_ENV="production",
        SECRET_KEY=REAL_SECRET,
        DATABASE_URL="postgres://u:p@127.0.0.1:1/x",
        REDIS_URL="redis://127.0.0.1:1/0",
        ALLOWED_HOSTS="api.qingdao.example",
        FIELD_HASH_KEY="h" + REAL_SECRET[1:],
        FIELD_ENCRYPTION_KEY="l1ZCqXzKE7RJfmw0a2m0m7yvMpG4xu0y1p4mGfXfH2c=",
        JWT_SIGNING_KEY="j" + REAL_SECRET[1:],
        STRIPE_SECRET_KEY="sk_live_example",
        STRIPE_WEBHOOK_SECRET="whsec_example",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_committed_schema_matches_the_code(tmp_path):
    """The drift check: regenerating the schema must give the committed file byte for byte."""
    out = tmp_path / "openapi.yaml"
    result = run_manage("spectacular", "--lang", "en", "--validate", "--fail-on-warn", "--file", str(out))
    assert result.returncode == 0, result.stderr
    committed = (ROOT / "api_schema" / "openapi.yaml").read_text()
    assert out.read_text() == committed, "api_schema/openapi.yaml is stale: run `make schema`"


def _operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield method, path, operation


def _error_codes(schema, operation, status: str) -> list[str]:
    components = schema["components"]["schemas"]
    ref = operation["responses"][status]["content"]["application/json"]["schema"]["$ref"]
    item_ref = components[ref.rsplit("/", 1)[1]]["properties"]["errors"]["items"]["$ref"]
    code = components[item_ref.rsplit("/", 1)[1]]["properties"]["code"]
    return components[code["allOf"][0]["$ref"].rsplit("/", 1)[1]]["enum"]


def test_schema_documents_the_error_shape_with_code_enums_and_a_summary_on_every_operation():
    schema = yaml.safe_load((ROOT / "api_schema" / "openapi.yaml").read_text())
    for method, path, operation in _operations(schema):
        assert operation.get("summary"), (method, path)
        assert _error_codes(schema, operation, "500") == ["server_error"], (method, path)
        if operation.get("security") and {} not in operation["security"]:
            assert "not_authenticated" in _error_codes(schema, operation, "401"), (method, path)
        if "requestBody" in operation:
            assert "required" in _error_codes(schema, operation, "400"), (method, path)
            assert list(operation["requestBody"]["content"]) in (["application/json"], ["multipart/form-data"])


def test_declared_domain_error_codes_are_in_the_schema_of_their_operation():
    from backend.core.schema_errors import OPERATION_ERRORS

    schema = yaml.safe_load((ROOT / "api_schema" / "openapi.yaml").read_text())
    operations = {operation["operationId"]: operation for _m, _p, operation in _operations(schema)}
    assert set(OPERATION_ERRORS) <= set(operations), set(OPERATION_ERRORS) - set(operations)
    for operation_id, statuses in OPERATION_ERRORS.items():
        for status, codes in statuses.items():
            assert set(codes) <= set(_error_codes(schema, operations[operation_id], str(status))), operation_id


def test_schema_drift_is_detected(tmp_path):
    """`make schema-check` itself fails, naming the file, when the committed schema differs from the code."""
    stale = tmp_path / "openapi.yaml"
    stale.write_text((ROOT / "api_schema" / "openapi.yaml").read_text().replace("/api/v1/me:", "/api/v1/you:"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}

    def schema_check(schema_file):
        return subprocess.run(
            ["make", "-s", "schema-check", f"SCHEMA_FILE={schema_file}", f"LOCAL={tmp_path}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    drifted = schema_check(stale)
    assert drifted.returncode != 0
    assert "is out of date" in drifted.stdout
    assert "/api/v1/you:" in drifted.stdout  # the diff shows what differs
    assert schema_check(ROOT / "api_schema" / "openapi.yaml").returncode == 0
