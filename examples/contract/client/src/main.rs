//! `tokenizer-client TEXT`: encodes TEXT with the tokenizer served on the
//! servers the `ROTOR_*` variables name. It depends on the contract crate,
//! not on the server's.

use std::time::Duration;

use tokenizer_contract::{EncodeRequest, TokenizerClient};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let text = std::env::args().nth(1).unwrap_or_else(|| "hello".into());
    let rt = rotor::Runtime::from_env().await?;
    // ANCHOR: call
    let client = TokenizerClient::connect(&rt).await?;
    client.core().wait_for_instances_within(Duration::from_secs(10)).await?;
    let encoded = client.encode(EncodeRequest { text }).await?;
    // ANCHOR_END: call
    println!("{:?}", encoded.tokens);
    Ok(())
}
