//! An upper-case namespace in a component that is then served, whose client
//! is built and called: the name is the one error, nothing at the uses.
use rotor::prelude::*;

struct Tok;

#[component(namespace = "LLM")]
impl Tok {
    #[endpoint]
    async fn encode(&self, text: String) -> Result<Vec<u32>, String> {
        Ok(text.bytes().map(u32::from).collect())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::embedded().await?;
    let _server = rt.serve(Tok).await?;
    let client = Tok::client(&rt).await?;
    let _tokens = client.encode("hi".into()).await?;
    println!("{} {}", Tok::SERVICE, Tok::ENCODE_SUBJECT);
    Ok(())
}
