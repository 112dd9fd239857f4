//! Generates the code of every description in `idl/`, as a user's build script would.

fn main() {
    let interfaces = [
        ("idl/io.systemd.Hostname.varlink", &[][..]),
        ("idl/io.systemd.Resolve.varlink", &[][..]),
        ("idl/org.example.everything.varlink", &["Walk"][..]),
        ("../../examples/org.example.counter.varlink", &["Watch"][..]),
    ];
    for (path, streaming) in interfaces {
        if let Err(e) = localipc_varlink_codegen::Generator::from_file(path)
            .streaming(streaming.iter().copied())
            .write()
        {
            panic!("{path}: {e}");
        }
    }
}
