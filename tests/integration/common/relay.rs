//! A TCP relay to the real Keycloak that a test can cut (open connections dropped, new ones
//! refused) and restore on the same port. Given to the app as `keycloak.internal_url`, it takes
//! Keycloak out of the app's reach (its discovery, key, token and logout calls) while the
//! browser still reaches Keycloak's pages, as an outage of the network between them would: the
//! one thing a real Keycloak cannot be asked to do without stopping it for every test beside.
//! The browser tests' outage check cuts Keycloak off the same way (`end2end/tests/outage.spec.ts`).
//! Catalogue: C05, D05.

use super::KEYCLOAK;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// See the module.
pub struct Relay {
    port: u16,
    accepting: Option<JoinHandle<()>>,
    /// The relayed connections, dropped when the relay is cut.
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    /// A relay on a free port, open.
    pub async fn open() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mut relay = Relay {
            port,
            accepting: None,
            connections: Arc::default(),
        };
        relay.accept(listener);
        relay
    }

    /// The relay's URL: the app's `keycloak.internal_url`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Keycloak out of reach: the relayed connections are dropped and new ones refused (both
    /// done when this returns).
    pub async fn cut(&mut self) {
        let mut tasks: Vec<JoinHandle<()>> = self.accepting.take().into_iter().collect();
        tasks.append(&mut self.connections.lock().expect("lock"));
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Keycloak in reach again, on the same port.
    pub async fn restore(&mut self) {
        // Free at once (`cut` waited for its listener to go); tried again for 5 s all the same.
        for _ in 0..50 {
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", self.port)).await {
                self.accept(listener);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the relay's port {} could not be opened again", self.port);
    }

    fn accept(&mut self, listener: TcpListener) {
        let keycloak = KEYCLOAK.trim_start_matches("http://").to_owned();
        let connections = self.connections.clone();
        self.accepting = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let keycloak = keycloak.clone();
                let relayed = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&keycloak).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut open = connections.lock().expect("lock");
                open.retain(|c| !c.is_finished());
                open.push(relayed);
            }
        }));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(accepting) = self.accepting.take() {
            accepting.abort();
        }
        if let Ok(connections) = self.connections.lock() {
            connections.iter().for_each(JoinHandle::abort);
        }
    }
}
