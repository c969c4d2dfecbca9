//! Resources for thywill-rs: what a service ships to browsers, and how it is made fast to load
//! and safe to cache.
//!
//! - The resource model is [`thywill_core::Resource`] (client path, kind and MIME type from the
//!   extension, weight, template id, origin, free attributes); [`Entry`] and [`Manifest`]
//!   declare resources from memory or files, in Rust or in a JSON manifest file.
//! - [`Pipeline`] runs the bootstrap pipeline: scripts minified with swc_core and styles with
//!   lightningcss ([`DefaultMinifier`], or any [`Minifier`](thywill_core::Minifier)), merged in
//!   weight order into content-hashed bundles served as immutable, pages rendered with a
//!   [`TemplateEngine`](thywill_core::TemplateEngine) (slots in [`slots`]), brotli and gzip
//!   variants made once.
//! - Application scripts can be templates rendered at start-up with their application id,
//!   the page's client template ids and values the application supplies, every value written
//!   as JSON ([`Entry::rendered`], [`ScriptValues`], module [`script`]).
//! - [`PreparedStore`] wraps any [`ResourceManager`](thywill_core::ResourceManager) so that
//!   resources stored while running go through the same steps.
//!
//! Minification and compression are CPU-heavy (milliseconds per script in release builds,
//! far more in debug builds). The synchronous [`Pipeline`] methods run on the calling thread;
//! the async entry points ([`Pipeline::assemble_async`], [`PreparedStore`]'s `store`) run them
//! on tokio's blocking pool, so that a runtime's worker threads keep serving meanwhile.
//!
//! Serving (ETag and 304, `Cache-Control`, content negotiation of the variants) is done by
//! the transport's routes from the attributes this crate sets (see
//! [`thywill_core::attr`]).
//!
//! ## Cargo features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `minify` | yes | [`DefaultMinifier`]: swc_core and lightningcss. Without it scripts and styles are bundled unminified (and clean builds are about twice as fast). |
#![cfg_attr(docsrs, feature(doc_cfg))]

mod blocking;
mod compress;
pub mod css_urls;
mod error;
mod manifest;
pub mod minify;
mod pipeline;
pub mod script;
mod store;

pub use compress::{brotli, gzip, is_compressible};
pub use error::{ResourcesError, Result};
pub use manifest::{Entry, Manifest, Source, is_text};
#[cfg(feature = "minify")]
#[cfg_attr(docsrs, doc(cfg(feature = "minify")))]
pub use minify::DefaultMinifier;
pub use minify::{PassThrough, default_minifier};
pub use pipeline::{
    Assembly, IMMUTABLE, Pipeline, PipelineConfig, REVALIDATE, content_hash, is_minified_name, slots,
    template_id,
};
pub use script::ScriptValues;
pub use store::PreparedStore;

/// The component name of syntax errors crossing the [`Minifier`](thywill_core::Minifier)
/// trait as [`CoreError::Component`](thywill_core::CoreError::Component).
pub const SYNTAX_COMPONENT: &str = "syntax";
