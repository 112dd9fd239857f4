#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod emit;
mod model;
mod names;

use std::path::{Path, PathBuf};

/// Why code could not be generated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The description file could not be read, or the code not written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The description is not valid Varlink IDL, or uses a type it does not define.
    #[error("invalid interface description: {0}")]
    Idl(String),
    /// A method named in [`Generator::streaming`] is not in the description.
    #[error("{interface} describes no method {method}")]
    UnknownMethod {
        /// The interface.
        interface: String,
        /// The method.
        method: String,
    },
    /// Two things of the description would get the same Rust name (a type called
    /// `AddReply` beside a method `Add`, or a type called `Error`, `Method`, `Methods`,
    /// `Client` or `BlockingClient`, which the generated code defines).
    #[error("two items would be named {0} in the generated code")]
    NameClash(String),
    /// `OUT_DIR` is not set: not in a build script.
    #[error("OUT_DIR is not set: call write() from a build script, or use generate()")]
    NoOutDir,
}

/// Generates the code of one interface description.
///
/// ```
/// let code = localipc_varlink_codegen::Generator::from_text(
///     "interface org.example.ping\nmethod Ping(text: string) -> (text: string)\n",
/// )
/// .generate()?;
/// assert!(code.contains("pub trait Methods"));
/// # Ok::<(), localipc_varlink_codegen::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Generator {
    source: Source,
    streaming: Vec<String>,
    runtime: String,
}

#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    Text(String),
}

impl Generator {
    /// The description in the file at `path` (relative paths are relative to the package's
    /// root, where build scripts run).
    pub fn from_file(path: impl AsRef<Path>) -> Self {
        Self::new(Source::File(path.as_ref().to_owned()))
    }

    /// The description `text`.
    pub fn from_text(text: impl Into<String>) -> Self {
        Self::new(Source::Text(text.into()))
    }

    fn new(source: Source) -> Self {
        Self {
            source,
            streaming: Vec::new(),
            runtime: "::localipc_varlink".to_owned(),
        }
    }

    /// Marks methods (unqualified names) as streaming: they are called with `more` and answer
    /// with a stream of replies. The IDL cannot say so; the description's comments usually
    /// do.
    pub fn streaming<S: Into<String>>(mut self, methods: impl IntoIterator<Item = S>) -> Self {
        self.streaming.extend(methods.into_iter().map(Into::into));
        self
    }

    /// The path the generated code names `localipc_varlink` by (`::localipc_varlink`
    /// unless set): for a crate that renames it, or for `localipc_varlink` itself (`crate`).
    pub fn runtime_path(mut self, path: impl Into<String>) -> Self {
        self.runtime = path.into();
        self
    }

    /// The generated code.
    ///
    /// # Errors
    ///
    /// If the description cannot be read or is invalid, a streaming method is not in it, or
    /// two of its items would get the same Rust name.
    pub fn generate(&self) -> Result<String, Error> {
        Ok(self.build()?.1)
    }

    /// The interface's name and its code.
    fn build(&self) -> Result<(String, String), Error> {
        let text = match &self.source {
            Source::File(path) => std::fs::read_to_string(path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?,
            Source::Text(text) => text.clone(),
        };
        let interface = model::build(&text, &self.streaming, &self.runtime)?;
        Ok((
            interface.name.clone(),
            emit::emit(&interface, &self.runtime),
        ))
    }

    /// Writes the generated code to `$OUT_DIR/INTERFACE.rs` (`org.example.counter.rs`), for
    /// `localipc_varlink::include_interface!("org.example.counter")`, and tells cargo to run
    /// the build script again when the description file changes. Returns the file's path.
    ///
    /// # Errors
    ///
    /// As [`generate`](Self::generate), and if the file cannot be written or `OUT_DIR` is not
    /// set.
    pub fn write(&self) -> Result<PathBuf, Error> {
        if let Source::File(path) = &self.source {
            println!("cargo:rerun-if-changed={}", path.display());
        }
        let (name, code) = self.build()?;
        let dir = std::env::var_os("OUT_DIR").ok_or(Error::NoOutDir)?;
        let path = Path::new(&dir).join(format!("{name}.rs"));
        std::fs::write(&path, code).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}
