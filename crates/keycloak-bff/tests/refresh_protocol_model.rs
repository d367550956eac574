//! The refresh protocol across replicas, model-checked: every interleaving of two replicas, the
//! shared store, Keycloak's refresh-token rotation with reuse 0, a browser's requests, sign-out,
//! back-channel logout, a second sign-in of the same Keycloak session and a replica dying, checked
//! exhaustively with `stateright` (breadth first, every reachable state). With every guard of the
//! code the four properties hold; without any one guard the checker finds a counterexample (one
//! test each, named after what goes wrong).
//!
//! | model | code |
//! |---|---|
//! | `Load` | a request reads its session: `AuthStore::load` (refuses a record of an ended `sid`: `Guards::ended_on_load`) |
//! | `Lock`, `LockExpires` | `AuthStore::lock_refresh` (`SET NX PX` in Redis); the live holder renews it (`renew_while_held`, `Guards::renewal`); a dead holder's lock ends after `LOCK_TTL_MS` |
//! | `Reload` | `Refresher::refresh_locked`: `session.load()` under the lock, no call when another request already refreshed (`Guards::reload`) |
//! | `CallKeycloak` | `Oidc::refresh` at the token endpoint; Keycloak rotates (reuse 0): a spent token ends its session |
//! | `Save`, `StaleWrite` | `AuthStore::save` after a refresh, and the session layer's save at the end of a request that read an older record: `is_ended` (`Guards::ended_on_save`), the Lua `SAVE_SCRIPT`: the record must still exist (`Guards::exists`) and its token rank must not be newer (`Guards::rank`, with `keep_newer_tokens`) |
//! | `SignOut` | `routes::logout`: the record deleted, Keycloak's session ended from the server |
//! | `LogoutRemember`, `LogoutDelete` | `backchannel_logout` → `end_app_sessions_of`: `remember_ended(sid)`, then the sessions of the `sid` deleted |
//! | `SecondCheck`, `SecondCreate`, `ServeSecond` | another tab's sign-in through single sign-on (same `sid`): `AuthStore::create` checks `is_ended`, then the backend creates; later requests load it |
//! | `Crash` | `kill -9` of a replica: what it held in memory is gone, its lock stays until it expires |
//!
//! Not modelled: Redis losing acknowledged writes (see the Sentinel `WAIT`), clocks, the
//! sealing. One window is inherent and stated in the properties: a replica that dies after
//! Keycloak answered a refresh and before the store got the new tokens loses that rotation
//! (`answer_lost`); the next refresh then spends a used token.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail by panicking

use stateright::{Checker, Model, Property};

/// The code's guards; each can be left out to see what it protects.
#[derive(Clone, Copy, Debug)]
struct Guards {
    lock: bool,
    renewal: bool,
    reload: bool,
    rank: bool,
    exists: bool,
    ended_on_save: bool,
    ended_on_load: bool,
}

const ALL: Guards = Guards {
    lock: true,
    renewal: true,
    reload: true,
    rank: true,
    exists: true,
    ended_on_save: true,
    ended_on_load: true,
};

/// Refresh tokens are numbered in the order Keycloak issued them; a record's rank is its token's.
const MAX_ROTATIONS: u8 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Replica {
    Idle,
    /// Read the record with token `rt` (a request in progress).
    Loaded(u8),
    /// Holds (or, without the lock, believes it holds) the refresh lock; saw `rt` before.
    Locked(u8),
    /// About to call Keycloak with `rt`.
    Reloaded(u8),
    /// Keycloak answered the new token `rt`; not saved yet.
    Answered(u8),
    Dead,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    replicas: [Replica; 2],
    /// The session's record in the store: its refresh token.
    record: Option<u8>,
    /// A second app session of the same Keycloak session (another tab's sign-in).
    second: Option<()>,
    second_checked: bool,
    second_done: bool,
    lock: Option<usize>,
    ended_sid: bool,
    kc_latest: u8,
    kc_alive: bool,
    /// Keycloak saw a refresh token that was already spent.
    kc_reuse: bool,
    /// Ended by the user or Keycloak (sign-out, back-channel logout).
    ended: bool,
    signed_out_once: bool,
    logout_started: bool,
    /// A replica died holding Keycloak's fresh answer (the inherent window).
    answer_lost: bool,
    /// A save replaced a newer token with an older one.
    older_replaced: bool,
    /// A request was served as signed in after the session was ended.
    served_after_end: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Action {
    Load(usize),
    Lock(usize),
    Reload(usize),
    CallKeycloak(usize),
    Save(usize),
    StaleWrite(usize),
    Crash(usize),
    LockExpires,
    SignOut,
    LogoutRemember,
    LogoutDelete,
    SecondCheck,
    SecondCreate,
    ServeSecond,
}

struct Protocol {
    guards: Guards,
}

impl Protocol {
    /// A save of token `rt` by replica `by`, under the store's rules.
    fn save(&self, s: &mut State, rt: u8) {
        if self.guards.ended_on_save && s.ended_sid {
            s.record = None;
            return;
        }
        match s.record {
            None if self.guards.exists => {}
            None => s.record = Some(rt),
            Some(stored) if self.guards.rank && stored > rt => {}
            Some(stored) => {
                if stored > rt {
                    s.older_replaced = true;
                }
                s.record = Some(rt);
            }
        }
    }

    fn release(s: &mut State, by: usize) {
        if s.lock == Some(by) {
            s.lock = None;
        }
    }
}

impl Model for Protocol {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![State {
            replicas: [Replica::Idle; 2],
            record: Some(0),
            second: None,
            second_checked: false,
            second_done: false,
            lock: None,
            ended_sid: false,
            kc_latest: 0,
            kc_alive: true,
            kc_reuse: false,
            ended: false,
            signed_out_once: false,
            logout_started: false,
            answer_lost: false,
            older_replaced: false,
            served_after_end: false,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        for (r, replica) in s.replicas.iter().enumerate() {
            match replica {
                Replica::Idle => actions.push(Action::Load(r)),
                Replica::Loaded(_) => {
                    actions.push(Action::Lock(r));
                    actions.push(Action::StaleWrite(r));
                }
                Replica::Locked(_) => actions.push(Action::Reload(r)),
                Replica::Reloaded(_) => actions.push(Action::CallKeycloak(r)),
                Replica::Answered(_) => actions.push(Action::Save(r)),
                Replica::Dead => {}
            }
            if *replica != Replica::Dead && *replica != Replica::Idle {
                actions.push(Action::Crash(r));
            }
        }
        if s.lock.is_some() {
            actions.push(Action::LockExpires);
        }
        if !s.signed_out_once && !s.logout_started {
            actions.push(Action::SignOut);
            actions.push(Action::LogoutRemember);
        }
        if s.logout_started && !s.ended {
            actions.push(Action::LogoutDelete);
        }
        if !s.second_checked && !s.second_done {
            actions.push(Action::SecondCheck);
        }
        if s.second_checked && !s.second_done {
            actions.push(Action::SecondCreate);
        }
        if s.second.is_some() {
            actions.push(Action::ServeSecond);
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        let g = self.guards;
        match action {
            Action::Load(r) => match s.record {
                Some(_) if g.ended_on_load && s.ended_sid => s.record = None,
                Some(rt) => {
                    if s.ended {
                        s.served_after_end = true;
                    }
                    s.replicas[r] = Replica::Loaded(rt);
                }
                None => return None,
            },
            Action::Lock(r) => {
                let Replica::Loaded(rt) = s.replicas[r] else {
                    return None;
                };
                if g.lock {
                    if s.lock.is_some() {
                        return None;
                    }
                    s.lock = Some(r);
                }
                s.replicas[r] = Replica::Locked(rt);
            }
            Action::Reload(r) => {
                let Replica::Locked(seen) = s.replicas[r] else {
                    return None;
                };
                if !g.reload {
                    s.replicas[r] = Replica::Reloaded(seen);
                    return Some(s);
                }
                match s.record {
                    Some(rt) if rt > seen || (g.ended_on_load && s.ended_sid) => {
                        // Another request refreshed meanwhile (or the session ended): no call.
                        Protocol::release(&mut s, r);
                        s.replicas[r] = Replica::Idle;
                    }
                    Some(rt) => s.replicas[r] = Replica::Reloaded(rt),
                    None => {
                        Protocol::release(&mut s, r);
                        s.replicas[r] = Replica::Idle;
                    }
                }
            }
            Action::CallKeycloak(r) => {
                let Replica::Reloaded(rt) = s.replicas[r] else {
                    return None;
                };
                if s.kc_alive && rt == s.kc_latest {
                    s.kc_latest += 1;
                    s.replicas[r] = Replica::Answered(s.kc_latest);
                } else {
                    if s.kc_alive {
                        // A spent token: Keycloak ends the session (reuse 0).
                        s.kc_reuse = true;
                        s.kc_alive = false;
                    }
                    // invalid_grant: the app ends its session.
                    s.record = None;
                    Protocol::release(&mut s, r);
                    s.replicas[r] = Replica::Idle;
                }
            }
            Action::Save(r) => {
                let Replica::Answered(rt) = s.replicas[r] else {
                    return None;
                };
                self.save(&mut s, rt);
                Protocol::release(&mut s, r);
                s.replicas[r] = Replica::Idle;
            }
            Action::StaleWrite(r) => {
                let Replica::Loaded(rt) = s.replicas[r] else {
                    return None;
                };
                self.save(&mut s, rt);
                s.replicas[r] = Replica::Idle;
            }
            Action::Crash(r) => {
                if let Replica::Answered(_) = s.replicas[r] {
                    s.answer_lost = true;
                }
                s.replicas[r] = Replica::Dead;
            }
            Action::LockExpires => {
                let holder = s.lock?;
                // A live holder renews its lock; only a dead one's ends (without renewal: any).
                if g.renewal && s.replicas[holder] != Replica::Dead {
                    return None;
                }
                s.lock = None;
            }
            Action::SignOut => {
                s.record = None;
                s.kc_alive = false;
                s.ended = true;
                s.signed_out_once = true;
            }
            Action::LogoutRemember => {
                // Keycloak ended its session, then calls the back channel.
                s.kc_alive = false;
                s.ended_sid = true;
                s.logout_started = true;
            }
            Action::LogoutDelete => {
                s.record = None;
                s.second = None;
                s.ended = true;
            }
            Action::SecondCheck => {
                if g.ended_on_save && s.ended_sid {
                    s.second_done = true;
                } else {
                    s.second_checked = true;
                }
            }
            Action::SecondCreate => {
                s.second = Some(());
                s.second_done = true;
            }
            Action::ServeSecond => {
                if g.ended_on_load && s.ended_sid {
                    s.second = None;
                } else if s.ended && s.ended_sid {
                    s.served_after_end = true;
                } else {
                    return None;
                }
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("no refresh token is spent twice", |_, s: &State| {
                !s.kc_reuse || s.answer_lost
            }),
            Property::always(
                "an older token set never replaces a newer one",
                |_, s: &State| !s.older_replaced,
            ),
            Property::always(
                "a session that was ended never comes back",
                |_, s: &State| !s.served_after_end,
            ),
            Property::always("a live session is never ended by a race", |_, s: &State| {
                s.ended || s.logout_started || s.answer_lost || s.record.is_some()
            }),
        ]
    }

    fn within_boundary(&self, s: &State) -> bool {
        s.kc_latest <= MAX_ROTATIONS
    }
}

/// The properties the checker found broken, after visiting every reachable state.
fn broken(guards: Guards) -> Vec<&'static str> {
    let checker = Protocol { guards }.checker().spawn_bfs().join();
    assert!(checker.is_done(), "every reachable state visited");
    let mut names: Vec<&'static str> = checker.discoveries().into_keys().collect();
    names.sort_unstable();
    eprintln!(
        "{guards:?}: {} states, broken: {names:?}",
        checker.unique_state_count()
    );
    names
}

#[test]
fn with_every_guard_no_interleaving_breaks_any_property() {
    let checker = Protocol { guards: ALL }.checker().spawn_bfs().join();
    checker.assert_properties();
    eprintln!(
        "every guard: {} states, nothing broken",
        checker.unique_state_count()
    );
    assert!(
        checker.unique_state_count() > 1_000,
        "the model explores a real space: {} states",
        checker.unique_state_count()
    );
}

#[test]
fn without_the_refresh_lock_a_refresh_token_is_spent_twice() {
    let broken = broken(Guards { lock: false, ..ALL });
    assert!(
        broken.contains(&"no refresh token is spent twice"),
        "{broken:?}"
    );
}

#[test]
fn without_renewing_the_lock_a_slow_holder_loses_it_and_a_token_is_spent_twice() {
    let broken = broken(Guards {
        renewal: false,
        ..ALL
    });
    assert!(
        broken.contains(&"no refresh token is spent twice"),
        "{broken:?}"
    );
}

#[test]
fn without_reading_again_under_the_lock_a_waiter_spends_the_token_just_rotated() {
    let broken = broken(Guards {
        reload: false,
        ..ALL
    });
    assert!(
        broken.contains(&"no refresh token is spent twice"),
        "{broken:?}"
    );
}

#[test]
fn without_the_rank_check_a_late_write_puts_back_an_older_token() {
    let broken = broken(Guards { rank: false, ..ALL });
    assert!(
        broken.contains(&"an older token set never replaces a newer one"),
        "{broken:?}"
    );
}

#[test]
fn without_the_exists_check_a_late_save_brings_a_signed_out_session_back() {
    let broken = broken(Guards {
        exists: false,
        ..ALL
    });
    assert!(
        broken.contains(&"a session that was ended never comes back"),
        "{broken:?}"
    );
}

#[test]
fn without_the_ended_check_on_load_a_sign_in_racing_a_back_channel_logout_is_served() {
    let broken = broken(Guards {
        ended_on_load: false,
        ..ALL
    });
    assert!(
        broken.contains(&"a session that was ended never comes back"),
        "{broken:?}"
    );
}
