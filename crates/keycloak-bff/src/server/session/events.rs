//! Who is waiting to hear that a session changed: the open pages' event streams
//! (`GET <prefix>/events`) subscribe by session id; the store announces every save and delete of
//! a session (a refresh, a sign-out, a back-channel logout). With Redis, announcements travel
//! between replicas on a Redis channel ([`crate::server::session::store::redis`]), so a page connected to
//! any replica hears of a change made on any other.
//!
//! An announcement carries nothing but the id: a subscriber reads the session again itself. Ids
//! nobody listens to cost one map look-up. A wake-up of every subscriber at once (after a Redis
//! reconnection) says so, so that the streams spread their reads instead of all reading at once.
//! It also counts the streams the process holds, within `session.max_event_streams`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The subscriptions of this process, by session id.
#[derive(Clone, Debug, Default)]
pub struct SessionEvents {
    subscribers: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
    /// How many times every subscriber was woken at once.
    woken_all: Arc<AtomicU64>,
    /// The streams open in this process.
    open: Arc<AtomicUsize>,
}

/// A subscription to one session's changes; unsubscribes when dropped.
pub struct Subscription {
    id: String,
    receiver: watch::Receiver<u64>,
    events: SessionEvents,
    woken_all: u64,
}

/// What woke a subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Its own session changed.
    One,
    /// Every subscriber of the process was woken at once (announcements may have been lost).
    All,
}

/// One open stream of the process, counted until dropped.
#[derive(Debug)]
pub struct OpenStream(Arc<AtomicUsize>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SessionEvents {
    /// Wakes the subscribers of session `id`, if any.
    pub fn announce(&self, id: &str) {
        if let Ok(subscribers) = self.subscribers.lock() {
            if let Some(sender) = subscribers.get(id) {
                sender.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// Wakes every subscriber (announcements may have been lost, e.g. while Redis was away).
    #[cfg(any(test, feature = "redis"))]
    pub fn announce_all(&self) {
        self.woken_all.fetch_add(1, Ordering::AcqRel);
        if let Ok(subscribers) = self.subscribers.lock() {
            for sender in subscribers.values() {
                sender.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// Counts one more open stream unless `limit` are open: the check and the count are one
    /// step, so that streams opened at once cannot all pass (`None`: at the limit).
    pub fn open_within(&self, limit: usize) -> Option<OpenStream> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| OpenStream(Arc::clone(&self.open)))
    }

    /// The streams open in this process now.
    pub fn open_streams(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Subscribes to the changes of session `id` from now on.
    pub fn subscribe(&self, id: &str) -> Subscription {
        let receiver = match self.subscribers.lock() {
            Ok(mut subscribers) => subscribers
                .entry(id.to_owned())
                .or_insert_with(|| watch::channel(0).0)
                .subscribe(),
            // A poisoned map (a panic elsewhere while holding it) still gives a subscription
            // that never fires; the page's timer keeps it up to date.
            Err(_) => watch::channel(0).1,
        };
        Subscription {
            id: id.to_owned(),
            receiver,
            events: self.clone(),
            woken_all: self.woken_all.load(Ordering::Acquire),
        }
    }

    /// How many subscriptions session `id` has now.
    #[cfg_attr(not(any(test, feature = "test-support")), allow(dead_code))] // tests only
    pub fn subscribers(&self, id: &str) -> usize {
        self.subscribers
            .lock()
            .map_or(0, |s| s.get(id).map_or(0, |sender| sender.receiver_count()))
    }

    /// How many sessions have at least one subscriber (the map's size).
    #[cfg(test)]
    fn watched(&self) -> usize {
        self.subscribers.lock().map_or(0, |s| s.len())
    }
}

impl Subscription {
    /// Completes at the next announcement for this session, saying whether every subscriber
    /// was woken with it. Announcements made while nobody waited are not lost: the next call
    /// completes at once.
    pub async fn changed(&mut self) -> Wake {
        if self.receiver.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        let woken_all = self.events.woken_all.load(Ordering::Acquire);
        if woken_all != self.woken_all {
            self.woken_all = woken_all;
            return Wake::All;
        }
        Wake::One
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut subscribers) = self.events.subscribers.lock() {
            // This receiver still counts until the end of `drop`.
            if subscribers
                .get(&self.id)
                .is_some_and(|s| s.receiver_count() <= 1)
            {
                subscribers.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn fires(subscription: &mut Subscription) -> bool {
        tokio::time::timeout(Duration::from_millis(50), subscription.changed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_subscriber_hears_of_its_own_session_only() {
        let events = SessionEvents::default();
        let mut mine = events.subscribe("a");
        events.announce("b");
        assert!(!fires(&mut mine).await);
        events.announce("a");
        assert!(fires(&mut mine).await);
        assert!(!fires(&mut mine).await, "one announcement, one wake-up");
    }

    #[tokio::test]
    async fn every_subscriber_of_a_session_hears_of_it() {
        let events = SessionEvents::default();
        let mut first = events.subscribe("a");
        let mut second = events.subscribe("a");
        events.announce("a");
        assert!(fires(&mut first).await);
        assert!(fires(&mut second).await);
    }

    #[test]
    fn no_more_than_the_limit_of_streams_open_even_at_once() {
        let events = SessionEvents::default();
        let kept: Vec<OpenStream> = std::thread::scope(|scope| {
            let tries: Vec<_> = (0..10)
                .map(|_| scope.spawn(|| events.open_within(4)))
                .collect();
            tries
                .into_iter()
                .filter_map(|t| t.join().ok().flatten())
                .collect()
        });
        assert_eq!(kept.len(), 4);
        assert_eq!(events.open_streams(), 4);
        drop(kept);
        assert_eq!(events.open_streams(), 0);
        assert!(events.open_within(4).is_some(), "room again");
    }

    #[tokio::test]
    async fn a_wake_up_of_everyone_says_so_once() {
        let events = SessionEvents::default();
        let mut mine = events.subscribe("a");
        events.announce_all();
        assert_eq!(mine.changed().await, Wake::All);
        events.announce("a");
        assert_eq!(mine.changed().await, Wake::One);
    }

    #[tokio::test]
    async fn the_last_subscriber_leaving_frees_the_entry() {
        let events = SessionEvents::default();
        let first = events.subscribe("a");
        let second = events.subscribe("a");
        assert_eq!(events.watched(), 1);
        assert_eq!(events.subscribers("a"), 2);
        drop(first);
        assert_eq!(events.watched(), 1);
        drop(second);
        assert_eq!(events.watched(), 0);
        events.announce("a"); // nobody listens: nothing happens
        assert_eq!(events.watched(), 0);
    }
}
