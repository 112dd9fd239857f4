//! Builds the hand-written C reference server (`c/ref-c-server.c`) with the system C compiler
//! (found and configured by the `cc` crate), into this build's output directory; the suite
//! finds it through `REF_C_SERVER`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "c/ref-c-server.c";
    println!("cargo:rerun-if-changed={source}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("ref-c-server");
    let compiler = cc::Build::new().opt_level(2).get_compiler();
    let status = Command::new(compiler.path())
        .args(["-O2", "-Wall", "-Wextra", "-o"])
        .arg(&out)
        .arg(source)
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "building {source} failed");
    println!("cargo:rustc-env=REF_C_SERVER={}", out.display());
}
