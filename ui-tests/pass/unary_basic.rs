use rotor::prelude::*;
use serde::{Deserialize, Serialize};

struct Tokenizer;

#[derive(Serialize, Deserialize)]
struct EncodeRequest {
    text: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct EncodeResponse {
    tokens: Vec<u32>,
}

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
enum TokenizeError {
    #[error("empty input")]
    Empty,
}

#[rotor::component(namespace = "llm")]
impl Tokenizer {
    #[endpoint]
    async fn encode(&self, req: EncodeRequest) -> Result<EncodeResponse, TokenizeError> {
        if req.text.is_empty() {
            return Err(TokenizeError::Empty);
        }
        Ok(EncodeResponse { tokens: req.text.bytes().map(u32::from).collect() })
    }
}

#[tokio::main]
async fn main() {
    assert_eq!(Tokenizer::NAMESPACE, "llm");
    assert_eq!(Tokenizer::COMPONENT, "tokenizer");
    assert_eq!(Tokenizer::SERVICE, "llm_tokenizer");
    assert_eq!(Tokenizer::ENCODE_SUBJECT, "llm_tokenizer.encode");
    let rt = Runtime::embedded().await.unwrap();
    let _server = rt.serve(Tokenizer).await.unwrap();
    let client: TokenizerClient = Tokenizer::client(&rt).await.unwrap();
    let out = client.encode(EncodeRequest { text: "ab".into() }).await.unwrap();
    assert_eq!(out.tokens, [97, 98]);
    let err: CallError<TokenizeError> = client.encode(EncodeRequest { text: String::new() }).await.unwrap_err();
    assert!(matches!(err.into_app(), Ok(TokenizeError::Empty)));
}
