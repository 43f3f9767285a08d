use rotor::prelude::*;

struct Tok;

#[component(namespace = "llm")]
impl Tok {
    #[endpoint]
    async fn client(&self) -> Result<(), String> {
        Ok(())
    }
}

fn main() {}
