//! Generates the code of the examples' Varlink interface (`examples/org.example.counter.varlink`),
//! which the examples and the end-to-end tests use. Neither the examples nor their description
//! are in the published package, whose programs do not need the code: there, nothing is
//! generated.

use std::path::Path;

fn main() {
    let description = Path::new("../../examples/org.example.counter.varlink");
    if !description.exists() {
        // Run again if it appears (`write` says so itself when it is there).
        println!("cargo:rerun-if-changed={}", description.display());
        return;
    }
    if let Err(e) = localipc_varlink_codegen::Generator::from_file(description)
        .streaming(["Watch"])
        .write()
    {
        panic!("{}: {e}", description.display());
    }
}
