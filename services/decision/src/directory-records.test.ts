import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DirectoryRecordV1 } from '@portcullis/contracts';
import { grantOf, policyDirectory } from './directory-records.ts';

test('a stored entitlement row becomes the grant the policy reads', () => {
  assert.deepEqual(grantOf({ action_class: 'read', expires_at: null, conditions: {} }), {
    actions: ['read'],
  });
  assert.deepEqual(
    grantOf({
      action_class: 'write',
      expires_at: new Date('2027-01-01T00:00:00Z'),
      conditions: {
        require_approval: true,
        arguments: { repository: ['acme/api'] },
        rate_limit_class: 'bulk',
      },
    }),
    {
      actions: ['write'],
      expires_at: Date.parse('2027-01-01T00:00:00Z'),
      require_approval: ['write'],
      arguments: { repository: ['acme/api'] },
      rate_limit_class: 'bulk',
    },
  );
  // require_approval: false means no approval, not an empty list of classes.
  assert.deepEqual(
    grantOf({ action_class: 'delete', expires_at: null, conditions: { require_approval: false } }),
    {
      actions: ['delete'],
    },
  );
});

test('topic records assemble into data.directory; the revision marker, key hashes and connections stay out', () => {
  const base = { type: 'directory.record', version: 1, revision: 3 } as const;
  const records = new Map<string, DirectoryRecordV1>([
    [
      'agent:agt_1',
      {
        ...base,
        kind: 'agent',
        id: 'agt_1',
        name: 'bot',
        data: { state: 'active', owner: 'a@example.com' },
        keys: [{ keyId: '0123456789abcdef', secretSha256: 'a'.repeat(64) }],
        oauthClients: ['bot-client'],
      },
    ],
    ['app:demo', { ...base, kind: 'app', id: 'demo', data: { delete: 'deny' } }],
    [
      'app_connection:demo',
      {
        ...base,
        kind: 'app_connection',
        id: 'demo',
        data: {
          transport: { type: 'http', url: 'http://127.0.0.1:9/mcp' },
          auth: { scheme: 'none' },
          tools: { read_record: 'b'.repeat(64) },
        },
      },
    ],
    [
      'entitlements:agt_1',
      { ...base, kind: 'entitlements', id: 'agt_1', data: { demo: [{ actions: ['read'] }] } },
    ],
    ['revision:current', { ...base, kind: 'revision', id: 'current', data: { revision: 3 } }],
  ]);
  const directory = policyDirectory(records);
  assert.deepEqual(directory, {
    agents: { agt_1: { state: 'active', owner: 'a@example.com' } },
    apps: { demo: { delete: 'deny' } },
    entitlements: { agt_1: { demo: [{ actions: ['read'] }] } },
    delegations: {},
  });
  assert.equal(JSON.stringify(directory).includes('a'.repeat(64)), false);
  assert.equal(JSON.stringify(directory).includes('bot-client'), false);
  assert.equal(JSON.stringify(directory).includes('127.0.0.1'), false);
});
