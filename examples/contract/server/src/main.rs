//! `tokenizer-server`: serves the tokenizer until Ctrl-C or SIGTERM, on the
//! servers the `ROTOR_*` variables name (embedded without them).

use tokenizer_contract::TokenizerServer;
use tokenizer_server::ByteTokenizer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = rotor::Runtime::from_env().await?;
    // ANCHOR: serve
    rt.serve_until_signal(TokenizerServer(ByteTokenizer)).await?;
    // ANCHOR_END: serve
    Ok(())
}
