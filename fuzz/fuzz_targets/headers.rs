//! Header maps, and what the exchange reads from the headers of a reply or
//! a request it did not write: the failure, the instance, the trace.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use rotor_fuzz::{Header, Name, Value, bounded, headers};
use rotor_runtime::__fuzz::{NAMES, headers as check};

#[derive(Arbitrary, Debug)]
enum Op {
    Insert(Name, Value),
    Get(Name),
}

#[derive(Arbitrary, Debug)]
enum Input {
    Map(Vec<Op>),
    Reply { headers: Vec<Header>, payload: Vec<u8> },
    Failure { kind: u8, text: String, error: String },
    Instance(i64),
}

fuzz_target!(|data: &[u8]| {
    bounded(data.len(), || {
        // The bytes as the value of every header Rotor reads.
        let text = String::from_utf8_lossy(data).into_owned();
        let every: Vec<_> = NAMES.iter().map(|n| (n.to_string(), text.clone())).collect();
        check::reply(&every, data);
        match Input::arbitrary_take_rest(Unstructured::new(data)) {
            Ok(Input::Map(ops)) => {
                let ops: Vec<_> = ops
                    .iter()
                    .map(|op| match op {
                        Op::Insert(n, v) => check::Op::Insert(n.build(), v.build()),
                        Op::Get(n) => check::Op::Get(n.build()),
                    })
                    .collect();
                check::map(&ops);
            }
            Ok(Input::Reply { headers: h, payload }) => check::reply(&headers(&h), &payload),
            Ok(Input::Failure { kind, text, error }) => {
                check::failure_round_trip(check::kind(kind), &text, &error)
            }
            Ok(Input::Instance(id)) => check::instance_round_trip(id),
            Err(_) => {}
        }
    });
});
