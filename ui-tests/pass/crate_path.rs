//! A program that depends on the runtime crate directly, not on the `rotor`
//! facade, points the generated code at it with `crate = ".."`.

use rotor_runtime::{Runtime, Endpoints};

struct Tok;

#[rotor_macros::component(namespace = "llm", crate = "rotor_runtime")]
impl Tok {
    #[endpoint]
    async fn ping(&self) -> Result<u32, String> {
        Ok(7)
    }
}

#[tokio::main]
async fn main() {
    let rt = Runtime::embedded().await.unwrap();
    let _server = rt.serve(Tok).await.unwrap();
    let client = Tok::client(&rt).await.unwrap();
    assert_eq!(client.ping().await.unwrap(), 7);
    assert_eq!(<Tok as Endpoints>::DESCRIPTOR.service, "llm_tok");
}
