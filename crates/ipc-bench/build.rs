//! Builds the hand-written C reference server (`c/ref-c-server.c`) with the system C compiler
//! (found and configured by the `cc` crate), into this build's output directory, twice: with
//! `COALESCE` (replies of one read sent together: the suite's reference, `REF_C_SERVER`) and
//! without (a send per reply: `REF_C_NAIVE`).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "c/ref-c-server.c";
    println!("cargo:rerun-if-changed={source}");
    let dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let compiler = cc::Build::new().opt_level(2).get_compiler();
    for (name, defines, variable) in [
        ("ref-c-server", &["-DCOALESCE"][..], "REF_C_SERVER"),
        ("ref-c-naive", &[][..], "REF_C_NAIVE"),
    ] {
        let out = dir.join(name);
        let status = Command::new(compiler.path())
            .args(["-O2", "-Wall", "-Wextra"])
            .args(defines)
            .arg("-o")
            .arg(&out)
            .arg(source)
            .status()
            .expect("run the C compiler");
        assert!(status.success(), "building {source} ({name}) failed");
        println!("cargo:rustc-env={variable}={}", out.display());
    }
}
