//! Both streaming forms: a plain stream, and a stream behind an early error.
//! The stream may borrow `&self`.

use futures::{Stream, StreamExt};
use rotor::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

struct Words {
    words: Vec<String>,
}

#[rotor::component(namespace = "text")]
impl Words {
    #[endpoint]
    async fn all(&self) -> impl Stream<Item = Result<String, Failed>> {
        futures::stream::iter(self.words.iter().cloned().map(Ok))
    }

    #[endpoint]
    async fn first(&self, ctx: &Context, n: usize) -> Result<impl Stream<Item = Result<String, Failed>> + Send, Failed> {
        let _ = ctx.request_id();
        if n == 0 {
            return Err(Failed);
        }
        Ok(futures::stream::iter(self.words.iter().take(n).cloned().map(Ok)))
    }
}

#[tokio::main]
async fn main() {
    let rt = Runtime::embedded().await.unwrap();
    let _server = rt.serve(Words { words: vec!["a".into(), "b".into()] }).await.unwrap();
    let client = Words::client(&rt).await.unwrap();
    let all: Vec<_> = client.all().await.unwrap().map(Result::unwrap).collect().await;
    assert_eq!(all, ["a", "b"]);
    let mut first: rotor::ResponseStream<String, Failed> = client.first(1).await.unwrap();
    assert_eq!(first.next().await.unwrap().unwrap(), "a");
    assert!(first.next().await.is_none());
    assert!(client.first(0).await.unwrap_err().app().is_some());
}
