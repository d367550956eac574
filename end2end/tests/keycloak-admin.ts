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

/** The users of `realm` named exactly `username`: none or one. */
async function usersNamed(realm: string, username: string, token: string): Promise<{ id: string }[]> {
  const r = await fetch(`${KEYCLOAK}/admin/realms/${realm}/users?username=${username}&exact=true`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  return r.json();
}

/** Ends every Keycloak session of `username` in `realm`, as an administrator would. */
export async function adminLogout(realm: string, username: string) {
  const token = await adminToken();
  const [user] = await usersNamed(realm, username, token);
  const r = await fetch(`${KEYCLOAK}/admin/realms/${realm}/users/${user.id}/logout`, {
    method: 'POST', headers: { Authorization: `Bearer ${token}` },
  });
  if (r.status !== 204) throw new Error(`logout ${username}: ${r.status}`);
}

/** A user's access token from the tests-only client `api-tester` (password grant). */
export async function userToken(realm: string, username: string): Promise<string> {
  const r = await fetch(`${KEYCLOAK}/realms/${realm}/protocol/openid-connect/token`, {
    method: 'POST',
    body: new URLSearchParams({ grant_type: 'password', client_id: 'api-tester', username, password: `${username}-dev-pw` }),
  });
  if (!r.ok) throw new Error(`token of ${username}: ${r.status}`);
  return (await r.json()).access_token;
}

/** Keycloak's id of `username` in `realm`. */
export async function userId(realm: string, username: string): Promise<string> {
  const [user] = await usersNamed(realm, username, await adminToken());
  return user.id;
}

/** A throw-away user of `realm` (password `<username>-dev-pw`); its name. Deleted with
 * [`deleteUser`]. */
export async function createUser(realm: string, prefix: string): Promise<string> {
  const token = await adminToken();
  const username = `${prefix}-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
  const r = await fetch(`${KEYCLOAK}/admin/realms/${realm}/users`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      username, enabled: true, emailVerified: true, email: `${username}@example.test`,
      firstName: 'Test', lastName: prefix,
      credentials: [{ type: 'password', value: `${username}-dev-pw`, temporary: false }],
    }),
  });
  if (r.status !== 201) throw new Error(`create ${username}: ${r.status}`);
  return username;
}

/** Grants the user `username` of `realm` the realm role `role`. */
export async function grantRealmRole(realm: string, username: string, role: string) {
  const token = await adminToken();
  const headers = { Authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const id = await userId(realm, username);
  const rep = await (await fetch(`${KEYCLOAK}/admin/realms/${realm}/roles/${role}`, { headers })).json();
  const r = await fetch(`${KEYCLOAK}/admin/realms/${realm}/users/${id}/role-mappings/realm`, {
    method: 'POST', headers, body: JSON.stringify([rep]),
  });
  if (r.status !== 204) throw new Error(`grant ${role} to ${username}: ${r.status}`);
}

/** Grants the user `username` of `realm` the role `role` of the realm's client `clientId`. */
export async function grantClientRole(realm: string, username: string, clientId: string, role: string) {
  const token = await adminToken();
  const headers = { Authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const id = await userId(realm, username);
  const clients = await (await fetch(`${KEYCLOAK}/admin/realms/${realm}/clients?clientId=${clientId}`, { headers })).json();
  const client = clients[0].id;
  const rep = await (await fetch(`${KEYCLOAK}/admin/realms/${realm}/clients/${client}/roles/${role}`, { headers })).json();
  const r = await fetch(`${KEYCLOAK}/admin/realms/${realm}/users/${id}/role-mappings/clients/${client}`, {
    method: 'POST', headers, body: JSON.stringify([rep]),
  });
  if (r.status !== 204) throw new Error(`grant ${clientId}'s ${role} to ${username}: ${r.status}`);
}

/** Whether `realm` has a user named `username`. */
export async function userExists(realm: string, username: string): Promise<boolean> {
  return (await usersNamed(realm, username, await adminToken())).length > 0;
}

/** Deletes the user `username` of `realm`. */
export async function deleteUser(realm: string, username: string) {
  const token = await adminToken();
  const id = await userId(realm, username);
  await fetch(`${KEYCLOAK}/admin/realms/${realm}/users/${id}`, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` } });
}
