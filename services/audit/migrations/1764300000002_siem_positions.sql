-- Up Migration
-- How far each SIEM destination has been sent: per destination and chain, the last chain_seq the
-- destination acknowledged. Advanced only after the acknowledgement, so a restart resends at most
-- the batch in flight (at-least-once; OCSF metadata.uid lets the SIEM drop the repeat).
CREATE TABLE audit.siem_positions (
  destination text NOT NULL,
  chain_id    text NOT NULL,
  seq         bigint NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (destination, chain_id)
);
GRANT SELECT, INSERT, UPDATE ON audit.siem_positions TO portcullis_audit_writer;
GRANT SELECT ON audit.siem_positions TO portcullis_auditor;

-- Down Migration
DROP TABLE audit.siem_positions;
