//! Minifiers: [`DefaultMinifier`] (swc_core for JavaScript, lightningcss for CSS; cargo
//! feature `minify`, on by default) and [`PassThrough`]. Any other implementation of
//! [`Minifier`] can replace them.

use std::sync::Arc;

#[cfg(feature = "minify")]
use thywill_core::CoreError;
use thywill_core::{CoreResult, Minifier};

#[cfg(feature = "minify")]
pub mod css;
#[cfg(feature = "minify")]
pub mod js;

/// Leaves scripts and styles as they are.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassThrough;

impl Minifier for PassThrough {
    fn minify_js(&self, _origin: &str, source: &str) -> CoreResult<String> {
        Ok(source.to_owned())
    }
    fn minify_css(&self, _origin: &str, source: &str) -> CoreResult<String> {
        Ok(source.to_owned())
    }
}

/// JavaScript with swc_core (classic scripts: top-level names are kept), CSS with lightningcss
/// for the browsers of [`css::default_targets`].
///
/// Syntax errors come back as [`CoreError::Component`] from component
/// [`SYNTAX_COMPONENT`](crate::SYNTAX_COMPONENT), with a message that starts with
/// `file:line:column:`.
#[cfg(feature = "minify")]
#[derive(Clone, Debug)]
pub struct DefaultMinifier {
    targets: lightningcss::targets::Targets,
}

#[cfg(feature = "minify")]
impl Default for DefaultMinifier {
    fn default() -> Self {
        Self {
            targets: css::default_targets(),
        }
    }
}

#[cfg(feature = "minify")]
impl DefaultMinifier {
    /// The default minifier.
    pub fn new() -> Self {
        Self::default()
    }

    /// Minifies CSS for these browsers instead of [`css::default_targets`].
    pub fn with_css_targets(mut self, targets: lightningcss::targets::Targets) -> Self {
        self.targets = targets;
        self
    }
}

#[cfg(feature = "minify")]
impl Minifier for DefaultMinifier {
    fn minify_js(&self, origin: &str, source: &str) -> CoreResult<String> {
        js::minify(origin, source).map_err(CoreError::from)
    }
    fn minify_css(&self, origin: &str, source: &str) -> CoreResult<String> {
        css::minify(origin, source, self.targets).map_err(CoreError::from)
    }
}

/// The best minifier compiled in: [`DefaultMinifier`] with the `minify` feature, else
/// [`PassThrough`].
pub fn default_minifier() -> Arc<dyn Minifier> {
    #[cfg(feature = "minify")]
    {
        Arc::new(DefaultMinifier::new())
    }
    #[cfg(not(feature = "minify"))]
    {
        Arc::new(PassThrough)
    }
}
