-- Up Migration
-- The activation history is the outbox of the policy topic: an activation commits first, then is
-- published; `published_at` says it reached Kafka. Publishing always sends the newest activation,
-- under an advisory lock, and marks it and every older one published, so the topic ends on what
-- the history says is active whatever failed in between. `event_id` makes a re-publication (after
-- a crash between Kafka's acknowledgement and the mark) the same event.

ALTER TABLE directory.policy_activations
  ADD COLUMN event_id uuid NOT NULL DEFAULT gen_random_uuid(),
  ADD COLUMN published_at timestamptz;
-- Before this migration an activation was published inside its own transaction.
UPDATE directory.policy_activations SET published_at = activated_at;
CREATE INDEX policy_activations_unpublished_idx ON directory.policy_activations (id)
  WHERE published_at IS NULL;

-- Down Migration
ALTER TABLE directory.policy_activations DROP COLUMN published_at, DROP COLUMN event_id;
