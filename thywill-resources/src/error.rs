//! The error type of the resources crate.

use std::path::PathBuf;

use thywill_core::CoreError;

/// Errors of loading, minifying, bundling and storing resources.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResourcesError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A script or stylesheet does not parse.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// The file (or client path) the source came from.
        file: String,
        /// Line, starting at 1.
        line: usize,
        /// Column, starting at 1.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// A text resource (script, style, page, template) is not valid UTF-8.
    #[error("{origin}: not UTF-8 text")]
    NotText {
        /// The file or client path.
        origin: String,
    },
    /// A manifest could not be understood.
    #[error("manifest {origin}: {message}")]
    Manifest {
        /// The manifest file, or `<rust>` for manifests declared in code.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A resource cannot be used as declared (for example a client template containing
    /// `</script`).
    #[error("{origin}: {message}")]
    Invalid {
        /// The file or client path.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A pluggable component (minifier, template engine, store) failed.
    #[error(transparent)]
    Component(#[from] CoreError),
}

impl ResourcesError {
    /// Whether this is a syntax error in a script or stylesheet (including one reported by a
    /// replacement minifier through the [`Minifier`](thywill_core::Minifier) trait).
    pub fn is_syntax(&self) -> bool {
        match self {
            Self::Syntax { .. } => true,
            Self::Component(CoreError::Component { component, .. }) => *component == crate::SYNTAX_COMPONENT,
            _ => false,
        }
    }
}

impl From<ResourcesError> for CoreError {
    fn from(e: ResourcesError) -> Self {
        match e {
            ResourcesError::Component(inner) => inner,
            e @ ResourcesError::Syntax { .. } => CoreError::component(crate::SYNTAX_COMPONENT, e),
            other => CoreError::component("resources", other),
        }
    }
}

/// `Result` with [`ResourcesError`].
pub type Result<T, E = ResourcesError> = std::result::Result<T, E>;
