//! An interface description as the emitter needs it: every type named (anonymous structs and
//! enums get names from where they appear), every name a Rust name, every Rust type spelled,
//! recursive types boxed.

use std::collections::{HashMap, HashSet};

use zlink_idl::{Comment, CustomType, Field, Type};

use crate::Error;
use crate::names::{ident, pascal, snake};

/// One interface, ready to emit.
pub(crate) struct Interface {
    pub name: String,
    pub text: String,
    pub doc: Vec<String>,
    pub types: Vec<TypeDef>,
    pub methods: Vec<Method>,
    pub errors: Vec<ErrorDef>,
}

/// A struct or an enum of the generated code.
pub(crate) enum TypeDef {
    Struct {
        name: String,
        doc: Vec<String>,
        fields: Vec<FieldDef>,
    },
    Enum {
        name: String,
        doc: Vec<String>,
        variants: Vec<Variant>,
    },
}

/// A field of a struct, a parameter of a method or of an error.
pub(crate) struct FieldDef {
    /// As the description spells it.
    pub wire: String,
    /// The Rust identifier.
    pub rust: String,
    /// The Rust type.
    pub ty: String,
    pub doc: Vec<String>,
    /// `?type`: may be absent.
    pub optional: bool,
}

/// A variant of an enum type.
pub(crate) struct Variant {
    pub wire: String,
    pub rust: String,
    pub doc: Vec<String>,
}

/// A method.
pub(crate) struct Method {
    pub wire: String,
    /// Its name in snake_case (`get_info`), which its Rust functions start with.
    pub snake: String,
    pub doc: Vec<String>,
    pub inputs: Vec<FieldDef>,
    pub outputs: Vec<FieldDef>,
    /// Answered with a stream of replies (called with `more`).
    pub streaming: bool,
}

/// An error the interface declares.
pub(crate) struct ErrorDef {
    pub wire: String,
    pub rust: String,
    pub doc: Vec<String>,
    pub fields: Vec<FieldDef>,
}

impl Method {
    /// The name of its Rust functions: raw if Rust reserves it (`r#match`).
    pub fn rust(&self) -> String {
        ident(&self.snake)
    }

    /// The name of the client's one-way function (`get_info_oneway`).
    pub fn oneway(&self) -> String {
        format!("{}_oneway", self.snake)
    }

    pub fn parameters(&self) -> String {
        format!("{}Parameters", self.wire)
    }

    pub fn reply(&self) -> String {
        format!("{}Reply", self.wire)
    }
}

/// Names the generated code always defines beside the description's types, and the names of
/// its generic parameters (`Client<C>`, `interface<T>`), which a type of the same name would be
/// hidden by.
const RESERVED: &[&str] = &[
    "Error",
    "Method",
    "Methods",
    "Client",
    "BlockingClient",
    "C",
    "T",
];

/// Builds the model of `text`; `streaming` names the methods answered with a stream.
pub(crate) fn build(text: &str, streaming: &[String], runtime: &str) -> Result<Interface, Error> {
    let parsed = zlink_idl::Interface::try_from(text).map_err(|e| Error::Idl(e.to_string()))?;
    let named: HashMap<String, &CustomType<'_>> = parsed
        .custom_types()
        .map(|t| (t.name().to_string(), t))
        .collect();
    for method in streaming {
        if !parsed.methods().any(|m| m.name().to_string() == *method) {
            return Err(Error::UnknownMethod {
                interface: parsed.name().to_string(),
                method: method.clone(),
            });
        }
    }
    let mut builder = Builder {
        named: &named,
        runtime,
        types: Vec::new(),
    };
    for custom in parsed.custom_types() {
        let name = custom.name().to_string();
        match custom {
            CustomType::Object(object) => {
                let doc = comments(object.comments());
                let fields = builder.fields(object.fields(), &name, Some(&name))?;
                builder.types.push(TypeDef::Struct { name, doc, fields });
            }
            CustomType::Enum(e) => {
                let doc = comments(e.comments());
                let variants = variants(e.variants().map(|v| (v.name().to_string(), v.comments())));
                builder.types.push(TypeDef::Enum {
                    name,
                    doc,
                    variants,
                });
            }
        }
    }
    let mut methods = Vec::new();
    for method in parsed.methods() {
        let wire = method.name().to_string();
        let mut m = Method {
            snake: snake(&wire),
            doc: comments(method.comments()),
            inputs: Vec::new(),
            outputs: Vec::new(),
            streaming: streaming.contains(&wire),
            wire,
        };
        m.inputs = builder.fields(method.inputs(), &m.parameters(), None)?;
        m.outputs = builder.fields(method.outputs(), &m.reply(), None)?;
        methods.push(m);
    }
    let mut errors = Vec::new();
    for error in parsed.errors() {
        let wire = error.name().to_string();
        let fields = builder.fields(error.fields(), &wire, None)?;
        errors.push(ErrorDef {
            rust: wire.clone(),
            doc: comments(error.comments()),
            fields,
            wire,
        });
    }
    let interface = Interface {
        name: parsed.name().to_string(),
        text: text.to_owned(),
        doc: comments(parsed.comments()),
        types: builder.types,
        methods,
        errors,
    };
    check_names(&interface)?;
    Ok(interface)
}

/// Every generated type name once, and every Rust field name once per struct.
fn check_names(interface: &Interface) -> Result<(), Error> {
    let mut seen: HashSet<&str> = RESERVED.iter().copied().collect();
    let defined = interface.types.iter().map(|t| match t {
        TypeDef::Struct { name, .. } | TypeDef::Enum { name, .. } => name.clone(),
    });
    let per_method = interface
        .methods
        .iter()
        .flat_map(|m| [m.parameters(), m.reply()]);
    let names: Vec<String> = defined.chain(per_method).collect();
    for name in &names {
        if !seen.insert(name) {
            return Err(Error::NameClash(name.clone()));
        }
    }
    for ty in &interface.types {
        if let TypeDef::Enum { name, variants, .. } = ty {
            let mut names = HashSet::new();
            for v in variants {
                if !names.insert(v.rust.as_str()) {
                    return Err(Error::NameClash(format!("{name}::{}", v.rust)));
                }
            }
        }
    }
    let field_sets = interface
        .types
        .iter()
        .filter_map(|t| match t {
            TypeDef::Struct { name, fields, .. } => Some((name.as_str(), fields)),
            TypeDef::Enum { .. } => None,
        })
        .chain(
            interface
                .errors
                .iter()
                .map(|e| (e.wire.as_str(), &e.fields)),
        )
        .chain(
            interface
                .methods
                .iter()
                .flat_map(|m| [(m.wire.as_str(), &m.inputs), (m.wire.as_str(), &m.outputs)]),
        );
    for (owner, fields) in field_sets {
        let mut names = HashSet::new();
        for field in fields {
            if !names.insert(field.rust.as_str()) {
                return Err(Error::NameClash(format!("{owner}.{}", field.rust)));
            }
        }
    }
    let mut functions = HashSet::new();
    for method in &interface.methods {
        for f in [method.rust(), method.oneway()] {
            if !functions.insert(f.clone()) {
                return Err(Error::NameClash(f));
            }
        }
    }
    Ok(())
}

fn comments<'a>(comments: impl Iterator<Item = &'a Comment<'a>>) -> Vec<String> {
    comments.map(|c| c.text().to_owned()).collect()
}

fn variants<'a>(
    variants: impl Iterator<Item = (String, impl Iterator<Item = &'a Comment<'a>>)>,
) -> Vec<Variant> {
    variants
        .map(|(wire, docs)| Variant {
            rust: match pascal(&wire) {
                name if name == "Self" => "Self_".to_owned(),
                name => name,
            },
            doc: comments(docs),
            wire,
        })
        .collect()
}

struct Builder<'i, 'a> {
    named: &'i HashMap<String, &'i CustomType<'a>>,
    /// The path of `localipc_varlink`.
    runtime: &'i str,
    /// The types defined so far, anonymous ones included.
    types: Vec<TypeDef>,
}

impl Builder<'_, '_> {
    /// The fields of a struct named `owner`; `root` is the named type they are part of (their
    /// own or one an anonymous struct is nested in), whose cycles need a box.
    fn fields<'f>(
        &mut self,
        fields: impl Iterator<Item = &'f Field<'f>>,
        owner: &str,
        root: Option<&str>,
    ) -> Result<Vec<FieldDef>, Error> {
        let mut out = Vec::new();
        for field in fields {
            let wire = field.name().to_string();
            let context = format!("{owner}{}", pascal(&snake(&wire)));
            let ty = field.ty();
            out.push(FieldDef {
                rust: ident(&snake(&wire)),
                optional: matches!(ty, Type::Optional(_)),
                ty: self.rust_type(ty, &context, root)?,
                doc: comments(field.comments()),
                wire,
            });
        }
        Ok(out)
    }

    /// The Rust type of `ty`, defining anonymous types under the name `context`.
    fn rust_type(
        &mut self,
        ty: &Type<'_>,
        context: &str,
        root: Option<&str>,
    ) -> Result<String, Error> {
        Ok(match ty {
            Type::Bool => "bool".to_owned(),
            Type::Int => "i64".to_owned(),
            Type::Float => "f64".to_owned(),
            Type::String => "::std::string::String".to_owned(),
            Type::ForeignObject => format!(
                "{0}::__private::serde_json::Map<::std::string::String, {0}::__private::serde_json::Value>",
                self.runtime
            ),
            Type::Any => format!("{}::__private::serde_json::Value", self.runtime),
            Type::Optional(inner) => {
                format!(
                    "::std::option::Option<{}>",
                    self.rust_type(inner, context, root)?
                )
            }
            // What arrays and maps hold is on the heap already: no box needed.
            Type::Array(inner) => {
                format!("::std::vec::Vec<{}>", self.rust_type(inner, context, None)?)
            }
            Type::Map(inner) => format!(
                "::std::collections::BTreeMap<::std::string::String, {}>",
                self.rust_type(inner, context, None)?
            ),
            Type::Custom(name) => {
                let name = name.to_string();
                if !self.named.contains_key(&name) {
                    return Err(Error::Idl(format!("type {name} is used but not defined")));
                }
                match root {
                    Some(root) if self.reaches(&name, root, &mut HashSet::new()) => {
                        format!("::std::boxed::Box<{name}>")
                    }
                    _ => name,
                }
            }
            Type::Enum(list) => {
                let variants = variants(list.iter().map(|v| (v.name().to_string(), v.comments())));
                self.types.push(TypeDef::Enum {
                    name: context.to_owned(),
                    doc: vec![format!(
                        "`{context}`: one of the values the description lists."
                    )],
                    variants,
                });
                context.to_owned()
            }
            Type::Object(list) => {
                let fields = self.fields(list.iter(), context, root)?;
                self.types.push(TypeDef::Struct {
                    name: context.to_owned(),
                    doc: vec![format!("`{context}`: a struct the description nests.")],
                    fields,
                });
                context.to_owned()
            }
        })
    }

    /// Whether the named type `from` holds a `target` directly (not behind an array or a
    /// map, which are on the heap already), so that holding it inline would be infinite.
    fn reaches(&self, from: &str, target: &str, seen: &mut HashSet<String>) -> bool {
        if from == target {
            return true;
        }
        if !seen.insert(from.to_owned()) {
            return false;
        }
        let Some(CustomType::Object(object)) = self.named.get(from).copied() else {
            return false;
        };
        object
            .fields()
            .any(|f| self.type_reaches(f.ty(), target, seen))
    }

    fn type_reaches(&self, ty: &Type<'_>, target: &str, seen: &mut HashSet<String>) -> bool {
        match ty {
            Type::Custom(name) => self.reaches(name.as_ref(), target, seen),
            Type::Optional(inner) => self.type_reaches(inner, target, seen),
            Type::Object(fields) => fields
                .iter()
                .any(|f| self.type_reaches(f.ty(), target, seen)),
            _ => false,
        }
    }
}
