-- Up Migration
-- OAuth clients registered on agents: an access token issued to one of these client ids
-- authenticates as the agent at the gateway. A client id belongs to at most one agent (the
-- primary key), so a token can never be read as two different agents.

CREATE TABLE directory.oauth_client_ids (
  client_id  text PRIMARY KEY CHECK (client_id ~ '^[\x21-\x7e]{1,255}$'),
  agent_id   text NOT NULL REFERENCES directory.agents (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX oauth_client_ids_agent_idx ON directory.oauth_client_ids (agent_id);

CREATE TRIGGER oauth_client_ids_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON directory.oauth_client_ids
  FOR EACH STATEMENT EXECUTE FUNCTION directory.bump_revision();

-- Down Migration
DROP TABLE directory.oauth_client_ids;
