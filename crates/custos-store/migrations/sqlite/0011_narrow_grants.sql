-- The application role holds only what the service does, SQLite. Keep equivalent to
-- ../postgres/0011_narrow_grants.sql (tested).
--
-- SQLite has no roles, so there are no grants to narrow; what a trigger can say, it says
-- here too: a revoked token stays revoked.

CREATE TRIGGER api_tokens_revocation_is_final BEFORE UPDATE ON api_tokens
WHEN OLD.revoked_at_us IS NOT NULL AND NEW.revoked_at_us IS NOT OLD.revoked_at_us
BEGIN SELECT RAISE(ABORT, 'api_tokens: a revoked token stays revoked'); END;
