-- Up Migration
-- The policy model of issue 3: app policy settings and tool overrides, grant conditions, user
-- delegations to agents, and policy bundles with their activation history.

ALTER TABLE directory.agents ADD COLUMN client_type text CHECK (client_type IS NULL OR length(client_type) BETWEEN 1 AND 100);

-- {delete, approvers, rate_limit_class, tools: {name: {action_class, disabled, redact}}}, validated
-- by the service (AppPolicyData in packages/contracts) before it is written.
ALTER TABLE directory.apps ADD COLUMN policy jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(policy) = 'object');

-- Conditions of one grant: {window, arguments, client_types, require_approval (boolean),
-- rate_limit_class, redact}; expiry has its own column so it can be queried and indexed.
ALTER TABLE directory.entitlements
  ADD COLUMN expires_at timestamptz,
  ADD COLUMN conditions jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(conditions) = 'object');

-- What a human user delegated to an agent: never more than the agent's own entitlement is used.
CREATE TABLE directory.delegations (
  user_id      text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 320),
  agent_id     text NOT NULL REFERENCES directory.agents (id) ON DELETE CASCADE,
  app_id       text NOT NULL REFERENCES directory.apps (id) ON DELETE CASCADE,
  action_class text NOT NULL CHECK (action_class IN ('read', 'write', 'delete')),
  expires_at   timestamptz,
  conditions   jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(conditions) = 'object'),
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, agent_id, app_id, action_class)
);
CREATE TRIGGER delegations_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON directory.delegations
  FOR EACH STATEMENT EXECUTE FUNCTION directory.bump_revision();

-- Every validated bundle ever uploaded; never updated, so an activation can always be rolled back.
CREATE TABLE directory.policy_bundles (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  revision    text NOT NULL,
  digest      text NOT NULL UNIQUE CHECK (digest ~ '^[0-9a-f]{64}$'),
  author      text NOT NULL,
  kind        text NOT NULL CHECK (kind IN ('source', 'built')),
  bundle      bytea NOT NULL,
  source      bytea,
  validation  jsonb NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Append-only history; the latest row is the active bundle.
CREATE TABLE directory.policy_activations (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  bundle_id    bigint NOT NULL REFERENCES directory.policy_bundles (id),
  activated_by text NOT NULL,
  rollback_of  bigint REFERENCES directory.policy_activations (id),
  activated_at timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE directory.policy_activations, directory.policy_bundles, directory.delegations;
ALTER TABLE directory.entitlements DROP COLUMN conditions, DROP COLUMN expires_at;
ALTER TABLE directory.apps DROP COLUMN policy;
ALTER TABLE directory.agents DROP COLUMN client_type;
