-- Back-channel logout state that must survive a restart (catalogue F05): the ids of logout
-- tokens already used, and the Keycloak sessions (sid) already ended, each until it no longer
-- matters. Rows past `until_at` are swept with expired sessions.
CREATE TABLE IF NOT EXISTS kc_logout_jti (
    jti TEXT PRIMARY KEY NOT NULL,
    until_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS kc_ended_sid (
    sid TEXT PRIMARY KEY NOT NULL,
    until_at INTEGER NOT NULL
);
