/**
 * Log paths the credential service censors on top of the shared list. This service is the one
 * place secrets exist in clear, so its list is tested: adding a field that carries secret material
 * means adding it here.
 */
export const CREDENTIAL_REDACT_PATHS: readonly string[] = [
  'plaintext',
  '*.plaintext',
  'dataKey',
  '*.dataKey',
  'wrappedDataKey',
  '*.wrappedDataKey',
  'ciphertext',
  '*.ciphertext',
  'accessToken',
  '*.accessToken',
  'refreshToken',
  '*.refreshToken',
  'clientSecret',
  '*.clientSecret',
];
