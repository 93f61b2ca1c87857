import { scanJson } from '@portcullis/dlp';

/**
 * An upstream's own words as the gateway logs them or puts them in an error (a line of a stdio
 * child's stderr, the message of a refused initialize): through DLP's detectors, so a token or an
 * address a tool printed never reaches the broker's log. Text DLP cannot inspect is not logged.
 */
export function upstreamText(text: string): string {
  try {
    return scanJson(text, 'redact').value as string;
  } catch {
    return '[REDACTED:uninspectable]';
  }
}
