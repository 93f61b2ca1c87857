import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { aggregateNamespace, appNamespace } from './namespacing.ts';

const apps = new Set(['files', 'crm', 'a-b']);
const aggregate = aggregateNamespace((appId) => apps.has(appId));

describe('aggregate namespace', () => {
  it('round-trips tool names and resource URIs', () => {
    assert.equal(aggregate.toolName('crm', 'find_contact'), 'crm__find_contact');
    assert.deepEqual(aggregate.resolveName('crm__find_contact'), { appId: 'crm', name: 'find_contact' });
    // An upstream name may itself contain the separator: only the first one splits.
    assert.deepEqual(aggregate.resolveName('crm__a__b'), { appId: 'crm', name: 'a__b' });
    assert.equal(aggregate.resourceUri('files', 'file:///etc/motd'), 'files+file:///etc/motd');
    assert.deepEqual(aggregate.resolveUri('files+file:///etc/motd'), {
      appId: 'files',
      uri: 'file:///etc/motd',
    });
    assert.deepEqual(aggregate.resolveUri('a-b+git+ssh://host/repo'), {
      appId: 'a-b',
      uri: 'git+ssh://host/repo',
    });
  });

  for (const [label, name] of [
    ['no prefix', 'find_contact'],
    ['empty app', '__find_contact'],
    ['empty tool', 'crm__'],
    ['unknown app', 'payroll__run'],
    ['path traversal in the app', '../crm__x'],
    ['upper-case app', 'CRM__x'],
    ['whitespace in the tool', 'crm__find contact'],
    ['control character', 'crm__find\u0000'],
    ['newline', 'crm__find\n'],
    ['non-ASCII look-alike', 'crm__fіnd'],
    ['overlong', `crm__${'x'.repeat(200)}`],
  ] as const)
    it(`refuses a tool name with ${label}`, () => assert.equal(aggregate.resolveName(name), undefined));

  for (const [label, uri] of [
    ['no prefix', 'file:///etc/motd'],
    ['unknown app', 'payroll+file:///x'],
    ['no scheme after the prefix', 'files+/etc/passwd'],
    ['whitespace', 'files+file:///a b'],
    ['overlong', `files+file:///${'x'.repeat(5000)}`],
  ] as const)
    it(`refuses a resource URI with ${label}`, () => assert.equal(aggregate.resolveUri(uri), undefined));
});

describe('app namespace', () => {
  const own = appNamespace('files');
  it('passes names unchanged, bound to its one app', () => {
    assert.equal(own.toolName('files', 'read'), 'read');
    assert.deepEqual(own.resolveName('read'), { appId: 'files', name: 'read' });
    assert.deepEqual(own.resolveName('crm__read'), { appId: 'files', name: 'crm__read' });
    assert.deepEqual(own.resolveUri('file:///x'), { appId: 'files', uri: 'file:///x' });
    assert.equal(own.resolveName('bad name'), undefined);
  });
});
