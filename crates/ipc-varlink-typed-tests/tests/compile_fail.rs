//! An implementation or a call that does not match the description is a build error, with
//! the message rustc gives (kept in `ui/*.stderr`; `TRYBUILD=overwrite` rewrites them).

#[test]
fn mismatches_do_not_compile() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
