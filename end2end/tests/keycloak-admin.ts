import { KEYCLOAK } from './helpers';

/** Keycloak's admin REST API, as the realm administrator of the development set-up. */
async function adminToken(): Promise<string> {
  const r = await fetch(`${KEYCLOAK}/realms/master/protocol/openid-connect/token`, {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'password', client_id: 'admin-cli', username: 'admin', password: 'admin' }),
  });
  if (!r.ok) throw new Error(`admin token: ${r.status}`);
  return (await r.json()).access_token;
}

/** Ends every Keycloak session of `username` in `realm`, as an administrator would. */
export async function adminLogout(realm: string, username: string) {
  const token = await adminToken();
  const headers = { Authorization: `Bearer ${token}` };
  const users = await (await fetch(`${KEYCLOAK}/admin/realms/${realm}/users?username=${username}&exact=true`, { headers })).json();
  const r = await fetch(`${KEYCLOAK}/admin/realms/${realm}/users/${users[0].id}/logout`, { method: 'POST', headers });
  if (r.status !== 204) throw new Error(`logout ${username}: ${r.status}`);
}
