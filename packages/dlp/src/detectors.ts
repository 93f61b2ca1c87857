/**
 * The DLP detectors: secrets and personal data, each a prefilter (a cheap literal test that must
 * pass before the regular expression runs), a linear-time pattern, and where the format has one,
 * a structural check (Luhn, SSN and NINO allocation rules, JWT header) that turns "looks like"
 * into "is". Patterns avoid nested quantifiers, so scanning stays linear on hostile input.
 */

export type FindingKind = 'secret' | 'personal_data';

export type DetectorType =
  | 'aws_access_key'
  | 'aws_secret_key'
  | 'gcp_api_key'
  | 'gcp_service_account_key'
  | 'github_token'
  | 'gitlab_token'
  | 'slack_token'
  | 'slack_webhook'
  | 'stripe_key'
  | 'private_key'
  | 'jwt'
  | 'email'
  | 'payment_card'
  | 'us_ssn'
  | 'uk_nino';

/** A finding inside one string: the detector and the half-open UTF-16 span [start, end). */
export interface TextFinding {
  type: DetectorType;
  kind: FindingKind;
  start: number;
  end: number;
}

interface PatternDetector {
  type: DetectorType;
  kind: FindingKind;
  /** Returns false when the pattern cannot match, so the regex is skipped. */
  prefilter: (text: string) => boolean;
  /** Global; capture group `secret`, when present, is the span reported (the rest is context). */
  pattern: RegExp;
  validate?: (match: string) => boolean;
}

const has =
  (...needles: string[]) =>
  (text: string) =>
    needles.some((needle) => text.includes(needle));
const test = (pattern: RegExp) => (text: string) => pattern.test(text);

/** Luhn (mod 10) check over a string of digits. */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/** Issuer prefixes and lengths of the card networks in use (ISO/IEC 7812 IIN ranges). */
function cardNetworkKnown(digits: string): boolean {
  const n = digits.length;
  const two = Number(digits.slice(0, 2));
  const four = Number(digits.slice(0, 4));
  const three = Number(digits.slice(0, 3));
  if (digits[0] === '4') return n === 13 || n === 16 || n === 19; // Visa
  if (two >= 51 && two <= 55) return n === 16; // Mastercard
  if (four >= 2221 && four <= 2720) return n === 16; // Mastercard 2-series
  if (two === 34 || two === 37) return n === 15; // American Express
  if (four === 6011 || two === 65 || (three >= 644 && three <= 649)) return n >= 16 && n <= 19; // Discover
  if (four >= 3528 && four <= 3589) return n >= 16 && n <= 19; // JCB
  if (two === 36 || two === 38 || (three >= 300 && three <= 305)) return n >= 14 && n <= 19; // Diners
  if (two === 62) return n >= 16 && n <= 19; // UnionPay
  return false;
}

function cardValid(match: string): boolean {
  const digits = match.replace(/[ -]/g, '');
  return digits.length >= 13 && digits.length <= 19 && cardNetworkKnown(digits) && luhnValid(digits);
}

/** US SSN allocation rules: no 000, 666 or 9xx area, no 00 group, no 0000 serial. */
function ssnValid(match: string): boolean {
  const [area, group, serial] = match.split('-') as [string, string, string];
  return area !== '000' && area !== '666' && area[0] !== '9' && group !== '00' && serial !== '0000';
}

/** UK National Insurance number prefix rules (HMRC NIM39110). */
function ninoValid(match: string): boolean {
  const prefix = match.slice(0, 2).toUpperCase();
  if ('DFIQUV'.includes(prefix[0]!) || 'DFIOQUV'.includes(prefix[1]!)) return false;
  return !['BG', 'GB', 'KN', 'NK', 'NT', 'TN', 'ZZ'].includes(prefix);
}

/** A JWT's header is base64url JSON naming an algorithm. */
function jwtValid(match: string): boolean {
  const header = match.slice(0, match.indexOf('.'));
  try {
    const decoded = JSON.parse(Buffer.from(header, 'base64url').toString('utf8')) as { alg?: unknown };
    return typeof decoded === 'object' && decoded !== null && typeof decoded.alg === 'string';
  } catch {
    return false;
  }
}

const B64 = 'A-Za-z0-9/+';

export const PATTERN_DETECTORS: readonly PatternDetector[] = [
  {
    type: 'private_key',
    kind: 'secret',
    prefilter: has('PRIVATE KEY-----'),
    // A truncated key (no END line) is still a key: the match runs to the end of the string. The
    // body may hold single dashes (an encrypted key's `Proc-Type:` and `DEK-Info:` headers), never
    // the dashes of the END line; linear either way (a dash is consumed only when no END follows).
    pattern:
      /-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY-----[^-]*(?:-(?!----END)[^-]*)*(?:-----END[A-Z0-9 ]{0,40} PRIVATE KEY-----)?/g,
  },
  {
    type: 'aws_access_key',
    kind: 'secret',
    prefilter: test(/A(?:KIA|SIA|BIA|CCA|3T)/),
    // Access key ids: a type prefix then 16 characters of base32 (A-Z, 2-7).
    pattern: /(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z2-7]{16}(?![A-Z0-9])/g,
  },
  {
    type: 'aws_secret_key',
    kind: 'secret',
    prefilter: (text) => /secret/i.test(text),
    // 40 base64 characters are everywhere; only the name next to them makes them an AWS secret.
    pattern: new RegExp(
      `(?:aws)?_?secret_?(?:access)?_?key["']?\\s{0,5}[:=]\\s{0,5}["']?(?<secret>[${B64}]{40})(?![${B64}])`,
      'gi',
    ),
  },
  {
    type: 'gcp_api_key',
    kind: 'secret',
    prefilter: has('AIza'),
    pattern: /(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])/g,
  },
  {
    type: 'gcp_service_account_key',
    kind: 'secret',
    prefilter: has('private_key_id'),
    // A service-account key file's key id (its private_key is caught as a PEM private key).
    pattern: /"private_key_id"\s{0,5}:\s{0,5}"(?<secret>[0-9a-f]{40})"/g,
  },
  {
    type: 'github_token',
    kind: 'secret',
    prefilter: test(/gh[pousr]_|github_pat_/),
    pattern: /(?<!\w)(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{82})(?!\w)/g,
  },
  {
    type: 'gitlab_token',
    kind: 'secret',
    prefilter: test(/gl(?:pat|dt|rt|ptt)-/),
    pattern: /(?<![\w-])(?:glpat|gldt|glrt|glptt)-[A-Za-z0-9_-]{20,}(?:\.[A-Za-z0-9_-]+)*(?![\w-])/g,
  },
  {
    type: 'slack_token',
    kind: 'secret',
    prefilter: has('xox'),
    pattern: /(?<![\w-])xox[abposre]-[0-9A-Za-z]{1,}-[0-9A-Za-z-]{8,}(?![\w-])/g,
  },
  {
    type: 'slack_webhook',
    kind: 'secret',
    prefilter: has('hooks.slack.com'),
    pattern: /https:\/\/hooks\.slack\.com\/(?:services|workflows)\/[A-Za-z0-9/_-]{20,}/g,
  },
  {
    type: 'stripe_key',
    kind: 'secret',
    prefilter: test(/_(?:live|test)_/),
    // Secret and restricted keys; publishable keys (pk_) are public by design.
    pattern: /(?<!\w)(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{24,247}(?!\w)/g,
  },
  {
    type: 'jwt',
    kind: 'secret',
    prefilter: has('eyJ'),
    pattern: /(?<![\w-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*(?![\w-])/g,
    validate: jwtValid,
  },
  {
    type: 'payment_card',
    kind: 'personal_data',
    prefilter: test(/\d{4}[ -]?\d{4}/),
    // Unbroken 13-19 digits, or groups of four (Amex: 4-6-5, Diners: 4-6-4) with one kind of
    // separator. An underscore may come before (`invoice_4111…`): a letter, digit or dash may not.
    pattern:
      /(?<![A-Za-z0-9-])(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}|\d{4}([ -])\d{6}\2\d{4,5})(?![\w-])/g,
    validate: cardValid,
  },
  {
    type: 'us_ssn',
    kind: 'personal_data',
    prefilter: test(/\d{3}-\d\d-\d{4}/),
    pattern: /(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])/g,
    validate: ssnValid,
  },
  {
    type: 'uk_nino',
    kind: 'personal_data',
    prefilter: test(/\d\d ?\d\d ?\d\d ?[A-Da-d]/),
    // Written in lower case too (`ab123456c`).
    pattern: /(?<![A-Za-z0-9])[A-CEGHJ-PR-TW-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])/gi,
    validate: ninoValid,
  },
];

/**
 * The union of every detector's prefilter: a string that fails it cannot hold a finding. A few
 * regexes with rare first characters and plain `includes` scan about 3x faster here than one
 * regex alternating over every anchor (which tries many branches at each position).
 */
const ANCHORS = [
  /A(?:KIA|SIA|BIA|CCA|3T|Iza)/,
  /secret/i,
  /g(?:h[pousr]_|ithub_pat_|l(?:pat|dt|rt|ptt)-)/,
  /_(?:live|test)_/,
  /\d(?:\d{3}[ -]?\d{4}|\d\d-\d\d-\d{4}|\d ?\d\d ?\d\d ?[A-Da-d])/,
];
const LITERALS = ['@', 'eyJ', 'xox', 'PRIVATE KEY-----', 'private_key_id', 'hooks.slack.com'];
function triggered(text: string): boolean {
  for (const literal of LITERALS) if (text.includes(literal)) return true;
  for (const anchor of ANCHORS) if (anchor.test(text)) return true;
  return false;
}

const EMAIL_LOCAL = /[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]/;
const EMAIL_DOMAIN = /[A-Za-z0-9.-]/;

/**
 * E-mail addresses, found from each '@' outwards. A regex with a character-class run before '@'
 * would backtrack quadratically over long '@'-free text (base64 blobs); this walk is linear.
 */
function findEmails(text: string, out: TextFinding[]): void {
  let at = text.indexOf('@');
  while (at !== -1) {
    let start = at;
    while (start > 0 && at - start < 64 && EMAIL_LOCAL.test(text[start - 1]!)) start--;
    let end = at + 1;
    while (end < text.length && end - at <= 253 && EMAIL_DOMAIN.test(text[end]!)) end++;
    // Trailing dots and dashes belong to the sentence, not the domain.
    while (end > at + 1 && (text[end - 1] === '.' || text[end - 1] === '-')) end--;
    while (start < at && text[start] === '.') start++;
    const domain = text.slice(at + 1, end);
    if (start < at && /^[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,63}$/.test(domain)) {
      out.push({ type: 'email', kind: 'personal_data', start, end });
    }
    at = text.indexOf('@', Math.max(end, at + 1));
  }
}

/**
 * The shortest run of base64 or base64url characters decoded: 18 bytes once decoded, enough for
 * an AWS access key id (28 characters encoded) and most tokens.
 */
const BASE64_MIN = 24;
/**
 * Runs up to this length are decoded when they start like text (a log file or an export in a
 * resource blob can be megabytes long); the scan's own text budget bounds what one value costs
 * long before this. Longer runs are not decoded.
 */
const BASE64_MAX = 64 << 20;

/**
 * Whether decoded bytes look like the text a secret hides in: no control bytes but those text
 * carries (tab, line feed, vertical tab, form feed, return, and escape for a terminal's colours),
 * and at most a quarter outside ASCII. Random data fails the first within a few dozen bytes; hex
 * digests, which are base64 characters too, fail the second.
 */
function textLike(bytes: Buffer): boolean {
  let nonAscii = 0;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    if ((byte < 0x20 && !TEXT_CONTROL[byte]) || byte === 0x7f) return false;
    if (byte >= 0x80) nonAscii++;
  }
  return nonAscii * 4 <= bytes.length;
}
const TEXT_CONTROL = new Uint8Array(32);
for (const byte of [0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1b]) TEXT_CONTROL[byte] = 1;

/** 1 for the characters of both base64 alphabets: A–Z, a–z, 0–9, + / - _. */
const BASE64_CHAR = new Uint8Array(128);
for (const char of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_')
  BASE64_CHAR[char.charCodeAt(0)] = 1;
const isBase64Char = (code: number) => code < 128 && BASE64_CHAR[code] === 1;
const NOT_BASE64 = /[^A-Za-z0-9+/_-]/g;

/**
 * Secrets and personal data hidden in base64: each long run that decodes to text is scanned, and
 * a finding inside makes the whole run one finding of that type (the run is what is redacted).
 * Random data and binary files decode to control bytes within their first 48 bytes, so most runs
 * cost a 64-character decode.
 */
function findEncoded(text: string, out: TextFinding[]): void {
  // Every run of BASE64_MIN characters or more covers one of the positions probed here, one in
  // every BASE64_MIN: prose is skipped at about 1 ns a character (a regex for the runs made DLP on
  // ordinary text three times slower). A probe inside a run finds the run's ends and jumps past it.
  const length = text.length;
  let probe = BASE64_MIN - 1;
  while (probe < length) {
    if (!isBase64Char(text.charCodeAt(probe))) {
      probe += BASE64_MIN;
      continue;
    }
    let start = probe;
    while (start > 0 && isBase64Char(text.charCodeAt(start - 1))) start--;
    // The run's end, found in native code (a long blob would cost a JavaScript loop ~3 ns a character).
    NOT_BASE64.lastIndex = probe;
    const runEnd = NOT_BASE64.exec(text)?.index ?? length;
    let end = runEnd;
    while (end < length && end - runEnd < 2 && text.charCodeAt(end) === 0x3d) end++; // '=' padding
    if (runEnd - start >= BASE64_MIN) decodeAndScan(text, start, end, out);
    probe = end + BASE64_MIN - 1; // a run may start right at `end`
  }
}

/** Decodes text[start, end) if it may be text, and records it whole if what it decodes to has a finding. */
function decodeAndScan(text: string, start: number, end: number, out: TextFinding[]): void {
  if (end - start > BASE64_MAX) return;
  const run = text.slice(start, end);
  if (!textLike(Buffer.from(run.slice(0, 64), 'base64'))) return;
  const bytes = Buffer.from(run, 'base64');
  if (!textLike(bytes)) return;
  // Text in another encoding than UTF-8 (a Latin-1 export): read byte for byte, which finds every
  // detector's match all the same (they are ASCII).
  const utf8 = bytes.toString('utf8');
  const decoded = utf8.includes('\uFFFD') ? bytes.toString('latin1') : utf8;
  const inner: TextFinding[] = [];
  findPlain(decoded, inner);
  const first = inner[0];
  if (first) out.push({ type: first.type, kind: first.kind, start, end });
}

/** The detectors and the e-mail walk over one string, as written (nothing decoded). */
function findPlain(text: string, out: TextFinding[]): void {
  // Nothing any detector finds is shorter than a minimal e-mail address (a@b.co); and most strings
  // contain none of the detectors' anchors, which `triggered` rules out cheaply.
  if (text.length < 6 || !triggered(text)) return;
  for (const detector of PATTERN_DETECTORS) {
    if (!detector.prefilter(text)) continue;
    detector.pattern.lastIndex = 0;
    for (const match of text.matchAll(detector.pattern)) {
      if (detector.validate && !detector.validate(match[0])) continue;
      const secret = match.groups?.secret;
      const start = secret === undefined ? match.index : match.index + match[0].lastIndexOf(secret);
      const end = start + (secret ?? match[0]).length;
      out.push({ type: detector.type, kind: detector.kind, start, end });
    }
  }
  if (text.includes('@')) findEmails(text, out);
}

/**
 * Every finding in one string of the kinds asked for (default: all), in order of position, as
 * reported: findings that overlap form a group, and a group reports one finding per kind (the
 * earliest, longest). So a secret inside an e-mail-shaped string (`https://ghp_…@github.com`) is
 * reported as a secret as well as an address: dropping the one that starts later let the token
 * through whenever the policy acted on secrets and allowed personal data. What to redact is every
 * finding's span (findAll, redactionSpans), not only the reported ones'.
 */
export function scanText(text: string, kinds?: ReadonlySet<FindingKind>): TextFinding[] {
  return reported(findAll(text, kinds));
}

/** Every finding of the kinds asked for, overlapping or not, earlier first (longer first at a tie). */
export function findAll(text: string, kinds?: ReadonlySet<FindingKind>): TextFinding[] {
  const all: TextFinding[] = [];
  findPlain(text, all);
  if (text.length >= BASE64_MIN) findEncoded(text, all);
  const found = kinds === undefined ? all : all.filter((finding) => kinds.has(finding.kind));
  if (found.length > 1) found.sort((a, b) => a.start - b.start || b.end - a.end);
  return found;
}

/** One finding per kind per group of overlapping findings (see scanText), from findAll's order. */
export function reported(found: readonly TextFinding[]): TextFinding[] {
  if (found.length <= 1) return [...found];
  const kept: TextFinding[] = [];
  let groupEnd = -1;
  const groupKinds = new Set<FindingKind>();
  for (const finding of found) {
    if (finding.start >= groupEnd) groupKinds.clear();
    if (!groupKinds.has(finding.kind)) {
      kept.push(finding);
      groupKinds.add(finding.kind);
    }
    groupEnd = Math.max(groupEnd, finding.end);
  }
  return kept;
}

/**
 * The spans to replace for findings in position order (scanText's): overlapping ones merged into
 * one, labelled by its secret if it holds one (the more dangerous thing to name), else by its first.
 */
export function redactionSpans(
  findings: readonly TextFinding[],
): { type: DetectorType; start: number; end: number }[] {
  const spans: { type: DetectorType; kind: FindingKind; start: number; end: number }[] = [];
  for (const finding of findings) {
    const last = spans[spans.length - 1];
    if (last && finding.start < last.end) {
      last.end = Math.max(last.end, finding.end);
      if (last.kind !== 'secret' && finding.kind === 'secret') {
        last.type = finding.type;
        last.kind = 'secret';
      }
    } else spans.push({ ...finding });
  }
  return spans.map(({ type, start, end }) => ({ type, start, end }));
}
