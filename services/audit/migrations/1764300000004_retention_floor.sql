-- Up Migration
-- Retention has a floor: maintain_partitions is SECURITY DEFINER and executable by the writer role,
-- so without one that role could detach yesterday's partition (maintain_partitions(0, 0)) and the
-- partition log would call it retired. `ledger verify` also checks a detached day against the
-- retention the auditor expects; this keeps the last week attached whatever is asked. Partitions
-- ahead are bounded too (a month), so the writer cannot fill the catalog with them.
--
-- The service logs in as the schema's owner (it runs these migrations) and then acts as
-- portcullis_audit_writer, its query API as portcullis_auditor: the login must be a member of both.
GRANT portcullis_audit_writer, portcullis_auditor TO CURRENT_USER;

CREATE OR REPLACE FUNCTION audit.maintain_partitions(days_ahead integer, retention_days integer)
RETURNS TABLE (action text, partition_name text) LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  today date := (now() AT TIME ZONE 'UTC')::date;
  part record;
BEGIN
  -- The function runs as its owner for the writer role: bound what that role can make it detach.
  IF retention_days IS NULL OR retention_days < 7 THEN
    RAISE EXCEPTION 'retention_days must be at least 7 (got %): the last week is never detached', retention_days
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF days_ahead IS NULL OR days_ahead < 0 OR days_ahead > 31 THEN
    RAISE EXCEPTION 'days_ahead must be between 0 and 31 (got %)', days_ahead
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
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

-- Down Migration
-- Maintenance without the floor, as migration 1764300000003 defined it.
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
