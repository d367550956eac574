//! The memory backend of [`AuthStore`](super::AuthStore) (`session.store = "memory"`): records,
//! their `sid`/`sub` index, ended Keycloak sessions and used logout tokens in this process's maps.
//! Gone at restart; for tests and throw-away runs. Expired records are freed by the sweep
//! (tower-sessions' own `MemoryStore` never frees them). Every method holds the one lock for its
//! whole step, so each is atomic. Catalogue: D02–D04 hold as in the other backends (the shared
//! tests in `store/mod.rs` run on all three); A09: the logout-token guard is bounded.

use super::{expires_at, identity, may_replace, store_error, Backend, Identity, Saved};
use std::collections::HashMap;
use std::sync::Mutex;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;

/// Beyond this many remembered logout tokens, new ones are refused rather than the memory grown
/// without bound under a flood (only tokens Keycloak signed get this far).
const MAX_LOGOUT_JTIS: usize = 100_000;

#[derive(Debug, Default)]
struct Maps {
    records: HashMap<Id, Record>,
    /// Which app sessions belong to which Keycloak session and user, until when.
    index: HashMap<String, (Identity, i64)>,
    logout_jtis: HashMap<String, i64>,
    ended_sids: HashMap<String, i64>,
}

impl Maps {
    fn index(&mut self, record: &Record) {
        let id = record.id.to_string();
        match identity(record) {
            Some(entry) => self.index.insert(id, (entry, expires_at(record))),
            None => self.index.remove(&id),
        };
    }
}

/// Sessions in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    maps: Mutex<Maps>,
}

impl MemoryBackend {
    fn maps(&self) -> session_store::Result<std::sync::MutexGuard<'_, Maps>> {
        self.maps.lock().map_err(store_error)
    }
}

#[async_trait::async_trait]
impl Backend for MemoryBackend {
    async fn load(&self, id: &Id, now: i64) -> session_store::Result<Option<Record>> {
        Ok(self
            .maps()?
            .records
            .get(id)
            .filter(|r| expires_at(r) > now)
            .cloned())
    }

    async fn create(&self, record: &mut Record, _now: i64) -> session_store::Result<()> {
        let mut maps = self.maps()?;
        while maps.records.contains_key(&record.id) {
            record.id = Id::default();
        }
        maps.records.insert(record.id, record.clone());
        maps.index(record);
        Ok(())
    }

    async fn save(&self, record: &Record, now: i64) -> session_store::Result<Saved> {
        let mut maps = self.maps()?;
        match maps.records.get(&record.id).filter(|r| expires_at(r) > now) {
            None => return Ok(Saved::Gone),
            Some(stored) if !may_replace(record, stored) => return Ok(Saved::Stale),
            Some(_) => {}
        }
        maps.records.insert(record.id, record.clone());
        maps.index(record);
        Ok(Saved::Done)
    }

    async fn delete(&self, id: &str) -> session_store::Result<bool> {
        let mut maps = self.maps()?;
        maps.index.remove(id);
        Ok(match id.parse::<Id>() {
            Ok(id) => maps.records.remove(&id).is_some(),
            Err(_) => false,
        })
    }

    async fn sessions_of(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
    ) -> session_store::Result<Vec<String>> {
        if sid.is_none() && sub.is_none() {
            return Ok(Vec::new());
        }
        Ok(self
            .maps()?
            .index
            .iter()
            .filter(|(_, ((s, u), _))| match sid {
                Some(sid) => s.as_deref() == Some(sid),
                None => Some(u.as_str()) == sub,
            })
            .map(|(id, _)| id.clone())
            .collect())
    }

    async fn remember_ended(&self, sid: &str, until: i64, now: i64) -> session_store::Result<()> {
        let mut maps = self.maps()?;
        super::keep_ended(&mut maps.ended_sids, sid, until, now);
        Ok(())
    }

    async fn is_ended(&self, sid: &str) -> session_store::Result<bool> {
        Ok(self.maps()?.ended_sids.contains_key(sid))
    }

    async fn first_use_of_jti(
        &self,
        jti: &str,
        until: i64,
        now: i64,
    ) -> session_store::Result<bool> {
        let mut maps = self.maps()?;
        let seen = &mut maps.logout_jtis;
        seen.retain(|_, until| *until > now);
        if seen.len() >= MAX_LOGOUT_JTIS {
            return Ok(false);
        }
        Ok(seen.insert(jti.to_owned(), until).is_none())
    }

    async fn sweep(&self, now: i64) -> session_store::Result<()> {
        let mut maps = self.maps()?;
        maps.records.retain(|_, r| expires_at(r) > now);
        maps.index.retain(|_, (_, expires)| *expires > now);
        maps.logout_jtis.retain(|_, until| *until > now);
        maps.ended_sids.retain(|_, until| *until > now);
        Ok(())
    }

    async fn count(&self) -> session_store::Result<usize> {
        Ok(self.maps()?.records.len())
    }

    async fn is_ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_records::signed_in;
    use super::*;

    #[tokio::test]
    async fn the_memory_store_frees_expired_records_and_their_index_when_swept() {
        let backend = MemoryBackend::default();
        for i in 0..50 {
            let mut r = signed_in(&format!("old-{i}"), "alice", -10);
            backend.create(&mut r, 0).await.expect("create");
        }
        let mut live = signed_in("live", "alice", 600);
        backend.create(&mut live, 0).await.expect("create");
        assert_eq!(backend.count().await.expect("len"), 51);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        backend.sweep(now).await.expect("sweep");
        assert_eq!(backend.count().await.expect("len"), 1);
        let of_alice = backend
            .sessions_of(None, Some("alice"))
            .await
            .expect("index");
        assert_eq!(
            of_alice,
            vec![live.id.to_string()],
            "the index is swept too"
        );
    }
}
