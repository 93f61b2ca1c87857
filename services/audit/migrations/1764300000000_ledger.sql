-- Up Migration
-- The tool-call ledger. Every audit event is one row, written once and never changed; a tool
-- call's row in audit.tool_calls is assembled from its events.

CREATE TABLE audit.ledger_events (
  event_id         uuid PRIMARY KEY,           -- idempotency: a replayed event adds nothing
  call_id          uuid NOT NULL,
  event_type       text NOT NULL,
  event_version    integer NOT NULL,
  occurred_at      timestamptz NOT NULL,       -- when the broker saw it happen
  recorded_at      timestamptz NOT NULL DEFAULT now(),
  payload          jsonb NOT NULL,             -- the validated event, exactly as published
  source_topic     text NOT NULL,
  source_partition integer NOT NULL,
  source_offset    bigint NOT NULL
);
CREATE INDEX ledger_events_call_idx ON audit.ledger_events (call_id);
CREATE INDEX ledger_events_occurred_brin ON audit.ledger_events USING brin (occurred_at);

-- Append-only: refuse UPDATE, DELETE and TRUNCATE for every role that is subject to triggers.
CREATE FUNCTION audit.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit.ledger_events is append-only: % refused', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER ledger_events_no_update_delete BEFORE UPDATE OR DELETE ON audit.ledger_events
  FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER ledger_events_no_truncate BEFORE TRUNCATE ON audit.ledger_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

-- One row per tool call: the request with its decision, and the outcome once it is known.
CREATE VIEW audit.tool_calls AS
SELECT
  r.call_id,
  r.occurred_at                                            AS requested_at,
  r.payload -> 'agent' ->> 'id'                            AS agent_id,
  r.payload -> 'agent' ->> 'name'                          AS agent_name,
  r.payload -> 'agent' ->> 'owner'                         AS agent_owner,
  r.payload -> 'app' ->> 'id'                              AS app_id,
  r.payload -> 'tool' ->> 'name'                           AS tool,
  r.payload ->> 'actionClass'                              AS action_class,
  r.payload ->> 'argumentsDigest'                          AS arguments_digest,
  r.payload -> 'decision' ->> 'outcome'                    AS decision,
  ARRAY(SELECT jsonb_array_elements_text(r.payload -> 'decision' -> 'reasons')) AS reason_codes,
  r.payload -> 'decision' ->> 'policyRevision'             AS policy_revision,
  (r.payload -> 'decision' ->> 'decisionId')::uuid         AS decision_id,
  COALESCE(c.payload ->> 'outcome', 'pending')             AS outcome,
  c.payload -> 'error' ->> 'code'                          AS error_code,
  (c.payload ->> 'durationMs')::double precision           AS duration_ms,
  c.occurred_at                                            AS completed_at
FROM audit.ledger_events r
LEFT JOIN audit.ledger_events c
  ON c.call_id = r.call_id AND c.event_type = 'tool_call.completed'
WHERE r.event_type = 'tool_call.requested';

COMMENT ON VIEW audit.tool_calls IS
  'One row per tool call: agent, app, tool, action class, decision with reason codes and policy revision, and outcome (pending until the completion event arrives).';

-- Down Migration
DROP VIEW audit.tool_calls;
DROP TABLE audit.ledger_events;
DROP FUNCTION audit.refuse_change();
