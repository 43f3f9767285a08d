use rotor::prelude::*;

struct Tok;

#[component(namespace = "llm")]
impl Tok {
    const SERVICE: &'static str = "mine";

    #[endpoint]
    async fn ping(&self) -> Result<(), String> {
        Ok(())
    }
}

fn main() {}
