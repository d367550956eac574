//! The records this process has just written, so that the same record saved again is not
//! written again.
//!
//! A handler that must know whether its save worked (the sign-in, a refresh, an account
//! action) saves the session itself; tower-sessions' layer then saves it once more after the
//! answer, because its `Session::save` leaves the session marked as modified. Without this,
//! every sign-in and refresh wrote the session twice: with Redis, two compare-and-set writes,
//! two replica confirmations and two announcements to the session's open pages, and a second
//! chance to fail with the store (a 503 for a session already saved; catalogue E03).
//!
//! Skipping is safe because the skipped save would have written nothing new: the store holds
//! what this process wrote, or what another request or replica wrote after it (which the save
//! would merge with, never replace with older tokens), or nothing (the session ended; a save
//! never brings one back). An entry counts once and for a minute at most, and at most
//! [`MAX_ENTRIES`] are kept.

use std::collections::HashMap;
use std::sync::Mutex;
use tower_sessions::session::{Id, Record};

/// How many just-written records are kept; beyond it, the old ones go first, then all.
const MAX_ENTRIES: usize = 1024;

/// How long (seconds) a written record stands for the stored one: longer than a request takes.
const FRESH_FOR: i64 = 60;

/// See the module. The records hold tokens in clear: `Debug` shows none of them.
#[derive(Default)]
pub(super) struct LastSaved {
    records: Mutex<HashMap<Id, (Record, i64)>>,
}

impl std::fmt::Debug for LastSaved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LastSaved").finish_non_exhaustive()
    }
}

impl LastSaved {
    /// Remembers that `record` (as the caller gave it, before sealing) was written at `now`.
    pub(super) fn remember(&self, record: &Record, now: i64) {
        let Ok(mut records) = self.records.lock() else {
            return;
        };
        if records.len() >= MAX_ENTRIES && !records.contains_key(&record.id) {
            records.retain(|_, (_, at)| now - *at < FRESH_FOR);
            if records.len() >= MAX_ENTRIES {
                records.clear();
            }
        }
        records.insert(record.id, (record.clone(), now));
    }

    /// Whether `record` is the very record this process wrote last for its id, less than
    /// [`FRESH_FOR`] ago; it then counts as written, once.
    pub(super) fn take_if_unchanged(&self, record: &Record, now: i64) -> bool {
        let Ok(mut records) = self.records.lock() else {
            return false;
        };
        let unchanged = records
            .get(&record.id)
            .is_some_and(|(written, at)| now - *at < FRESH_FOR && written == record);
        if unchanged {
            records.remove(&record.id);
        }
        unchanged
    }

    /// Forgets what was written for `id` (it was deleted, or written differently).
    pub(super) fn forget(&self, id: &Id) {
        if let Ok(mut records) = self.records.lock() {
            records.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn record(value: &str) -> Record {
        let mut data = HashMap::new();
        data.insert("k".to_owned(), serde_json::json!(value));
        Record {
            id: Id(7),
            data,
            expiry_date: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn the_record_just_written_counts_as_written_once() {
        let last = LastSaved::default();
        last.remember(&record("a"), 100);
        assert!(last.take_if_unchanged(&record("a"), 101));
        assert!(!last.take_if_unchanged(&record("a"), 101), "only once");
    }

    #[test]
    fn a_changed_record_or_one_written_long_ago_is_written_again() {
        let last = LastSaved::default();
        last.remember(&record("a"), 100);
        assert!(!last.take_if_unchanged(&record("b"), 101));
        last.remember(&record("a"), 100);
        assert!(!last.take_if_unchanged(&record("a"), 100 + FRESH_FOR));
        last.remember(&record("a"), 100);
        last.forget(&Id(7));
        assert!(!last.take_if_unchanged(&record("a"), 101));
    }

    #[test]
    fn its_debug_output_shows_no_record() {
        let last = LastSaved::default();
        last.remember(&record("secret-token"), 100);
        assert!(!format!("{last:?}").contains("secret-token"));
    }

    #[test]
    fn it_keeps_a_bounded_number_of_records() {
        let last = LastSaved::default();
        for i in 0..(MAX_ENTRIES as i128 * 3) {
            let mut r = record("a");
            r.id = Id(i);
            last.remember(&r, 100);
        }
        let kept = last.records.lock().map(|r| r.len()).unwrap_or(0);
        assert!(kept <= MAX_ENTRIES, "kept {kept}");
    }
}
