//! The micro protocol's verbs (`$SRV.PING`, `$SRV.INFO`, `$SRV.STATS`) on a
//! NATS connection.
//!
//! Of the nine subjects a service answers on, six name no instance
//! (`$SRV.PING`, `$SRV.PING.<service>`, and the same for INFO and STATS):
//! every instance of a process subscribed each of them, so 1,000 instances
//! held 6,000 subscriptions to six subjects, and each instance's share of
//! their channels was most of its memory. Here each such subject is one
//! subscription per connection, answered once for every service bound on
//! it, as each would have answered; the three that name the instance stay
//! the instance's own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::engine::micro::{MicroService, Verb};

/// The shared verb subjects of one connection, and who answers on each.
#[derive(Default)]
pub(super) struct SharedVerbs {
    subjects: tokio::sync::Mutex<HashMap<String, Subject>>,
}

impl std::fmt::Debug for SharedVerbs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedVerbs")
    }
}

struct Subject {
    services: Arc<Mutex<Vec<Arc<MicroService>>>>,
    /// Ends the subject's task, which unsubscribes.
    stop: CancellationToken,
}

impl Drop for Subject {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Subscribes to the verbs of `micro` and answers them until `stop`.
pub(super) async fn serve(
    shared: &Arc<SharedVerbs>,
    micro: Arc<MicroService>,
    client: async_nats::Client,
    stop: CancellationToken,
) -> Result<(), async_nats::SubscribeError> {
    let mut own = Vec::new();
    let mut joined = Vec::new();
    for (verb, subject, names_instance) in micro.verb_subjects() {
        let subscribed = if names_instance {
            client.subscribe(subject).await.map(|s| own.push(s.map(move |m| (verb, m))))
        } else {
            shared.join(&client, verb, subject.clone(), &micro).await.map(|()| joined.push(subject))
        };
        if let Err(e) = subscribed {
            // A half-done bind answers on none of them.
            for subject in joined {
                shared.leave(&subject, &micro).await;
            }
            return Err(e);
        }
    }
    let mut requests = futures::stream::select_all(own);
    let shared = shared.clone();
    tokio::spawn(async move {
        loop {
            let (verb, request) = tokio::select! {
                next = requests.next() => match next {
                    Some(next) => next,
                    None => break,
                },
                () = stop.cancelled() => break,
            };
            answer(&client, verb, request, std::slice::from_ref(&micro)).await;
        }
        for subject in joined {
            shared.leave(&subject, &micro).await;
        }
    });
    Ok(())
}

impl SharedVerbs {
    /// Adds `micro` to those answering on `subject`, subscribing first if
    /// it is the first.
    async fn join(
        &self,
        client: &async_nats::Client,
        verb: Verb,
        subject: String,
        micro: &Arc<MicroService>,
    ) -> Result<(), async_nats::SubscribeError> {
        let mut subjects = self.subjects.lock().await;
        if let Some(known) = subjects.get(&subject) {
            known.services.lock().unwrap_or_else(PoisonError::into_inner).push(micro.clone());
            return Ok(());
        }
        let mut requests = client.subscribe(subject.clone()).await?;
        let services = Arc::new(Mutex::new(vec![micro.clone()]));
        let stop = CancellationToken::new();
        tokio::spawn({
            let (client, services, stop) = (client.clone(), services.clone(), stop.clone());
            async move {
                loop {
                    let request = tokio::select! {
                        next = requests.next() => match next {
                            Some(next) => next,
                            None => return,
                        },
                        () = stop.cancelled() => break,
                    };
                    let answering = services.lock().unwrap_or_else(PoisonError::into_inner).clone();
                    answer(&client, verb, request, &answering).await;
                }
                let _ = requests.unsubscribe().await;
            }
        });
        subjects.insert(subject, Subject { services, stop });
        Ok(())
    }

    /// Takes `micro` off `subject`; the last one to go unsubscribes.
    async fn leave(&self, subject: &str, micro: &Arc<MicroService>) {
        let mut subjects = self.subjects.lock().await;
        let Some(known) = subjects.get(subject) else { return };
        let empty = {
            let mut services = known.services.lock().unwrap_or_else(PoisonError::into_inner);
            services.retain(|s| !Arc::ptr_eq(s, micro));
            services.is_empty()
        };
        if empty {
            subjects.remove(subject);
        }
    }
}

/// Answers `request` once for each of `services`.
async fn answer(
    client: &async_nats::Client,
    verb: Verb,
    request: async_nats::Message,
    services: &[Arc<MicroService>],
) {
    let Some(reply) = request.reply else { return };
    for micro in services {
        match micro.answer(verb) {
            Ok(answer) => {
                if let Err(e) = client.publish(reply.clone(), answer).await {
                    tracing::debug!(error = %e, "could not answer a $SRV request");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not encode a $SRV answer"),
        }
    }
}
