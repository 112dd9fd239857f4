//! What the generator refuses, with an error that names the problem.

use localipc_varlink_codegen::{Error, Generator};

fn generate(idl: &str) -> Result<String, Error> {
    Generator::from_text(idl).generate()
}

#[test]
fn an_invalid_description_is_an_idl_error() {
    let e = generate("interface org.example.bad\nmethod Nope(\n").unwrap_err();
    assert!(matches!(e, Error::Idl(_)), "{e}");
    let e = generate("interface org.example.bad\nmethod M(x: Missing) -> ()\n").unwrap_err();
    assert!(matches!(&e, Error::Idl(m) if m.contains("Missing")), "{e}");
}

#[test]
fn a_streaming_method_must_be_described() {
    let e = Generator::from_text("interface org.example.s\nmethod Watch() -> ()\n")
        .streaming(["Wtach"])
        .generate()
        .unwrap_err();
    assert_eq!(e.to_string(), "org.example.s describes no method Wtach");
}

#[test]
fn names_the_generated_code_would_use_twice_are_refused() {
    for (idl, clash) in [
        (
            "interface org.example.c\ntype AddReply (x: int)\nmethod Add() -> ()\n",
            "AddReply",
        ),
        ("interface org.example.c\ntype Error (x: int)\n", "Error"),
        (
            "interface org.example.c\ntype S (ifIndex: int, if_index: int)\n",
            "S.if_index",
        ),
        ("interface org.example.c\ntype E (a_b, aB)\n", "E::AB"),
        // It would hide the typed client's generic parameter.
        ("interface org.example.c\ntype C (x: int)\n", "C"),
        // An anonymous struct is named after its owner and field.
        (
            "interface org.example.c\ntype AInner (x: int)\ntype A (inner: (y: int))\n",
            "AInner",
        ),
    ] {
        let e = generate(idl).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("two items would be named {clash} in the generated code"),
            "{idl}"
        );
    }
}

#[test]
fn a_missing_file_names_its_path() {
    let e = Generator::from_file("no/such/file.varlink")
        .generate()
        .unwrap_err();
    assert!(e.to_string().starts_with("no/such/file.varlink: "), "{e}");
}

#[test]
fn write_needs_a_build_script() {
    // Cargo sets OUT_DIR when it runs a build script, never when it runs tests.
    let e = Generator::from_text("interface org.example.w\n")
        .write()
        .unwrap_err();
    assert!(matches!(e, Error::NoOutDir), "{e}");
}

#[test]
fn keywords_become_raw_identifiers() {
    let code = generate(
        "interface org.example.k\ntype Match (type: int, self: int)\n\
         method Match(ref: string) -> (loop: Match)\n",
    )
    .unwrap();
    assert!(code.contains("pub r#type: i64"), "{code}");
    assert!(code.contains("pub self_: i64"), "{code}");
    assert!(code.contains("#[serde(rename = \"self\")]"), "{code}");
    assert!(
        code.contains("fn r#match(&self, parameters: MatchParameters"),
        "{code}"
    );
    assert!(
        code.contains("fn match_oneway(&mut self, r#ref: "),
        "{code}"
    );
}
