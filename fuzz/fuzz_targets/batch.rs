//! A stream's item messages, as a caller reads them: arbitrary bytes, and
//! items written then read.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use rotor_fuzz::bounded;
use rotor_runtime::__fuzz::batch;

#[derive(Arbitrary, Debug)]
struct RoundTrip {
    first: u64,
    items: Vec<Vec<u8>>,
}

fuzz_target!(|data: &[u8]| {
    bounded(data.len(), || {
        batch::decode(data);
        if let Ok(RoundTrip { first, items }) = RoundTrip::arbitrary_take_rest(Unstructured::new(data)) {
            batch::round_trip(first, &items);
        }
    });
});
