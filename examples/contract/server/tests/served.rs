//! The implementation served through its contract, and called with the
//! contract's client, in the embedded mode.

use futures::StreamExt;
use rotor::Runtime;
use tokenizer_contract::{EncodeRequest, TokenizeError, TokenizerClient, TokenizerServer};
use tokenizer_server::ByteTokenizer;

#[tokio::test]
async fn the_contract_client_calls_the_served_implementation() {
    let rt = Runtime::embedded().await.unwrap();
    let server = rt.serve(TokenizerServer(ByteTokenizer)).await.unwrap();
    let client = TokenizerClient::connect(&rt).await.unwrap();
    client.core().wait_for_instances().await.unwrap();

    let hi = client.encode(EncodeRequest { text: "hi".into() }).await.unwrap();
    assert_eq!(hi.tokens, [104, 105]);
    let err = client.encode(EncodeRequest { text: String::new() }).await.unwrap_err();
    assert_eq!(err.into_app().unwrap(), TokenizeError::Empty);
    let streamed: Vec<u32> = client
        .stream_tokens(EncodeRequest { text: "abc".into() })
        .await
        .unwrap()
        .map(|t| t.unwrap())
        .collect()
        .await;
    assert_eq!(streamed, [97, 98, 99]);

    assert_eq!(TokenizerClient::SERVICE, "llm_tokenizer");
    assert_eq!(TokenizerClient::ENCODE_SUBJECT, "llm_tokenizer.encode");
    assert_eq!(server.instance_id(), client.core().instances()[0]);
    server.shutdown().await;
}
