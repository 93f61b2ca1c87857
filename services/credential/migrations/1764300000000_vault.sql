-- Up Migration
-- The vault's envelope-encrypted secrets. Each secret is encrypted with its own data key, and the
-- data key is stored only wrapped by a key-encryption key that never leaves the credential
-- service. Filled by the credential issue; created now so the schema has an owner from day one.
CREATE TABLE credential.secrets (
  id               uuid PRIMARY KEY,
  app_id           text NOT NULL,
  name             text NOT NULL,
  kek_id           text NOT NULL,         -- which key-encryption key wrapped the data key
  wrapped_data_key bytea NOT NULL,
  nonce            bytea NOT NULL,
  ciphertext       bytea NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (app_id, name)
);

-- Down Migration
DROP TABLE credential.secrets;
