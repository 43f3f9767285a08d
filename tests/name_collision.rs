//! Two components whose service names collide (`a.b`/`c` and `a`/`b_c` both
//! give `a_b_c`) stop the runtime at start-up, naming both. This file is its
//! own test binary so that the collision does not stop the other tests.

use rotor::prelude::*;

#[derive(Debug, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("never")]
struct Never;

struct First;

#[rotor::component(namespace = "a.b", name = "c")]
impl First {
    #[endpoint]
    async fn ping(&self) -> Result<(), Never> {
        Ok(())
    }
}

struct Second;

#[rotor::component(namespace = "a", name = "b_c")]
impl Second {
    #[endpoint]
    async fn ping(&self) -> Result<(), Never> {
        Ok(())
    }
}

#[tokio::test]
async fn colliding_service_names_stop_the_runtime_naming_both() {
    let err = Runtime::embedded().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, rotor::Error::Collision { what: "service name", .. }), "{text}");
    assert!(text.contains("a_b_c"), "{text}");
    assert!(text.contains("a.b/c (First)") && text.contains("a/b_c (Second)"), "{text}");
    assert!(rotor::registry::check().is_err());
}
