-- Up Migration
-- Gateway apps (issue 4): how brokers reach each app, the fingerprint each of its tools is pinned
-- to, and the tool definitions brokers saw that do not match their pin, awaiting an admin.

-- One row per app that has an upstream. transport: {type: http, url} | {type: stdio, command,
-- args, env, cwd}; auth: {scheme: none} (the credential issue adds schemes). Both are validated by
-- the service (AppConnection in packages/contracts) before they are written. Never secrets.
CREATE TABLE directory.app_connections (
  app_id     text PRIMARY KEY REFERENCES directory.apps (id) ON DELETE CASCADE,
  transport  jsonb NOT NULL CHECK (jsonb_typeof(transport) = 'object' AND transport ? 'type'),
  auth       jsonb NOT NULL CHECK (jsonb_typeof(auth) = 'object' AND auth ? 'scheme'),
  pinned_by  text NOT NULL,
  pinned_at  timestamptz NOT NULL DEFAULT now()
);

-- The approved definition of each tool: its fingerprint (SHA-256 of the canonical definition,
-- toolFingerprint in packages/contracts) and the definition itself, so an admin can compare.
CREATE TABLE directory.tool_pins (
  app_id      text NOT NULL REFERENCES directory.app_connections (app_id) ON DELETE CASCADE,
  tool_name   text NOT NULL CHECK (tool_name ~ '^[A-Za-z0-9_.-]{1,128}$'),
  fingerprint text NOT NULL CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
  definition  jsonb NOT NULL,
  pinned_by   text NOT NULL,
  pinned_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (app_id, tool_name)
);

-- Definitions brokers reported (ToolDefinitionChangedV1), one row per (app, tool, observed
-- fingerprint) however many brokers or events report it. `pending` until an admin approves it
-- (`approved`) or the app is re-registered / another fingerprint is approved (`superseded`).
CREATE TABLE directory.tool_changes (
  app_id               text NOT NULL REFERENCES directory.app_connections (app_id) ON DELETE CASCADE,
  tool_name            text NOT NULL CHECK (tool_name ~ '^[A-Za-z0-9_.-]{1,128}$'),
  observed_fingerprint text NOT NULL CHECK (observed_fingerprint ~ '^[0-9a-f]{64}$'),
  pinned_fingerprint   text CHECK (pinned_fingerprint ~ '^[0-9a-f]{64}$'),
  definition           jsonb NOT NULL,
  first_event_id       uuid NOT NULL,
  reported_by          text NOT NULL,
  first_seen_at        timestamptz NOT NULL,
  last_seen_at         timestamptz NOT NULL,
  status               text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'superseded')),
  resolved_by          text,
  resolved_at          timestamptz,
  PRIMARY KEY (app_id, tool_name, observed_fingerprint)
);
CREATE INDEX tool_changes_pending_idx ON directory.tool_changes (app_id) WHERE status = 'pending';

-- Connections and pins are published to brokers (app_connection records); changes are not.
CREATE TRIGGER app_connections_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON directory.app_connections
  FOR EACH STATEMENT EXECUTE FUNCTION directory.bump_revision();
CREATE TRIGGER tool_pins_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON directory.tool_pins
  FOR EACH STATEMENT EXECUTE FUNCTION directory.bump_revision();

-- Down Migration
DROP TABLE directory.tool_changes, directory.tool_pins, directory.app_connections;
