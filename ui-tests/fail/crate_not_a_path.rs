use rotor::prelude::*;

struct Tok;

#[component(namespace = "llm", crate = "not a path")]
impl Tok {
    #[endpoint]
    async fn ping(&self) -> Result<(), String> {
        Ok(())
    }
}

fn main() {}
