// The few parts of oidc-provider (which ships no types) that the local test IdP uses.
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  export interface ProviderGrant {
    addOIDCScope(scope: string): void;
    addResourceScope(resource: string, scope: string): void;
    save(): Promise<string>;
  }

  export interface BackchannelRequest {
    jti: string;
    accountId: string;
    clientId: string;
    resource?: string;
  }

  export default class Provider {
    constructor(issuer: string, configuration: Record<string, unknown>);
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    Grant: new (properties: {
      accountId: string;
      clientId: string;
    }) => ProviderGrant;
    backchannelResult(request: BackchannelRequest | string, grant: ProviderGrant): Promise<void>;
    on(event: string, listener: (...args: unknown[]) => void): this;
  }

  export const errors: { InvalidTarget: new (description?: string) => Error };
}
