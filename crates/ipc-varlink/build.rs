//! Generates the code of the interfaces the service serves itself from their descriptions in
//! `interfaces/`, as users of the crate generate theirs.

fn main() {
    let interfaces = [
        ("interfaces/org.varlink.service.varlink", &[][..]),
        ("interfaces/io.ipc.Server.varlink", &["Monitor"][..]),
        ("interfaces/io.ipc.Messages.varlink", &["Count"][..]),
    ];
    for (path, streaming) in interfaces {
        if let Err(e) = localipc_varlink_codegen::Generator::from_file(path)
            .streaming(streaming.iter().copied())
            .runtime_path("crate")
            .write()
        {
            panic!("{path}: {e}");
        }
    }
}
