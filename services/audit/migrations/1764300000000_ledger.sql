-- Up Migration
-- The tool-call ledger (docs/adr/0010-ledger-hash-chains.md, docs/auditor-guide.md).
-- Every audit event is one row, written once and never changed. Rows are partitioned by day of
-- occurred_at and form hash chains, one per (day, Kafka topic, Kafka partition).
-- This replaces the walking skeleton's unpartitioned table in place: no database had been
-- deployed from it.

CREATE TABLE audit.ledger_events (
  occurred_at      timestamptz NOT NULL,       -- when it happened (millisecond precision); partition key
  event_id         uuid NOT NULL,              -- idempotency: a replayed event adds nothing
  call_id          uuid,                       -- the tool call it belongs to; null for admin changes
  event_type       text NOT NULL,
  event_version    integer NOT NULL,
  recorded_at      timestamptz NOT NULL,       -- when the ledger wrote the batch holding it
  payload          jsonb NOT NULL,             -- the validated event, as published (after DLP)
  source_topic     text NOT NULL,
  source_partition integer NOT NULL,
  source_offset    bigint NOT NULL,
  chain_id         text NOT NULL,              -- 'YYYY-MM-DD/<topic>/<partition>'
  chain_seq        bigint NOT NULL CHECK (chain_seq >= 1),
  prev_hash        char(64) NOT NULL,          -- row_hash of chain_seq - 1, or the chain's genesis hash
  row_hash         char(64) NOT NULL,          -- SHA-256 of the RFC 8785 canonical row content + prev_hash
  -- occurred_at is a function of the event, so a replay lands in the same partition and this key
  -- refuses it: together the two columns are as unique as event_id alone.
  PRIMARY KEY (event_id, occurred_at),
  UNIQUE (chain_id, chain_seq, occurred_at)
) PARTITION BY RANGE (occurred_at);

CREATE INDEX ledger_events_occurred_brin ON audit.ledger_events USING brin (occurred_at);
CREATE INDEX ledger_events_call_idx ON audit.ledger_events (call_id);
-- Tool-call events are most rows, so an index on their type would not be selective and would cost
-- every insert; only the rarer types (approvals, leases, admin changes) are indexed by type.
CREATE INDEX ledger_events_type_idx ON audit.ledger_events (event_type, occurred_at)
  WHERE event_type NOT IN ('tool_call.requested', 'tool_call.completed');
CREATE INDEX ledger_events_agent_idx ON audit.ledger_events ((payload -> 'agent' ->> 'id'), occurred_at);
CREATE INDEX ledger_events_user_idx ON audit.ledger_events ((payload -> 'onBehalfOf' ->> 'userId'), occurred_at)
  WHERE payload ? 'onBehalfOf';
CREATE INDEX ledger_events_approval_idx ON audit.ledger_events ((payload ->> 'approvalId'))
  WHERE payload ? 'approvalId';

-- The writer's position in each chain. It is a cache for the writer, not evidence: verification
-- recomputes every chain from the rows and trusts only signed checkpoints.
CREATE TABLE audit.chain_heads (
  chain_id         text PRIMARY KEY,
  chain_day        date NOT NULL,
  source_topic     text NOT NULL,
  source_partition integer NOT NULL,
  seq              bigint NOT NULL,
  head_hash        char(64) NOT NULL,
  updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Signed statements of every chain head. `body` is the signed document; the signature is Ed25519
-- over its RFC 8785 canonical form. Verifiers use a public key they got out of band.
CREATE TABLE audit.checkpoints (
  checkpoint_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  created_at       timestamptz NOT NULL,
  key_id           text NOT NULL,
  body             jsonb NOT NULL,
  signature        text NOT NULL              -- base64
);

-- Every partition created or detached by the maintenance job, so that verification can tell a
-- chain removed by retention from a chain removed by someone else.
CREATE TABLE audit.partition_log (
  logged_at        timestamptz NOT NULL DEFAULT now(),
  action           text NOT NULL CHECK (action IN ('created', 'detached')),
  partition_name   text NOT NULL,
  day              date NOT NULL
);

-- Append-only: refuse UPDATE, DELETE and TRUNCATE for every role that is subject to triggers.
CREATE FUNCTION audit.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '%.% is append-only: % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END;
$$;
-- On a partitioned table, row triggers are cloned onto every partition, present and future.
CREATE TRIGGER ledger_events_no_update_delete BEFORE UPDATE OR DELETE ON audit.ledger_events
  FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER ledger_events_no_truncate BEFORE TRUNCATE ON audit.ledger_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER checkpoints_no_update_delete BEFORE UPDATE OR DELETE ON audit.checkpoints
  FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON audit.checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER partition_log_no_update_delete BEFORE UPDATE OR DELETE ON audit.partition_log
  FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER partition_log_no_truncate BEFORE TRUNCATE ON audit.partition_log
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

-- Creates the day partition holding `day` unless it exists. Partitions carry the parent's
-- indexes and row triggers automatically; TRUNCATE triggers are per table, so add it here.
-- SECURITY DEFINER: the writer role may create partitions (which needs the table owner) but
-- nothing else that ownership allows.
CREATE FUNCTION audit.ensure_partition(day date) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  name text := format('ledger_events_p%s', to_char(day, 'YYYYMMDD'));
BEGIN
  IF to_regclass(format('audit.%I', name)) IS NOT NULL THEN
    RETURN name;
  END IF;
  EXECUTE format(
    'CREATE TABLE IF NOT EXISTS audit.%I PARTITION OF audit.ledger_events FOR VALUES FROM (%L) TO (%L)',
    name, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
  EXECUTE format(
    'CREATE TRIGGER no_truncate BEFORE TRUNCATE ON audit.%I FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change()',
    name);
  INSERT INTO audit.partition_log (action, partition_name, day) VALUES ('created', name, day);
  RETURN name;
EXCEPTION WHEN duplicate_table OR duplicate_object THEN
  -- Another writer created it at the same moment.
  RETURN name;
END;
$$;

-- The maintenance job: partitions for today and `days_ahead` days, and retention by detaching
-- (never dropping) the partitions whose whole day is older than `retention_days`. A detached
-- partition stays a plain table for archiving; dropping it is an operator's explicit act.
CREATE FUNCTION audit.maintain_partitions(days_ahead integer, retention_days integer)
RETURNS TABLE (action text, partition_name text) LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  today date := (now() AT TIME ZONE 'UTC')::date;
  part record;
BEGIN
  FOR offset_days IN 0 .. days_ahead LOOP
    action := 'ensured';
    partition_name := audit.ensure_partition(today + offset_days);
    RETURN NEXT;
  END LOOP;
  FOR part IN
    SELECT c.relname, to_date(substring(c.relname from 'p(\d{8})$'), 'YYYYMMDD') AS day
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'audit.ledger_events'::regclass
  LOOP
    IF part.day < today - retention_days THEN
      EXECUTE format('ALTER TABLE audit.ledger_events DETACH PARTITION audit.%I', part.relname);
      INSERT INTO audit.partition_log (action, partition_name, day) VALUES ('detached', part.relname, part.day);
      action := 'detached';
      partition_name := part.relname;
      RETURN NEXT;
    END IF;
  END LOOP;
END;
$$;

SELECT audit.ensure_partition((now() AT TIME ZONE 'UTC')::date + d) FROM generate_series(-1, 2) AS d;

-- Roles. Group roles without LOGIN; deployments grant them to login roles:
--   portcullis_audit_writer  the audit service (INSERT and SELECT only; no UPDATE, DELETE, TRUNCATE)
--   portcullis_auditor       auditors (SELECT on the ledger, its views and checkpoints)
-- Roles are cluster-wide, so creating them tolerates another database having done it first.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_audit_writer') THEN
    CREATE ROLE portcullis_audit_writer NOLOGIN;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_auditor') THEN
    CREATE ROLE portcullis_auditor NOLOGIN;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

REVOKE ALL ON ALL TABLES IN SCHEMA audit FROM PUBLIC;
GRANT USAGE ON SCHEMA audit TO portcullis_audit_writer, portcullis_auditor;
GRANT SELECT, INSERT ON audit.ledger_events, audit.checkpoints, audit.partition_log TO portcullis_audit_writer;
GRANT SELECT, INSERT, UPDATE ON audit.chain_heads TO portcullis_audit_writer;
GRANT SELECT ON audit.ledger_events, audit.checkpoints, audit.partition_log, audit.chain_heads TO portcullis_auditor;
REVOKE ALL ON FUNCTION audit.ensure_partition(date), audit.maintain_partitions(integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.ensure_partition(date), audit.maintain_partitions(integer, integer)
  TO portcullis_audit_writer;

-- Down Migration
DROP FUNCTION audit.maintain_partitions(integer, integer);
DROP FUNCTION audit.ensure_partition(date);
DROP TABLE audit.partition_log;
DROP TABLE audit.checkpoints;
DROP TABLE audit.chain_heads;
DROP TABLE audit.ledger_events;
DROP FUNCTION audit.refuse_change();
