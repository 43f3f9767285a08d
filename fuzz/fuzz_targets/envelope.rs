//! The request envelope and the wire version, as a server reads every
//! request: arbitrary bytes as the payload and as header values, arbitrary
//! headers, and envelopes written then read.
#![no_main]

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use rotor_fuzz::{Header, bounded, headers};
use rotor_runtime::__fuzz::envelope;

#[derive(Arbitrary, Debug)]
enum Input {
    Request { headers: Vec<Header>, payload: Vec<u8> },
    RoundTrip { payload: Vec<u8>, secs: u64, nanos: u32 },
}

fuzz_target!(|data: &[u8]| {
    bounded(data.len(), || {
        envelope::bytes(data);
        match Input::arbitrary_take_rest(Unstructured::new(data)) {
            Ok(Input::Request { headers: h, payload }) => envelope::request(&headers(&h), &payload),
            Ok(Input::RoundTrip { payload, secs, nanos }) => {
                envelope::round_trip(&payload, Duration::new(secs, nanos % 1_000_000_000))
            }
            Err(_) => {}
        }
    });
});
