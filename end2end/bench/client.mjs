// A browser's part of signing in, without a browser: a cookie jar, Keycloak's real login form,
// the admin token, and reading an event stream. Shared by the benchmark (bench/run.mjs) and the
// chaos soak (soak/run.mjs), which sign in hundreds of users through Keycloak's own pages.

export const KEYCLOAK = process.env.KEYCLOAK_URL ?? 'http://localhost:8080';

/** The cookies of one client (a browser, or Keycloak's side of one). */
export class Jar {
  constructor() { this.cookies = new Map(); }
  take(response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const at = pair.indexOf('=');
      const name = pair.slice(0, at).trim();
      const value = pair.slice(at + 1).trim();
      const expired = attrs.some((a) => /max-age=0/i.test(a.trim()) || /expires=thu, 01 jan 1970/i.test(a.trim()));
      if (expired || value === '') this.cookies.delete(name); else this.cookies.set(name, value);
    }
  }
  header() { return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '); }
}

/** GET without following redirects, with the jar's cookies; the jar takes what comes back. */
export async function get(url, jar, extra = {}) {
  const r = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header() }, ...extra });
  jar.take(r);
  return r;
}

/** Keycloak's login form for the authorization URL, filled in; returns the redirect back. */
export async function keycloakLogin(authUrl, user, password = `${user}-dev-pw`, extra = {}) {
  const kc = new Jar();
  const page = await get(authUrl, kc, extra);
  const html = await page.text();
  const action = html.match(/id="kc-form-login"[^>]*action="([^"]+)"/)?.[1] ?? html.match(/action="([^"]+)"/)?.[1];
  if (!action) throw new Error(`no Keycloak login form (${page.status})`);
  const r = await fetch(action.replaceAll('&amp;', '&'), {
    method: 'POST', redirect: 'manual',
    headers: { cookie: kc.header(), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ username: user, password, credentialId: '' }),
    ...extra,
  });
  await r.arrayBuffer();
  const back = r.headers.get('location');
  if (!back) throw new Error(`Keycloak refused ${user} (${r.status})`);
  return back;
}

/** An access token of Keycloak's master realm admin (KC_ADMIN_USER / KC_ADMIN_PASSWORD). */
export async function adminToken() {
  const r = await fetch(`${KEYCLOAK}/realms/master/protocol/openid-connect/token`, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'password', client_id: 'admin-cli',
      username: process.env.KC_ADMIN_USER ?? 'admin', password: process.env.KC_ADMIN_PASSWORD ?? 'admin',
    }),
  });
  if (!r.ok) throw new Error(`Keycloak's admin token: ${r.status}`);
  return (await r.json()).access_token;
}

/** Keycloak's admin REST API of `realm`: JSON in and out. */
export async function admin(token, realm, method, path, body) {
  const r = await fetch(`${KEYCLOAK}/admin/realms/${realm}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`Keycloak admin ${method} ${path}: ${r.status} ${text.slice(0, 200)}`);
  return text ? JSON.parse(text) : null;
}

/**
 * Reads a Server-Sent Events body (an event stream of the app), calling `onData` with the JSON of
 * each message's `data`, until the body ends or `stop()` says so after a chunk.
 */
export async function eachEvent(response, onData, stop = () => false) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let at;
    while ((at = buffer.indexOf('\n\n')) >= 0) {
      const data = buffer.slice(0, at).split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5)).join('');
      buffer = buffer.slice(at + 2);
      if (!data) continue;
      let parsed;
      try { parsed = JSON.parse(data); } catch { continue; }
      await onData(parsed);
    }
    if (stop()) return;
  }
}
