-- The application role holds only what the service does, PostgreSQL. Keep equivalent to
-- ../sqlite/0011_narrow_grants.sql (tested).
--
-- The service never updates a tenant (so it cannot shorten the retention the database
-- checks prunes against), and of the few rows it updates in place it may change only the
-- columns it must: a token's revocation, a hold's release, a key's end of validity. A
-- revoked token stays revoked.

REVOKE UPDATE ON tenants FROM custos_app;
REVOKE UPDATE ON api_tokens, legal_holds, evidence_holds, signing_keys FROM custos_app;
GRANT UPDATE (revoked_at_us) ON api_tokens TO custos_app;
GRANT UPDATE (released_at_us, release_leaf) ON legal_holds TO custos_app;
GRANT UPDATE (released_at_us) ON evidence_holds TO custos_app;
GRANT UPDATE (not_after_us) ON signing_keys TO custos_app;

CREATE FUNCTION custos_revocation_is_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.revoked_at_us IS NOT NULL AND NEW.revoked_at_us IS DISTINCT FROM OLD.revoked_at_us THEN
        RAISE EXCEPTION 'api_tokens: a revoked token stays revoked' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER api_tokens_revocation_is_final BEFORE UPDATE ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION custos_revocation_is_final();
