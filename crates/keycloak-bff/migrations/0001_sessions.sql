-- The sessions of tower-sessions' SQLite store (the schema its SqliteStore reads and writes), and
-- the index of signed-in sessions by Keycloak session (sid) and user (sub) that back-channel
-- logout uses instead of a scan.
CREATE TABLE IF NOT EXISTS tower_sessions (
    id TEXT PRIMARY KEY NOT NULL,
    data BLOB NOT NULL,
    expiry_date INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS kc_session_index (
    session_id TEXT PRIMARY KEY NOT NULL,
    sid TEXT,
    sub TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS kc_session_index_sid ON kc_session_index (sid);
CREATE INDEX IF NOT EXISTS kc_session_index_sub ON kc_session_index (sub);
