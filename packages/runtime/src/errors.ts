/**
 * A failure with a stable, documented code. HTTP surfaces turn it into problem+json; the code is
 * what clients match on, the message is for humans.
 */
export class AppError extends Error {
  readonly code: string;
  readonly status: number;
  /** Whether the same request may succeed later (e.g. a dependency was briefly down). */
  readonly retry: boolean;

  constructor(
    code: string,
    message: string,
    options: { status?: number; retry?: boolean; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = options.status ?? 500;
    this.retry = options.retry ?? false;
  }
}

/** RFC 9457 problem details body. */
export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  detail?: string;
  code: string;
  retry?: boolean;
  [extension: string]: unknown;
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** Builds a problem+json body; `type` points at the error catalogue in the docs. */
export function problem(code: string, status: number, title: string, detail?: string): ProblemDetails {
  return {
    type: `https://portcullis.dev/errors/${code}`,
    title,
    status,
    code,
    ...(detail === undefined ? {} : { detail }),
  };
}
