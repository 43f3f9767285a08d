//! The tokenizer's implementation. In a real fleet this crate carries the
//! heavy dependencies (a model runtime, a GPU library) that callers must
//! not need.

use futures::Stream;
use tokenizer_contract::{EncodeRequest, EncodeResponse, TokenizeError, Tokenizer};

// ANCHOR: implementation
/// Tokens are the bytes of the text, for the example's sake.
pub struct ByteTokenizer;

impl Tokenizer for ByteTokenizer {
    async fn encode(&self, request: EncodeRequest) -> Result<EncodeResponse, TokenizeError> {
        if request.text.is_empty() {
            return Err(TokenizeError::Empty);
        }
        Ok(EncodeResponse { tokens: request.text.bytes().map(u32::from).collect() })
    }

    async fn stream_tokens(&self, request: EncodeRequest) -> impl Stream<Item = Result<u32, TokenizeError>> {
        futures::stream::iter(request.text.into_bytes().into_iter().map(|b| Ok(u32::from(b))))
    }
}
// ANCHOR_END: implementation
