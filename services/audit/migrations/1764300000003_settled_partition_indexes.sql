-- Up Migration
-- Auditor indexes on settled day partitions only (docs/adr/0012-ledger-partitioning-and-ingest.md).
--
-- The four B-tree indexes that serve only auditor filters (event type, agent, acting user,
-- approval id) each evaluate an expression or predicate on the JSONB payload for every insert,
-- decompressing it again when it is stored out of line: measured (pnpm bench:ledger-indexes) 7 %
-- of Postgres's CPU per row on small events, about 22 % with a few KB of redacted arguments. Today's partition is where every
-- insert goes, so it no longer carries them; maintenance builds them on a partition once its UTC
-- day is over. Every partition keeps what the writer, the verifier and the SIEM exporter need:
-- the primary key (event id), the chain key (chain_id, chain_seq), BRIN on occurred_at and the
-- call_id index. The views are unchanged: on today's partition an agent, user or approval filter
-- reads that one partition (narrowed by BRIN when the query bounds the time) instead of an index.
DROP INDEX audit.ledger_events_type_idx;
DROP INDEX audit.ledger_events_agent_idx;
DROP INDEX audit.ledger_events_user_idx;
DROP INDEX audit.ledger_events_approval_idx;

-- Builds the auditor indexes on every attached partition whose day is before `before_day`, unless
-- they exist. Returns one row per partition it indexed. A plain CREATE INDEX (CONCURRENTLY cannot
-- run in a function) holds a SHARE lock on that one settled partition while it builds: a late
-- event for that day waits for it, nothing else does.
CREATE FUNCTION audit.index_settled_partitions(before_day date)
RETURNS TABLE (action text, partition_name text) LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  part record;
  built boolean;
BEGIN
  FOR part IN
    SELECT c.relname, to_date(substring(c.relname from 'p(\d{8})$'), 'YYYYMMDD') AS day
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'audit.ledger_events'::regclass
    ORDER BY c.relname
  LOOP
    CONTINUE WHEN part.day >= before_day;
    built := false;
    IF to_regclass(format('audit.%I', part.relname || '_type_idx')) IS NULL THEN
      -- Tool-call events are most rows: only the rarer types are indexed by type.
      EXECUTE format(
        'CREATE INDEX %I ON audit.%I (event_type, occurred_at) '
        'WHERE event_type NOT IN (''tool_call.requested'', ''tool_call.completed'')',
        part.relname || '_type_idx', part.relname);
      built := true;
    END IF;
    IF to_regclass(format('audit.%I', part.relname || '_agent_idx')) IS NULL THEN
      EXECUTE format(
        'CREATE INDEX %I ON audit.%I ((payload -> ''agent'' ->> ''id''), occurred_at)',
        part.relname || '_agent_idx', part.relname);
      built := true;
    END IF;
    IF to_regclass(format('audit.%I', part.relname || '_user_idx')) IS NULL THEN
      EXECUTE format(
        'CREATE INDEX %I ON audit.%I ((payload -> ''onBehalfOf'' ->> ''userId''), occurred_at) '
        'WHERE payload ? ''onBehalfOf''',
        part.relname || '_user_idx', part.relname);
      built := true;
    END IF;
    IF to_regclass(format('audit.%I', part.relname || '_approval_idx')) IS NULL THEN
      EXECUTE format(
        'CREATE INDEX %I ON audit.%I ((payload ->> ''approvalId'')) WHERE payload ? ''approvalId''',
        part.relname || '_approval_idx', part.relname);
      built := true;
    END IF;
    IF built THEN
      action := 'indexed';
      partition_name := part.relname;
      RETURN NEXT;
    END IF;
  END LOOP;
END;
$$;

-- Maintenance as before (partitions ahead, retention by detaching), plus the auditor indexes on
-- partitions whose day is over. Detaching runs first, so no index is built on a partition that is
-- about to leave.
CREATE OR REPLACE FUNCTION audit.maintain_partitions(days_ahead integer, retention_days integer)
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
  RETURN QUERY SELECT * FROM audit.index_settled_partitions(today);
END;
$$;

-- Partitions that are already settled get their indexes now.
SELECT audit.index_settled_partitions((now() AT TIME ZONE 'UTC')::date);

REVOKE ALL ON FUNCTION audit.index_settled_partitions(date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.index_settled_partitions(date) TO portcullis_audit_writer;

-- Down Migration
-- Parent indexes again (Postgres builds them on every partition, attaching any equivalent one a
-- partition already has), and maintenance without the settled-partition step.
CREATE OR REPLACE FUNCTION audit.maintain_partitions(days_ahead integer, retention_days integer)
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
DROP FUNCTION audit.index_settled_partitions(date);
CREATE INDEX ledger_events_type_idx ON audit.ledger_events (event_type, occurred_at)
  WHERE event_type NOT IN ('tool_call.requested', 'tool_call.completed');
CREATE INDEX ledger_events_agent_idx ON audit.ledger_events ((payload -> 'agent' ->> 'id'), occurred_at);
CREATE INDEX ledger_events_user_idx ON audit.ledger_events ((payload -> 'onBehalfOf' ->> 'userId'), occurred_at)
  WHERE payload ? 'onBehalfOf';
CREATE INDEX ledger_events_approval_idx ON audit.ledger_events ((payload ->> 'approvalId'))
  WHERE payload ? 'approvalId';
