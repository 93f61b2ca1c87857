import type { ActionClass } from '@portcullis/contracts';

/**
 * The action class of a tool, from its MCP annotations read with the defaults the MCP schema gives
 * them (ADR 0046): `readOnlyHint` (default false) true ⇒ read; otherwise `destructiveHint`
 * (default true) false ⇒ write, the tool declared its updates additive; anything else ⇒ delete.
 * A tool that says nothing about itself may, by the specification, destroy things: it needs a
 * delete entitlement unless an admin sets its class in the directory.
 */
export function actionClassOf(
  annotations: { readOnlyHint?: boolean; destructiveHint?: boolean } | undefined,
): ActionClass {
  if (annotations?.readOnlyHint === true) return 'read';
  if (annotations?.destructiveHint === false) return 'write';
  return 'delete';
}
