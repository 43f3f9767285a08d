use rotor::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
#[error("failed")]
struct Failed;

struct Service;

#[component(namespace = "Bad", bogus = 1)]
impl Service {
    #[endpoint(name = "x y")]
    fn ping(&mut self, a: u32, b: u32) -> u32 {
        a + b
    }
}

fn main() {}
