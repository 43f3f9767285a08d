//! Two components in one binary, one calling the other through its typed
//! client, served together and shut down together; and a test of them on
//! the embedded runtime.
//!
//! ```console
//! cargo run --example two_components            # embedded: serve, call, stop
//! cargo run --features etcd --example two_components -- serve   # with ROTOR_* set: until Ctrl-C
//! cargo test --example two_components           # the tests at the bottom
//! ```

// ANCHOR: components
use rotor::prelude::*;
use serde::{Deserialize, Serialize};

/// Splits text into words.
struct Tokenizer;

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
enum TextError {
    #[error("the text is empty")]
    Empty,
    #[error("the tokenizer failed: {0}")]
    Tokenizer(String),
}

#[rotor::component(namespace = "text")]
impl Tokenizer {
    #[endpoint]
    async fn split(&self, text: String) -> Result<Vec<String>, TextError> {
        if text.trim().is_empty() {
            return Err(TextError::Empty);
        }
        Ok(text.split_whitespace().map(str::to_string).collect())
    }
}

/// Summarises text, using the tokenizer wherever it runs.
struct Summarizer {
    tokenizer: TokenizerClient,
}

#[derive(Debug, Serialize, Deserialize)]
struct Summary {
    words: usize,
    first: String,
}

#[rotor::component(namespace = "text")]
impl Summarizer {
    #[endpoint]
    async fn summarize(&self, text: String) -> Result<Summary, TextError> {
        // A call made from inside a handler carries the request's id and
        // trace on to the tokenizer.
        let words = self.tokenizer.split(text).await.map_err(|e| match e {
            CallError::App { error, .. } => error,
            other => TextError::Tokenizer(other.to_string()),
        })?;
        Ok(Summary { words: words.len(), first: words[0].clone() })
    }
}
// ANCHOR_END: components

// ANCHOR: main
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::from_env().await?;
    let tokenizer = Tokenizer::client(&rt).await?;
    let serving = rt.serving().serve(Tokenizer).await?.serve(Summarizer { tokenizer }).await?;

    if std::env::args().any(|a| a == "serve") {
        // Listening before saying so: a SIGTERM sent on that line drains.
        let stop = rotor::shutdown_signal();
        println!("serving {} components; Ctrl-C stops them", serving.len());
        let report = serving.until(stop).await?;
        println!("stopped; drained: {}", report.drained);
        return Ok(());
    }

    let summarizer = Summarizer::client(&rt).await?;
    summarizer.core().wait_for_instances_within(std::time::Duration::from_secs(10)).await?;
    let summary = summarizer.summarize("the quick brown fox".into()).await?;
    println!("{} words, the first is {:?}", summary.words, summary.first);
    match summarizer.summarize("   ".into()).await {
        Err(CallError::App { error: TextError::Empty, .. }) => println!("empty text: {}", TextError::Empty),
        other => return Err(format!("expected TextError::Empty, got {other:?}").into()),
    }
    let report = serving.shutdown().await?;
    println!("stopped; drained: {}", report.drained);
    Ok(())
}
// ANCHOR_END: main

// ANCHOR: tests
#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded runtime needs no server: a component's test serves it
    /// and calls it through its typed client, as a program would.
    #[tokio::test]
    async fn the_summary_counts_the_words_the_tokenizer_found() {
        let rt = Runtime::embedded().await.unwrap();
        let tokenizer = Tokenizer::client(&rt).await.unwrap();
        let _serving =
            rt.serving().serve(Tokenizer).await.unwrap().serve(Summarizer { tokenizer }).await.unwrap();
        let summarizer = Summarizer::client(&rt).await.unwrap();
        let summary = summarizer.summarize("one two three".into()).await.unwrap();
        assert_eq!((summary.words, summary.first.as_str()), (3, "one"));
    }

    #[tokio::test]
    async fn an_empty_text_is_the_tokenizers_typed_error_passed_on() {
        let rt = Runtime::embedded().await.unwrap();
        let tokenizer = Tokenizer::client(&rt).await.unwrap();
        let _serving =
            rt.serving().serve(Tokenizer).await.unwrap().serve(Summarizer { tokenizer }).await.unwrap();
        let err = Summarizer::client(&rt).await.unwrap().summarize(" ".into()).await.unwrap_err();
        assert!(matches!(err, CallError::App { error: TextError::Empty, .. }), "{err:?}");
    }
}
// ANCHOR_END: tests
