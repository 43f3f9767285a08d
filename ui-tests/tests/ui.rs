//! Every error the macros can raise has a case in `fail/` with its expected
//! output; `pass/` holds what must compile. `TRYBUILD=overwrite cargo test -p
//! rotor-ui-tests` rewrites the `.stderr` snapshots after a deliberate change.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("pass/*.rs");
    t.compile_fail("fail/*.rs");
}
