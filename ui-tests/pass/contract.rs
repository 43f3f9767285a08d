use futures::Stream;
use rotor::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
pub struct Failed;

/// A contract with every kind of endpoint.
#[component(namespace = "llm", name = "tok", labels(model = "bytes"), codec = "msgpack")]
pub trait Tokenizer {
    #[endpoint]
    async fn encode(&self, ctx: &Context, text: String) -> Result<Vec<u32>, Failed>;

    #[endpoint(name = "count", idempotent = false)]
    async fn count_tokens(&self, text: String) -> Result<usize, Failed>;

    #[endpoint]
    async fn ping(&self) -> Result<(), Failed>;

    #[endpoint]
    async fn tokens(&self, text: String) -> impl Stream<Item = Result<u32, Failed>>;

    #[endpoint]
    async fn checked(&self, text: String) -> Result<impl Stream<Item = Result<u32, Failed>>, Failed>;
}

struct Bytes;

impl Tokenizer for Bytes {
    async fn encode(&self, _ctx: &Context, text: String) -> Result<Vec<u32>, Failed> {
        Ok(text.bytes().map(u32::from).collect())
    }

    async fn count_tokens(&self, text: String) -> Result<usize, Failed> {
        Ok(text.len())
    }

    async fn ping(&self) -> Result<(), Failed> {
        Ok(())
    }

    async fn tokens(&self, text: String) -> impl Stream<Item = Result<u32, Failed>> {
        futures::stream::iter(text.into_bytes().into_iter().map(|b| Ok(u32::from(b))))
    }

    async fn checked(&self, text: String) -> Result<impl Stream<Item = Result<u32, Failed>>, Failed> {
        if text.is_empty() {
            return Err(Failed);
        }
        Ok(futures::stream::iter(text.into_bytes().into_iter().map(|b| Ok(u32::from(b)))))
    }
}

#[allow(dead_code)]
async fn use_it(rt: &Runtime) -> Result<(), Box<dyn std::error::Error>> {
    let _served = rt.serve(TokenizerServer(Bytes)).await?;
    let client = TokenizerClient::connect(rt).await?;
    let _: Vec<u32> = client.encode("hi".into()).await?;
    let _: usize = client.count_tokens("hi".into()).await?;
    client.ping().await?;
    let _stream = client.tokens("hi".into()).await?;
    let _stream = client.checked("hi".into()).await?;
    let _answers = client.fan_out(rotor::FanOut::new()).encode("hi".into())?;
    assert_eq!(TokenizerClient::SERVICE, "llm_tok");
    assert_eq!(TokenizerClient::COUNT_TOKENS_SUBJECT, "llm_tok.count");
    Ok(())
}

fn main() {}
