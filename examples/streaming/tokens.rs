//! A token generator: the streaming component of the `streaming` example,
//! shared with the tests.

use std::time::Duration;

use futures::Stream;
use rotor::prelude::*;
use serde::{Deserialize, Serialize};

/// Splits prompts into "tokens" and streams them back, one at a time.
pub struct Generator;

#[derive(Debug, Serialize, Deserialize)]
pub struct Prompt {
    pub text: String,
    /// How many times to repeat the text's tokens; `0` streams for ever.
    pub repeat: u32,
    /// A pause between tokens, in milliseconds: a model thinking.
    pub pause_ms: u64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Token {
    pub index: u64,
    pub text: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, thiserror::Error)]
pub enum GenerateError {
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("token {0} is forbidden")]
    Forbidden(u64),
}

// ANCHOR: component
#[rotor::component(namespace = "llm")]
impl Generator {
    /// Streams the prompt's words as tokens. An empty prompt is refused
    /// before the first token; the word `forbidden` ends the stream with an
    /// error.
    #[endpoint]
    async fn generate(
        &self,
        ctx: Context,
        prompt: Prompt,
    ) -> Result<impl Stream<Item = Result<Token, GenerateError>>, GenerateError> {
        let words: Vec<String> = prompt.text.split_whitespace().map(String::from).collect();
        if words.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        Ok(async_stream::stream! {
            let mut index = 0u64;
            loop {
                for word in &words {
                    if word == "forbidden" {
                        yield Err(GenerateError::Forbidden(index));
                        return;
                    }
                    if prompt.pause_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(prompt.pause_ms)).await;
                    }
                    yield Ok(Token { index, text: word.clone() });
                    index += 1;
                }
                if prompt.repeat != 0 && index >= u64::from(prompt.repeat) * words.len() as u64 {
                    break;
                }
                if ctx.is_cancelled() {
                    break;
                }
            }
        })
    }
}
// ANCHOR_END: component
