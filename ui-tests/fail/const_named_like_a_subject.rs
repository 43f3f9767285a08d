use rotor::prelude::*;

struct Tok;

#[component(namespace = "llm")]
impl Tok {
    const PING_SUBJECT: &'static str = "mine";

    #[endpoint]
    async fn ping(&self) -> Result<(), String> {
        Ok(())
    }
}

fn main() {}
