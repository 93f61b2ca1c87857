import type { ActionClass } from '@portcullis/contracts';

/**
 * The action class of a tool, from its MCP annotations: readOnlyHint ⇒ read, destructiveHint ⇒
 * delete, anything else (including no annotations) ⇒ write. Unknown tools are never treated as
 * reads: a tool must declare itself read-only to need only a read entitlement.
 */
export function actionClassOf(
  annotations: { readOnlyHint?: boolean; destructiveHint?: boolean } | undefined,
): ActionClass {
  if (annotations?.readOnlyHint === true) return 'read';
  if (annotations?.destructiveHint === true) return 'delete';
  return 'write';
}
