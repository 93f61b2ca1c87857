// Fake credentials and personal data for the DLP tests and benchmark. They are assembled at run
// time so the repository itself never holds a string that looks like a live secret to scanners.
const join = (...parts: string[]) => parts.join('');
const b64url = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

export const fakes = {
  // AWS's own documentation example key pair.
  awsAccessKey: join('AKIA', 'IOSFODNN7EXAMPLE'),
  awsSecretKey: join('wJalrXUtnFEMI/K7MDENG/', 'bPxRfiCYEXAMPLEKEY'),
  gcpApiKey: join('AIza', 'SyD-fakefakefakefakefakefake1234567'),
  gcpKeyId: join('0123456789abcdef', '0123456789abcdef01234567'),
  githubToken: join('ghp_', 'aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789'),
  githubFineGrained: join('github_pat_', '11ABCDEFG0123456789abc_', 'x'.repeat(59)),
  gitlabToken: join('glpat-', 'xYz12AbC34dEf56GhI78'),
  slackToken: join('xoxb-', '123456789012-1234567890123-', 'AbCdEfGhIjKlMnOpQrStUvWx'),
  slackWebhook: join('https://hooks.slack.com/services/', 'T00000000/B00000000/', 'XXXXXXXXXXXXXXXXXXXXXXXX'),
  stripeKey: join('sk_', 'live_', '51HfakeFAKEfake0123456789abcd'),
  privateKey: join(
    '-----BEGIN RSA ',
    'PRIVATE KEY-----\nMIIEowIBAAKCAQEAfakefakefakefake\nZmFrZWZha2VmYWtl\n-----END RSA ',
    'PRIVATE KEY-----',
  ),
  jwt: join(
    b64url({ alg: 'HS256', typ: 'JWT' }),
    '.',
    b64url({ sub: 'agent-7', exp: 1 }),
    '.',
    'c2lnbmF0dXJlLWZha2U',
  ),
  email: 'dora.explorer+tools@example.co.uk',
  visa: '4111111111111111',
  visaSpaced: '4111 1111 1111 1111',
  amexGrouped: '3782 822463 10005',
  mastercard: '5555555555554444',
  ssn: '123-45-6789',
  nino: 'AB 12 34 56 C',
  ninoCompact: 'JG103759A',
};
