-- Up Migration
-- Views for the questions auditors ask (docs/auditor-guide.md). They read audit.ledger_events
-- only, so everything they show is covered by the hash chains.

-- One row per tool call: the request with its decision, and the outcome once it is known.
CREATE VIEW audit.tool_calls AS
SELECT
  r.call_id,
  r.occurred_at                                            AS requested_at,
  r.payload -> 'agent' ->> 'id'                            AS agent_id,
  r.payload -> 'agent' ->> 'name'                          AS agent_name,
  r.payload -> 'agent' ->> 'owner'                         AS agent_owner,
  r.payload -> 'onBehalfOf' ->> 'userId'                   AS on_behalf_of,
  r.payload -> 'app' ->> 'id'                              AS app_id,
  r.payload -> 'tool' ->> 'name'                           AS tool,
  r.payload ->> 'actionClass'                              AS action_class,
  r.payload ->> 'argumentsDigest'                          AS arguments_digest,
  r.payload -> 'redactedArguments'                         AS redacted_arguments,
  r.payload -> 'decision' ->> 'outcome'                    AS decision,
  ARRAY(SELECT jsonb_array_elements_text(r.payload -> 'decision' -> 'reasons')) AS reason_codes,
  r.payload -> 'decision' ->> 'policyRevision'             AS policy_revision,
  (r.payload -> 'decision' ->> 'decisionId')::uuid         AS decision_id,
  (c.payload ->> 'approvalId')::uuid                       AS approval_id,
  c.payload ->> 'credentialLeaseId'                        AS credential_lease_id,
  COALESCE(c.payload ->> 'outcome', 'pending')             AS outcome,
  c.payload -> 'error' ->> 'code'                          AS error_code,
  c.payload ->> 'resultDigest'                             AS result_digest,
  c.payload -> 'redactedResult'                            AS redacted_result,
  (c.payload ->> 'durationMs')::double precision           AS duration_ms,
  (c.payload ->> 'upstreamMs')::double precision           AS upstream_ms,
  c.occurred_at                                            AS completed_at,
  COALESCE(r.payload ->> 'traceId', c.payload ->> 'traceId') AS trace_id,
  r.event_id                                               AS requested_event_id
FROM audit.ledger_events r
LEFT JOIN audit.ledger_events c
  ON c.call_id = r.call_id AND c.event_type = 'tool_call.completed'
WHERE r.event_type = 'tool_call.requested';
COMMENT ON VIEW audit.tool_calls IS
  'One row per tool call: agent, owner, acting user, app, tool, action class, arguments digest, decision with reason codes and policy revision, approval, credential lease, outcome, timings, trace id.';

-- Every policy decision (one per call).
CREATE VIEW audit.decisions AS
SELECT decision_id, call_id, requested_at AS decided_at, agent_id, on_behalf_of, app_id, tool,
       action_class, decision, reason_codes, policy_revision
FROM audit.tool_calls;
COMMENT ON VIEW audit.decisions IS 'Every policy decision: allow or deny, reason codes and the policy revision that decided.';

-- All denials.
CREATE VIEW audit.denials AS
SELECT * FROM audit.decisions WHERE decision = 'deny';
COMMENT ON VIEW audit.denials IS 'Every call the policy denied, with its reason codes.';

-- All deletes: calls of tools classified as delete, whatever was decided.
CREATE VIEW audit.deletes AS
SELECT * FROM audit.tool_calls WHERE action_class = 'delete';
COMMENT ON VIEW audit.deletes IS 'Every call of a tool whose action class is delete, allowed or not.';

-- Approvals: the request, and who decided it, how and when.
CREATE VIEW audit.approvals AS
SELECT
  (q.payload ->> 'approvalId')::uuid                       AS approval_id,
  q.call_id,
  q.occurred_at                                            AS requested_at,
  q.payload -> 'agent' ->> 'id'                            AS agent_id,
  q.payload -> 'agent' ->> 'owner'                         AS agent_owner,
  q.payload -> 'app' ->> 'id'                              AS app_id,
  q.payload -> 'tool' ->> 'name'                           AS tool,
  q.payload ->> 'requestDigest'                            AS request_digest,
  ARRAY(SELECT jsonb_array_elements_text(q.payload -> 'approvers')) AS approvers,
  COALESCE(d.payload ->> 'outcome', 'pending')             AS outcome,
  d.payload ->> 'decidedBy'                                AS decided_by,
  d.payload ->> 'channel'                                  AS channel,
  d.payload ->> 'comment'                                  AS comment,
  d.occurred_at                                            AS decided_at
FROM audit.ledger_events q
LEFT JOIN audit.ledger_events d
  ON d.event_type = 'approval.decided' AND d.payload ->> 'approvalId' = q.payload ->> 'approvalId'
WHERE q.event_type = 'approval.requested';
COMMENT ON VIEW audit.approvals IS 'Every approval request with its outcome and who decided it.';

-- Credential leases issued and revoked (never the credential itself).
CREATE VIEW audit.credential_events AS
SELECT
  occurred_at, event_type, call_id,
  payload ->> 'leaseId'        AS lease_id,
  payload ->> 'agentId'        AS agent_id,
  payload ->> 'appId'          AS app_id,
  payload ->> 'credentialKind' AS credential_kind,
  payload ->> 'userId'         AS user_id,
  (payload ->> 'expiresAt')::timestamptz AS expires_at,
  payload ->> 'revokedBy'      AS revoked_by,
  payload ->> 'reason'         AS reason
FROM audit.ledger_events
WHERE event_type IN ('credential.lease_issued', 'credential.lease_revoked');
COMMENT ON VIEW audit.credential_events IS 'Credential leases issued to brokers and revoked, by lease id.';

-- Administrative changes to the directory, policies and credentials.
CREATE VIEW audit.admin_changes AS
SELECT
  occurred_at,
  payload ->> 'actor'                AS actor,
  payload ->> 'action'               AS action,
  payload -> 'target' ->> 'kind'     AS target_kind,
  payload -> 'target' ->> 'id'       AS target_id,
  payload ->> 'beforeDigest'         AS before_digest,
  payload ->> 'afterDigest'          AS after_digest,
  event_id
FROM audit.ledger_events
WHERE event_type = 'admin.changed';
COMMENT ON VIEW audit.admin_changes IS 'Every administrative change: who did what to which object.';

-- Entitlements that no call used in the last `days` days. The directory belongs to the decision
-- service and may live in another database; without schema `directory` this returns no rows and
-- raises a NOTICE instead of failing, and docs/auditor-guide.md gives the query to run there.
CREATE FUNCTION audit.unused_entitlements(days integer)
RETURNS TABLE (agent_id text, app_id text, action_class text, granted_by text, granted_at timestamptz,
               last_used_at timestamptz)
LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF to_regclass('directory.entitlements') IS NULL THEN
    RAISE NOTICE 'schema directory is not in this database: run the query from docs/auditor-guide.md there';
    RETURN;
  END IF;
  RETURN QUERY EXECUTE $q$
    SELECT e.agent_id, e.app_id, e.action_class, e.granted_by, e.created_at,
           (SELECT max(t.requested_at) FROM audit.tool_calls t
             WHERE t.agent_id = e.agent_id AND t.app_id = e.app_id AND t.action_class = e.action_class
               AND t.decision = 'allow')
    FROM directory.entitlements e
    WHERE NOT EXISTS (
      SELECT 1 FROM audit.tool_calls t
      WHERE t.agent_id = e.agent_id AND t.app_id = e.app_id AND t.action_class = e.action_class
        AND t.decision = 'allow' AND t.requested_at >= now() - make_interval(days => $1))
    ORDER BY e.agent_id, e.app_id, e.action_class
  $q$ USING days;
END;
$$;
COMMENT ON FUNCTION audit.unused_entitlements(integer) IS
  'Entitlements with no allowed call in the last N days (needs schema directory in the same database).';

GRANT SELECT ON audit.tool_calls, audit.decisions, audit.denials, audit.deletes, audit.approvals,
  audit.credential_events, audit.admin_changes TO portcullis_auditor;
GRANT EXECUTE ON FUNCTION audit.unused_entitlements(integer) TO portcullis_auditor;

-- Down Migration
DROP FUNCTION audit.unused_entitlements(integer);
DROP VIEW audit.admin_changes;
DROP VIEW audit.credential_events;
DROP VIEW audit.approvals;
DROP VIEW audit.deletes;
DROP VIEW audit.denials;
DROP VIEW audit.decisions;
DROP VIEW audit.tool_calls;
