//! Tokens at rest: the access, refresh and ID tokens of a stored session are sealed (AES-256-GCM,
//! a random nonce each time) before any backend sees them, so that a copy of the SQLite file, a
//! Redis dump, a `MONITOR` or a backup holds no usable token. Everything else in the record (the
//! user, the `sid`, the expiries, the generation) stays readable by the backends, which index and
//! order records by it.
//!
//! The key is derived from `session.secret`; `session.previous_secret` is still accepted for
//! opening, so that the secret can be rotated (set the new one, the old one as previous, and drop
//! the previous once the sessions it sealed have ended). Without a secret, a SQLite store keeps a
//! key generated once in `<file>.key` (owner-only permissions, beside the database), so a restart
//! keeps its sessions; the memory store makes one per process. A record written before sealing
//! existed is read as it is and sealed at its next save. Catalogue: G (sessions), E03.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use tower_sessions::session::Record;

/// The fields of a stored session that hold tokens.
const TOKEN_FIELDS: [&str; 3] = ["access_token", "refresh_token", "id_token"];

/// What starts a sealed field.
const SEALED: &str = "sealed:v1:";

/// A JWT's three base64url parts, decoded, each after its length (u16, big-endian): sealing the
/// bytes instead of their base64 keeps a sealed token about as long as the token itself.
const PACKED_JWT: u8 = b'J';
/// Any other token, as its text.
const PACKED_TEXT: u8 = b'T';

/// `token` as the bytes that are sealed: a JWT's parts decoded (when that round-trips exactly),
/// else its text.
fn pack(token: &str) -> Vec<u8> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() == 3 {
        let mut packed = vec![PACKED_JWT];
        let mut exact = true;
        for part in &parts {
            match URL_SAFE_NO_PAD.decode(part) {
                Ok(bytes)
                    if u16::try_from(bytes.len()).is_ok()
                        && URL_SAFE_NO_PAD.encode(&bytes) == *part =>
                {
                    packed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
                    packed.extend_from_slice(&bytes);
                }
                _ => {
                    exact = false;
                    break;
                }
            }
        }
        if exact {
            return packed;
        }
    }
    let mut packed = vec![PACKED_TEXT];
    packed.extend_from_slice(token.as_bytes());
    packed
}

/// The token [`pack`] made `packed` of.
fn unpack(packed: &[u8]) -> Result<String, String> {
    match packed.split_first() {
        Some((&PACKED_TEXT, text)) => {
            String::from_utf8(text.to_vec()).map_err(|_| "a sealed token is not text".to_owned())
        }
        Some((&PACKED_JWT, mut rest)) => {
            let mut parts = Vec::with_capacity(3);
            for _ in 0..3 {
                let (len, tail) = rest
                    .split_first_chunk::<2>()
                    .ok_or_else(|| "a sealed token is cut short".to_owned())?;
                let len = usize::from(u16::from_be_bytes(*len));
                if tail.len() < len {
                    return Err("a sealed token is cut short".into());
                }
                let (part, tail) = tail.split_at(len);
                parts.push(URL_SAFE_NO_PAD.encode(part));
                rest = tail;
            }
            Ok(parts.join("."))
        }
        _ => Err("a sealed token of an unknown kind".into()),
    }
}

/// How many opened tokens a [`Sealer`] remembers: the three of each of about a thousand
/// sessions in use. Past it, it forgets them all and opens again what is read next.
const REMEMBERED: usize = 3 * 1024;

/// The end of a sealed token's text, where its authentication tag is: what remembered tokens
/// are looked up by (each is then compared whole).
const TAIL: usize = 22;

/// A token opened once, kept with the sealed text it came from.
struct Opened {
    field: &'static str,
    sealed: Box<str>,
    token: String,
}

/// Seals and opens the token fields of session records.
///
/// A session in use is read on every request, and its tokens change only when they are
/// refreshed: what was opened (or sealed) lately is remembered by its sealed text, so that a
/// read compares that text instead of decrypting it again. Remembered tokens live in this
/// process's memory only, where the tokens of requests in flight are anyway.
pub struct Sealer {
    current: LessSafeKey,
    previous: Option<LessSafeKey>,
    random: SystemRandom,
    opened: Mutex<HashMap<[u8; TAIL], Opened>>,
    /// How many tokens it decrypted (tests).
    #[cfg(test)]
    decrypted: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").finish_non_exhaustive()
    }
}

/// A 32-byte key for sealing tokens, derived from a secret.
fn derived(secret: &[u8]) -> [u8; 32] {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, b"keycloak-bff: tokens at rest, v1");
    let mut out = [0u8; 32];
    out.copy_from_slice(&tag.as_ref()[..32]);
    out
}

fn aead_key(bytes: &[u8; 32]) -> Result<LessSafeKey, String> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| "cannot make the key that seals tokens".to_owned())
}

impl Sealer {
    /// From `session.secret`, and the previous one if it is being rotated.
    pub fn from_secret(secret: &[u8], previous: Option<&[u8]>) -> Result<Self, String> {
        Ok(Self {
            current: aead_key(&derived(secret))?,
            previous: previous.map(|p| aead_key(&derived(p))).transpose()?,
            random: SystemRandom::new(),
            opened: Mutex::default(),
            #[cfg(test)]
            decrypted: Default::default(),
        })
    }

    /// A key of this process alone (the memory store, tests).
    pub fn random() -> Result<Self, String> {
        let random = SystemRandom::new();
        let mut bytes = [0u8; 32];
        random
            .fill(&mut bytes)
            .map_err(|_| "no random source for the key that seals tokens".to_owned())?;
        Ok(Self {
            current: aead_key(&bytes)?,
            previous: None,
            random,
            opened: Mutex::default(),
            #[cfg(test)]
            decrypted: Default::default(),
        })
    }

    /// The key kept in `path` (32 random bytes, created with owner-only permissions when
    /// missing): a single process without `session.secret` keeps its sessions across restarts.
    #[cfg(any(test, feature = "sqlite"))]
    pub fn from_key_file(path: &std::path::Path) -> Result<Self, String> {
        let shown = path.display();
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut bytes)
                    .map_err(|_| "no random source for the key that seals tokens".to_owned())?;
                write_owner_only(path, &bytes).map_err(|e| format!("{shown}: {e}"))?;
                bytes.to_vec()
            }
            Err(e) => return Err(format!("{shown}: {e}")),
        };
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| format!("{shown}: not a key of 32 bytes"))?;
        Ok(Self {
            current: aead_key(&key)?,
            previous: None,
            random: SystemRandom::new(),
            opened: Mutex::default(),
            #[cfg(test)]
            decrypted: Default::default(),
        })
    }

    /// `record` with its token fields sealed (those sealed already are left as they are).
    pub fn seal(&self, record: &Record) -> Result<Record, String> {
        let mut sealed = record.clone();
        let Some(Value::Object(auth)) = sealed.data.get_mut(super::AUTH_KEY) else {
            return Ok(sealed);
        };
        for field in TOKEN_FIELDS {
            if let Some(Value::String(token)) = auth.get_mut(field) {
                if !token.starts_with(SEALED) {
                    let sealed = self.seal_one(field, token)?;
                    self.remember(field, &sealed[SEALED.len()..], token);
                    *token = sealed;
                }
            }
        }
        Ok(sealed)
    }

    /// `record` with its token fields opened; an error when one was sealed with a key this
    /// process does not have (the session cannot be used).
    pub fn open(&self, mut record: Record) -> Result<Record, String> {
        let Some(Value::Object(auth)) = record.data.get_mut(super::AUTH_KEY) else {
            return Ok(record);
        };
        for field in TOKEN_FIELDS {
            if let Some(Value::String(token)) = auth.get_mut(field) {
                if let Some(sealed) = token.strip_prefix(SEALED) {
                    *token = self.open_one(field, sealed)?;
                }
            }
        }
        Ok(record)
    }

    fn seal_one(&self, field: &str, token: &str) -> Result<String, String> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| "no random source for a nonce".to_owned())?;
        let mut data = pack(token);
        self.current
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(field.as_bytes()),
                &mut data,
            )
            .map_err(|_| "cannot seal a token".to_owned())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{SEALED}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// The token sealed as `sealed` (without its prefix) in `field`: remembered, or opened and
    /// then remembered.
    fn open_one(&self, field: &'static str, sealed: &str) -> Result<String, String> {
        let tail = tail_of(sealed);
        if let (Some(tail), Ok(opened)) = (tail, self.opened.lock()) {
            if let Some(known) = opened
                .get(&tail)
                .filter(|o| o.field == field && *o.sealed == *sealed)
            {
                return Ok(known.token.clone());
            }
        }
        let token = self.decrypt(field, sealed)?;
        self.remember(field, sealed, &token);
        Ok(token)
    }

    fn remember(&self, field: &'static str, sealed: &str, token: &str) {
        let (Some(tail), Ok(mut opened)) = (tail_of(sealed), self.opened.lock()) else {
            return;
        };
        if opened.len() >= REMEMBERED {
            opened.clear();
        }
        opened.insert(
            tail,
            Opened {
                field,
                sealed: sealed.into(),
                token: token.to_owned(),
            },
        );
    }

    fn decrypt(&self, field: &str, sealed: &str) -> Result<String, String> {
        #[cfg(test)]
        self.decrypted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| "a sealed token is not base64url".to_owned())?;
        if bytes.len() < NONCE_LEN {
            return Err("a sealed token is too short".into());
        }
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        for key in std::iter::once(&self.current).chain(self.previous.as_ref()) {
            let nonce = Nonce::try_assume_unique_for_key(nonce)
                .map_err(|_| "a sealed token's nonce".to_owned())?;
            let mut data = data.to_vec();
            if let Ok(plain) = key.open_in_place(nonce, Aad::from(field.as_bytes()), &mut data) {
                return unpack(plain);
            }
        }
        Err(
            "a token sealed with a key this process does not have (session.secret changed \
             without session.previous_secret?)"
                .into(),
        )
    }
}

/// The last [`TAIL`] characters of a sealed token's text (its tag), if it is that long.
fn tail_of(sealed: &str) -> Option<[u8; TAIL]> {
    let start = sealed.len().checked_sub(TAIL)?;
    sealed.as_bytes().get(start..)?.try_into().ok()
}

/// Writes `bytes` to a new file `path` that only its owner can read.
#[cfg(any(test, feature = "sqlite"))]
fn write_owner_only(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A token shaped like a JWT (made here: no token is written in the source).
    fn jwt(header: &str, claims: &str, signature: &[u8]) -> String {
        [header.as_bytes(), claims.as_bytes(), signature]
            .map(|part| URL_SAFE_NO_PAD.encode(part))
            .join(".")
    }

    fn signed_in(sid: &str, sub: &str, _expires_in: i64) -> Record {
        let mut data = HashMap::new();
        data.insert(
            super::super::AUTH_KEY.to_owned(),
            serde_json::json!({
                "user": {"subject": sub}, "sid": sid, "generation": 2,
                "access_token": jwt(r#"{"alg":"RS256"}"#, r#"{"typ":"Bearer"}"#, b"access signature"),
                "refresh_token": jwt(r#"{"alg":"HS512"}"#, r#"{"typ":"Refresh"}"#, b"refresh signature"),
                "id_token": jwt(r#"{"alg":"RS256"}"#, r#"{"typ":"ID"}"#, b"id signature"),
            }),
        );
        Record {
            id: tower_sessions::session::Id::default(),
            data,
            expiry_date: time::OffsetDateTime::now_utc() + time::Duration::seconds(600),
        }
    }

    fn tokens(record: &Record) -> Vec<String> {
        TOKEN_FIELDS
            .iter()
            .filter_map(|f| {
                record.data[super::super::AUTH_KEY][f]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    }

    #[test]
    fn sealed_tokens_are_unreadable_and_open_to_the_same_key_only() {
        let sealer = Sealer::from_secret(b"one secret of 32 bytes or more....", None)
            .unwrap_or_else(|e| panic!("{e}"));
        let record = signed_in("sid-1", "alice", 600);
        let plain = tokens(&record);
        assert_eq!(plain.len(), 3);
        let sealed = sealer.seal(&record).unwrap_or_else(|e| panic!("{e}"));
        let text = serde_json::to_string(&sealed).unwrap_or_default();
        for token in &plain {
            assert!(!text.contains(token.as_str()), "{token} in {text}");
        }
        assert!(text.contains("sid-1"), "the index's fields stay readable");
        assert_eq!(
            sealer.seal(&sealed).map(|r| tokens(&r)),
            Ok(tokens(&sealed)),
            "once"
        );
        let opened = sealer
            .open(sealed.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tokens(&opened), plain);
        let stranger = Sealer::from_secret(b"another secret of 32 bytes or more", None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(stranger.open(sealed.clone()).is_err());
        // Rotation: the new secret, the old one as previous.
        let rotated = Sealer::from_secret(
            b"another secret of 32 bytes or more",
            Some(&b"one secret of 32 bytes or more...."[..]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rotated.open(sealed).map(|r| tokens(&r)), Ok(plain.clone()));
        // A record from before sealing is read as it is.
        assert_eq!(sealer.open(record).map(|r| tokens(&r)), Ok(plain));
    }

    #[test]
    fn a_jwt_is_sealed_as_its_decoded_parts_and_comes_back_exactly_and_other_tokens_as_text() {
        let token = jwt(
            r#"{"alg":"RS256","kid":"k1"}"#,
            r#"{"sub":"alice","exp":1796000000}"#,
            b"signature-bytes",
        );
        let packed = pack(&token);
        assert_eq!(packed[0], PACKED_JWT);
        assert!(
            packed.len() < token.len(),
            "{} bytes for {}",
            packed.len(),
            token.len()
        );
        assert_eq!(unpack(&packed).as_deref(), Ok(token.as_str()));
        for other in [
            "opaque-refresh-token",
            "a.b",
            "not.base64!.x",
            "",
            "eyJ.eyJ.==",
        ] {
            let packed = pack(other);
            assert_eq!(unpack(&packed).as_deref(), Ok(other), "{other}");
        }
        assert!(unpack(&[PACKED_JWT, 0, 9, 1]).is_err(), "cut short");
        assert!(unpack(b"X").is_err());
        // Sealed, a JWT takes about as much room as in clear.
        let sealer = Sealer::random().unwrap_or_else(|e| panic!("{e}"));
        let sealed = sealer
            .seal_one("access_token", &token)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            sealed.len() < token.len() + 60,
            "{} for {}",
            sealed.len(),
            token.len()
        );
        assert_eq!(
            sealer
                .open_one("access_token", &sealed[SEALED.len()..])
                .as_deref(),
            Ok(token.as_str())
        );
    }

    #[test]
    fn a_session_read_again_is_not_decrypted_again_and_an_altered_token_is_still_refused() {
        let sealer = Sealer::random().unwrap_or_else(|e| panic!("{e}"));
        let record = signed_in("sid-3", "carol", 600);
        let sealed = sealer.seal(&record).unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..3 {
            let opened = sealer
                .open(sealed.clone())
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(tokens(&opened), tokens(&record));
        }
        let decrypted = || sealer.decrypted.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(decrypted(), 0, "what it sealed, it remembers");

        let sealed_field = |record: &Record, field: &str| {
            record.data[super::super::AUTH_KEY][field]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        let with_field = |field: &str, text: String| {
            let mut r = sealed.clone();
            if let Some(Value::Object(auth)) = r.data.get_mut(super::super::AUTH_KEY) {
                auth.insert(field.to_owned(), Value::String(text));
            }
            r
        };
        // One character changed in the middle, the tail kept: not the remembered token.
        let access = sealed_field(&sealed, "access_token");
        let middle = access.len() / 2;
        let flipped = if access.as_bytes()[middle] == b'A' {
            "B"
        } else {
            "A"
        };
        let altered = format!("{}{flipped}{}", &access[..middle], &access[middle + 1..]);
        assert_eq!(tail_of(&altered), tail_of(&access));
        assert!(sealer.open(with_field("access_token", altered)).is_err());
        // The ID token's sealed text in the access token's field: sealed for another field.
        let id = sealed_field(&sealed, "id_token");
        assert!(sealer.open(with_field("access_token", id)).is_err());
        assert_eq!(decrypted(), 2, "both were decrypted, and refused");
    }

    #[test]
    fn past_the_tokens_it_remembers_a_sealer_opens_them_again() {
        let sealer = Sealer::random().unwrap_or_else(|e| panic!("{e}"));
        let first = signed_in("sid-0", "dave", 600);
        let first_sealed = sealer.seal(&first).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..=REMEMBERED / 3 {
            let _ = sealer.seal(&signed_in(&format!("sid-{i}"), "dave", 600));
        }
        assert!(sealer.opened.lock().map(|o| o.len()).unwrap_or(0) <= REMEMBERED);
        let opened = sealer.open(first_sealed).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tokens(&opened), tokens(&first));
        assert_eq!(
            sealer.decrypted.load(std::sync::atomic::Ordering::Relaxed),
            3,
            "forgotten, so opened again"
        );
    }

    #[test]
    fn a_key_file_is_made_once_for_its_owner_alone_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("sessions.sqlite3.key");
        let record = signed_in("sid-2", "bob", 600);
        let sealed = Sealer::from_key_file(&path)
            .and_then(|s| s.seal(&record))
            .unwrap_or_else(|e| panic!("{e}"));
        let mode = std::fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o600);
        let again = Sealer::from_key_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.open(sealed).map(|r| tokens(&r)), Ok(tokens(&record)));
    }
}
