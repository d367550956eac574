//! Who is waiting to hear that a session changed: the open pages' event streams
//! (`GET <prefix>/events`) subscribe by session id; the store announces every save and delete of
//! a session (a refresh, a sign-out, a back-channel logout). With Redis, announcements travel
//! between replicas on a Redis channel ([`crate::server::session::store::redis`]), so a page connected to
//! any replica hears of a change made on any other.
//!
//! An announcement carries nothing but the id: a subscriber reads the session again itself. Ids
//! nobody listens to cost one map look-up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The subscriptions of this process, by session id.
#[derive(Clone, Debug, Default)]
pub struct SessionEvents {
    subscribers: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

/// A subscription to one session's changes; unsubscribes when dropped.
pub struct Subscription {
    id: String,
    receiver: watch::Receiver<u64>,
    events: SessionEvents,
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
    pub fn announce_all(&self) {
        if let Ok(subscribers) = self.subscribers.lock() {
            for sender in subscribers.values() {
                sender.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// Subscribes to the changes of session `id` from now on, unless it has `limit`
    /// subscriptions already: the count and the new subscription are one step under one lock, so
    /// concurrent requests cannot all pass the check (`None`: at the limit).
    pub fn subscribe_within(&self, id: &str, limit: usize) -> Option<Subscription> {
        let Ok(mut subscribers) = self.subscribers.lock() else {
            return Some(self.subscribe(id));
        };
        let sender = subscribers
            .entry(id.to_owned())
            .or_insert_with(|| watch::channel(0).0);
        if sender.receiver_count() >= limit {
            return None;
        }
        let receiver = sender.subscribe();
        Some(Subscription {
            id: id.to_owned(),
            receiver,
            events: self.clone(),
        })
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
        }
    }

    /// How many subscriptions session `id` has now.
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
    /// Completes at the next announcement for this session. Announcements made while nobody
    /// waited are not lost: the next call completes at once.
    pub async fn changed(&mut self) {
        if self.receiver.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
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
    fn no_more_than_the_limit_subscribe_even_at_once() {
        let events = SessionEvents::default();
        let kept: Vec<Subscription> = std::thread::scope(|scope| {
            let tries: Vec<_> = (0..10)
                .map(|_| scope.spawn(|| events.subscribe_within("a", 4)))
                .collect();
            tries
                .into_iter()
                .filter_map(|t| t.join().ok().flatten())
                .collect()
        });
        assert_eq!(kept.len(), 4);
        assert_eq!(events.subscribers("a"), 4);
        drop(kept);
        assert!(events.subscribe_within("a", 4).is_some(), "room again");
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
