/**
 * Calls the decision service's API for CLI commands (PORTCULLIS_API_URL, PORTCULLIS_API_TOKEN).
 * A problem+json answer becomes an Error with its status, code, title and detail.
 */
export async function callApi(method: string, path: string, body?: unknown): Promise<unknown> {
  const base = process.env.PORTCULLIS_API_URL;
  const token = process.env.PORTCULLIS_API_TOKEN;
  if (!base || !token) throw new Error('set PORTCULLIS_API_URL and PORTCULLIS_API_TOKEN for this command');
  const response = await fetch(new URL(path, base), {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  let parsed: Record<string, unknown> = {};
  try {
    parsed = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  } catch {
    parsed = { title: text };
  }
  if (!response.ok) {
    const detail = typeof parsed.detail === 'string' ? `: ${parsed.detail}` : '';
    throw new Error(
      `${response.status} ${parsed.code ?? ''} ${parsed.title ?? ''}${detail}`.replace(/ +/g, ' '),
    );
  }
  return parsed;
}
