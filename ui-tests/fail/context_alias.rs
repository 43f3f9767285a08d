//! The context is recognised by its name: an alias is taken for the
//! request, and the error says so.
use rotor::Context as Ctx;
use rotor::prelude::*;

struct Tok;

#[component(namespace = "llm")]
impl Tok {
    #[endpoint]
    async fn ping(&self, ctx: Ctx) -> Result<String, String> {
        Ok(ctx.endpoint().to_string())
    }
}

fn main() {}
