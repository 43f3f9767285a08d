//! The tokenizer's contract: what a caller needs to call it, and what a
//! server implements. A program that only calls the tokenizer depends on
//! this crate alone, not on the server's model runtime.

use futures::Stream;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncodeRequest {
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncodeResponse {
    pub tokens: Vec<u32>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum TokenizeError {
    #[error("the text is empty")]
    Empty,
}

// ANCHOR: contract
/// Turns text into tokens.
#[rotor::component(namespace = "llm")]
pub trait Tokenizer {
    /// The tokens of a text.
    #[endpoint]
    async fn encode(&self, request: EncodeRequest) -> Result<EncodeResponse, TokenizeError>;

    /// The tokens of a text, one at a time.
    #[endpoint]
    async fn stream_tokens(&self, request: EncodeRequest) -> impl Stream<Item = Result<u32, TokenizeError>>;
}
// ANCHOR_END: contract
