-- The roles of decision 0006, created if missing. Run as a role with CREATEROLE (roles belong
-- to the whole cluster, not to one database). `strata-web roles create` runs it, with the names
-- of its --prefix in place of {owner}, {app}, {projector} and {auditor}; `--print` shows it.
-- Passwords are not set here: set them with ALTER ROLE … PASSWORD, or authenticate otherwise.
--
-- {owner}      owns the tables and functions: `strata-web migrate`, `strata-web roles grant`,
--              `strata-projector rebuild`. Nothing else connects as it.
-- {app}        strata-web: appends through the append functions, reads, snapshots.
-- {projector}  strata-projector run, status, dlq: reads the log, writes the read models.
-- {auditor}    reads the log and the read models, nothing else.
--
-- An existing role is left as it is: a concurrent run, or an earlier one, made it.
DO $$ BEGIN CREATE ROLE {owner} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE {app} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE {projector} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE {auditor} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
