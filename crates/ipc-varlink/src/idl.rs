//! Interface descriptions: the Varlink IDL text of an interface, parsed and validated by
//! `zlink-idl`, and what a service needs of it (the interface name, its methods and their input
//! parameter types). A call whose parameters do not fit the method's types is answered with
//! `InvalidParameter` naming the first parameter that does not fit.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use zlink_idl::{CustomType, Field, Type};

use crate::error::BuildError;

/// A parsed interface description.
#[derive(Debug, Clone)]
pub struct Description {
    name: String,
    text: Arc<str>,
    methods: HashMap<String, Vec<(String, Ty)>>,
    types: Arc<HashMap<String, Ty>>,
}

/// A parameter type, owned (the parsed tree borrows from the text).
#[derive(Debug, Clone)]
pub(crate) enum Ty {
    Bool,
    Int,
    Float,
    String,
    Object,
    Any,
    Optional(Box<Ty>),
    Array(Box<Ty>),
    Map(Box<Ty>),
    Named(String),
    Enum(Vec<String>),
    Struct(Vec<(String, Ty)>),
}

impl Description {
    /// Parses `idl`, an interface description in the Varlink IDL.
    ///
    /// # Errors
    ///
    /// [`BuildError::Idl`] if the text is not a valid description.
    pub fn parse(idl: impl Into<String>) -> Result<Self, BuildError> {
        let text: Arc<str> = Arc::from(idl.into());
        let parsed =
            zlink_idl::Interface::try_from(&*text).map_err(|e| BuildError::Idl(e.to_string()))?;
        let methods = parsed
            .methods()
            .map(|m| (m.name().to_string(), fields(m.inputs())))
            .collect();
        let types = parsed
            .custom_types()
            .map(|t| {
                let ty = match t {
                    CustomType::Object(o) => Ty::Struct(fields(o.fields())),
                    CustomType::Enum(e) => {
                        Ty::Enum(e.variants().map(|v| v.name().to_string()).collect())
                    }
                };
                (t.name().to_string(), ty)
            })
            .collect();
        Ok(Self {
            name: parsed.name().to_string(),
            text,
            methods,
            types: Arc::new(types),
        })
    }

    /// The interface's name, such as `org.example.ftl`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The description as written, which `GetInterfaceDescription` returns.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the interface describes a method of this (unqualified) name.
    pub fn has_method(&self, method: &str) -> bool {
        self.methods.contains_key(method)
    }

    /// The names of the methods the interface describes.
    pub fn methods(&self) -> impl Iterator<Item = &str> {
        self.methods.keys().map(String::as_str)
    }

    /// The first input parameter of `method` that `parameters` does not fit (missing, of the
    /// wrong type, or not described), or `None` if they fit.
    pub(crate) fn invalid_parameter(&self, method: &str, parameters: &Value) -> Option<String> {
        let inputs = self.methods.get(method)?;
        let Value::Object(given) = parameters else {
            return Some("parameters".to_owned());
        };
        for (name, ty) in inputs {
            let fits = match given.get(name) {
                Some(value) => self.fits(ty, value, 0),
                None => matches!(ty, Ty::Optional(_)),
            };
            if !fits {
                return Some(name.clone());
            }
        }
        given
            .keys()
            .find(|key| !inputs.iter().any(|(name, _)| name == *key))
            .cloned()
    }

    fn fits(&self, ty: &Ty, value: &Value, depth: usize) -> bool {
        // Named types may refer to each other; JSON nesting bounds the walk anyway.
        if depth > 64 {
            return false;
        }
        match (ty, value) {
            (Ty::Optional(_), Value::Null) => true,
            (Ty::Optional(inner), v) => self.fits(inner, v, depth + 1),
            (Ty::Bool, Value::Bool(_)) => true,
            // An IDL `int` is a 64-bit signed integer.
            (Ty::Int, Value::Number(n)) => n.is_i64(),
            (Ty::Float, Value::Number(_)) => true,
            (Ty::String, Value::String(_)) => true,
            (Ty::Object, Value::Object(_)) | (Ty::Any, _) => true,
            (Ty::Array(inner), Value::Array(items)) => {
                items.iter().all(|v| self.fits(inner, v, depth + 1))
            }
            (Ty::Map(inner), Value::Object(map)) => {
                map.values().all(|v| self.fits(inner, v, depth + 1))
            }
            (Ty::Enum(variants), Value::String(s)) => variants.iter().any(|v| v == s),
            (Ty::Struct(fields), Value::Object(map)) => {
                fields.iter().all(|(name, ty)| match map.get(name) {
                    Some(v) => self.fits(ty, v, depth + 1),
                    None => matches!(ty, Ty::Optional(_)),
                })
            }
            (Ty::Named(name), v) => match self.types.get(name) {
                Some(ty) => self.fits(ty, v, depth + 1),
                None => true,
            },
            _ => false,
        }
    }
}

fn fields<'a>(fields: impl Iterator<Item = &'a Field<'a>>) -> Vec<(String, Ty)> {
    fields.map(|f| (f.name().to_string(), ty(f.ty()))).collect()
}

fn ty(t: &Type<'_>) -> Ty {
    match t {
        Type::Bool => Ty::Bool,
        Type::Int => Ty::Int,
        Type::Float => Ty::Float,
        Type::String => Ty::String,
        Type::ForeignObject => Ty::Object,
        Type::Any => Ty::Any,
        Type::Optional(inner) => Ty::Optional(Box::new(ty(inner))),
        Type::Array(inner) => Ty::Array(Box::new(ty(inner))),
        Type::Map(inner) => Ty::Map(Box::new(ty(inner))),
        Type::Custom(name) => Ty::Named(name.to_string()),
        Type::Enum(variants) => Ty::Enum(variants.iter().map(|v| v.name().to_string()).collect()),
        Type::Object(f) => Ty::Struct(fields(f.iter())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const IDL: &str = "\
# A test interface.
interface org.example.test

type Point (x: int, y: int)

# Moves a point.
method Move(point: Point, by: ?int, mode: (fast, slow)) -> (point: Point)

error Stuck (why: string)
";

    #[test]
    fn parses_the_interface_and_finds_the_parameter_that_does_not_fit() {
        let d = Description::parse(IDL).unwrap();
        assert_eq!(d.name(), "org.example.test");
        assert!(d.has_method("Move") && !d.has_method("Stay"));
        let good = json!({"point": {"x": 1, "y": 2}, "mode": "fast"});
        assert_eq!(d.invalid_parameter("Move", &good), None);
        let cases = [
            (json!({"mode": "fast"}), "point"),
            (json!({"point": {"x": 1}, "mode": "fast"}), "point"),
            (json!({"point": {"x": 1, "y": 2}, "mode": "warp"}), "mode"),
            (
                json!({"point": {"x": 1, "y": 2}, "mode": "slow", "by": "3"}),
                "by",
            ),
            (
                json!({"point": {"x": 1, "y": 2}, "mode": "slow", "extra": 1}),
                "extra",
            ),
        ];
        for (parameters, bad) in cases {
            assert_eq!(
                d.invalid_parameter("Move", &parameters).as_deref(),
                Some(bad),
                "{parameters}"
            );
        }
    }

    #[test]
    fn refuses_text_that_is_not_idl() {
        assert!(matches!(
            Description::parse("interface"),
            Err(BuildError::Idl(_))
        ));
        assert!(Description::parse("method Foo() -> ()").is_err());
    }
}
