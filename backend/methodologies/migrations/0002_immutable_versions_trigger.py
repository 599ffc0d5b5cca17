"""PostgreSQL backstop for "versions are immutable once submitted": a trigger refuses any change to the
content of a methodology or points-policy version that is no longer a draft, and its deletion. Status,
decision and window-closing fields (effective_to, timestamps) still move through the workflow."""

from django.db import migrations

METHODOLOGY_SQL = """
CREATE OR REPLACE FUNCTION methodologies_version_immutable() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'draft' THEN
            RAISE EXCEPTION 'version % is % and cannot be deleted', OLD.id, OLD.status USING ERRCODE = 'check_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status <> 'draft' AND (
        NEW.parameters IS DISTINCT FROM OLD.parameters OR
        NEW.validity_rules IS DISTINCT FROM OLD.validity_rules OR
        NEW.daily_cap IS DISTINCT FROM OLD.daily_cap OR
        NEW.evidence_shares IS DISTINCT FROM OLD.evidence_shares OR
        NEW.self_report_allowed IS DISTINCT FROM OLD.self_report_allowed OR
        NEW.sources IS DISTINCT FROM OLD.sources OR
        NEW.effective_from IS DISTINCT FROM OLD.effective_from OR
        NEW.methodology_id IS DISTINCT FROM OLD.methodology_id OR
        NEW.number IS DISTINCT FROM OLD.number
    ) THEN
        RAISE EXCEPTION 'version % is % and immutable', OLD.id, OLD.status USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.status <> 'draft' AND NEW.status = 'draft' THEN
        RAISE EXCEPTION 'version % cannot go back to draft', OLD.id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER methodologies_version_immutable BEFORE UPDATE OR DELETE ON methodologies_methodologyversion
    FOR EACH ROW EXECUTE FUNCTION methodologies_version_immutable();

CREATE OR REPLACE FUNCTION methodologies_points_version_immutable() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'draft' THEN
            RAISE EXCEPTION 'points policy version % is % and cannot be deleted', OLD.id, OLD.status
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status <> 'draft' AND (
        NEW.points_per_gram IS DISTINCT FROM OLD.points_per_gram OR
        NEW.lot_expiry_months IS DISTINCT FROM OLD.lot_expiry_months OR
        NEW.effective_from IS DISTINCT FROM OLD.effective_from OR
        NEW.policy_id IS DISTINCT FROM OLD.policy_id OR
        NEW.number IS DISTINCT FROM OLD.number OR
        NEW.status = 'draft'
    ) THEN
        RAISE EXCEPTION 'points policy version % is % and immutable', OLD.id, OLD.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER methodologies_points_version_immutable BEFORE UPDATE OR DELETE
    ON methodologies_pointspolicyversion FOR EACH ROW EXECUTE FUNCTION methodologies_points_version_immutable();
"""

REVERSE_SQL = """
DROP TRIGGER IF EXISTS methodologies_version_immutable ON methodologies_methodologyversion;
DROP FUNCTION IF EXISTS methodologies_version_immutable();
DROP TRIGGER IF EXISTS methodologies_points_version_immutable ON methodologies_pointspolicyversion;
DROP FUNCTION IF EXISTS methodologies_points_version_immutable();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(METHODOLOGY_SQL, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(REVERSE_SQL, params=None)


class Migration(migrations.Migration):
    dependencies = [("methodologies", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
