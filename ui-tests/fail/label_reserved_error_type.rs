//! `error_type` labels `rotor_errors_total`; a component's own label of that
//! name would carry it twice and break the scrape.
use rotor::prelude::*;

struct Tok;

#[component(namespace = "llm", labels(error_type = "x"))]
impl Tok {
    #[endpoint]
    async fn ping(&self) -> Result<(), String> {
        Ok(())
    }
}

fn main() {}
