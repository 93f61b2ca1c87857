-- Up Migration
-- The directory: agents (service principals) with their owners, apps, and agent entitlements.
-- Agent entitlements are deliberately separate from any human's access to the same app.

CREATE TABLE directory.agents (
  id         text PRIMARY KEY CHECK (id ~ '^agt_[0-9a-z]{1,64}$'),
  name       text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,99}$'),
  owner      text NOT NULL CHECK (length(owner) BETWEEN 1 AND 320),
  state      text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'suspended')),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Only the SHA-256 of a key's secret is stored; the key itself is shown once at issue.
CREATE TABLE directory.agent_keys (
  key_id        text PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{16}$'),
  agent_id      text NOT NULL REFERENCES directory.agents (id) ON DELETE CASCADE,
  secret_sha256 bytea NOT NULL CHECK (length(secret_sha256) = 32),
  created_at    timestamptz NOT NULL DEFAULT now(),
  revoked_at    timestamptz
);
CREATE INDEX agent_keys_agent_idx ON directory.agent_keys (agent_id);

CREATE TABLE directory.apps (
  id         text PRIMARY KEY CHECK (id ~ '^[a-z][a-z0-9-]{0,62}$'),
  name       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE directory.entitlements (
  agent_id     text NOT NULL REFERENCES directory.agents (id) ON DELETE CASCADE,
  app_id       text NOT NULL REFERENCES directory.apps (id) ON DELETE CASCADE,
  action_class text NOT NULL CHECK (action_class IN ('read', 'write', 'delete')),
  granted_by   text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (agent_id, app_id, action_class)
);

-- A counter bumped by every change, so readers can poll one row to know whether to reload.
CREATE TABLE directory.revision (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  value     bigint NOT NULL
);
INSERT INTO directory.revision (value) VALUES (1);

CREATE FUNCTION directory.bump_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE directory.revision SET value = value + 1;
  RETURN NULL;
END;
$$;

CREATE TRIGGER agents_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON directory.agents
  FOR EACH STATEMENT EXECUTE FUNCTION directory.bump_revision();
CREATE TRIGGER agent_keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON directory.agent_keys
  FOR EACH STATEMENT EXECUTE FUNCTION directory.bump_revision();
CREATE TRIGGER apps_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON directory.apps
  FOR EACH STATEMENT EXECUTE FUNCTION directory.bump_revision();
CREATE TRIGGER entitlements_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON directory.entitlements
  FOR EACH STATEMENT EXECUTE FUNCTION directory.bump_revision();

-- Down Migration
DROP TABLE directory.entitlements, directory.apps, directory.agent_keys, directory.agents, directory.revision;
DROP FUNCTION directory.bump_revision();
