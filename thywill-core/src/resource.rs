//! Resources served to browsers, and the traits of the components that store, render and
//! minify them: [`ResourceManager`], [`TemplateEngine`], [`Minifier`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{BoxFuture, CoreResult};

/// What kind of content a resource holds, inferred from its path's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// `.html`
    Html,
    /// `.js`
    Javascript,
    /// `.css`
    Css,
    /// `.json`
    Json,
    /// `.tpl`: a client-side template.
    Template,
    /// `.svg`
    Svg,
    /// `.png`
    Png,
    /// `.ico`
    Icon,
    /// `.ts` declarations (`.d.ts`)
    TypeScript,
    /// Anything else: `text/plain`.
    Text,
}

impl ResourceKind {
    /// Infers the kind from a path's extension.
    pub fn from_path(path: &str) -> Self {
        let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("html" | "htm") => Self::Html,
            Some("js" | "mjs") => Self::Javascript,
            Some("css") => Self::Css,
            Some("json") => Self::Json,
            Some("tpl") => Self::Template,
            Some("svg") => Self::Svg,
            Some("png") => Self::Png,
            Some("ico") => Self::Icon,
            Some("ts") => Self::TypeScript,
            _ => Self::Text,
        }
    }

    /// The MIME type to serve, with a charset for text.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Html => "text/html; charset=utf-8",
            Self::Javascript => "text/javascript; charset=utf-8",
            Self::Css => "text/css; charset=utf-8",
            Self::Json => "application/json",
            Self::Template => "text/template; charset=utf-8",
            Self::Svg => "image/svg+xml",
            Self::Png => "image/png",
            Self::Icon => "image/x-icon",
            Self::TypeScript => "text/plain; charset=utf-8",
            Self::Text => "text/plain; charset=utf-8",
        }
    }
}

/// A resource: content served at a client path under a service's base path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// The path the browser requests, such as `/echo/js/echo.js`.
    pub client_path: String,
    /// What it holds.
    pub kind: ResourceKind,
    /// The body.
    pub body: Arc<[u8]>,
    /// Order among bootstrap resources of the same kind: lower comes first.
    pub weight: i32,
    /// Part of the page's bootstrap set (merged into the page and its bundles).
    pub bootstrap: bool,
    /// For client templates: the element id the template is inlined under.
    pub template_id: Option<String>,
    /// Where the content came from (a file path), for error messages.
    pub origin: Option<String>,
    /// Free attributes.
    pub attributes: BTreeMap<String, String>,
}

impl Resource {
    /// A resource from memory; the kind comes from the path's extension.
    pub fn new(client_path: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        let client_path = client_path.into();
        Self {
            kind: ResourceKind::from_path(&client_path),
            client_path,
            body: Arc::from(body.into()),
            weight: 0,
            bootstrap: false,
            template_id: None,
            origin: None,
            attributes: BTreeMap::new(),
        }
    }

    /// Sets the kind explicitly (for paths without a telling extension, such as `/echo/`).
    pub fn with_kind(mut self, kind: ResourceKind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets the weight.
    pub fn with_weight(mut self, weight: i32) -> Self {
        self.weight = weight;
        self
    }

    /// Marks the resource as part of the bootstrap set.
    pub fn bootstrap(mut self) -> Self {
        self.bootstrap = true;
        self
    }

    /// The body as UTF-8 text, if it is.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// Sets the element id a client template is inlined under (`<script type="text/template" id="…">`).
    pub fn with_template_id(mut self, id: impl Into<String>) -> Self {
        self.template_id = Some(id.into());
        self
    }

    /// Records where the content came from (a file path), for error messages.
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Sets a free attribute (see [`attr`] for the names thywill itself reads).
    pub fn with_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// A free attribute's value.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// The name to use in messages about this resource: its origin, else its client path.
    pub fn display_name(&self) -> &str {
        self.origin.as_deref().unwrap_or(&self.client_path)
    }

    /// The storage key of this resource's variant in a content coding (`br`, `gzip`):
    /// `<client path>#<coding>`. A request path never contains `#`, so variants are only
    /// reachable through content negotiation.
    pub fn variant_key(client_path: &str, coding: &str) -> String {
        format!("{client_path}#{coding}")
    }
}

/// Names of the [`Resource::attributes`] that thywill components read and write.
pub mod attr {
    /// `Cache-Control` value to serve (default `no-cache`: revalidate with the ETag).
    pub const CACHE_CONTROL: &str = "cache-control";
    /// A precomputed strong ETag (with its quotes); computed from the body when absent.
    pub const ETAG: &str = "etag";
    /// Comma-separated content codings stored as variants (see [`Resource::variant_key`](super::Resource::variant_key)).
    pub const ENCODINGS: &str = "encodings";
    /// On a variant: the content coding of its body (`br`, `gzip`).
    pub const CONTENT_ENCODING: &str = "content-encoding";
    /// On a variant: the ETag of the resource it was made from, so that a stale variant is
    /// never served for a newer resource.
    pub const VARIANT_OF: &str = "variant-of";
    /// `true` when the body is already minified (minifiers leave it alone).
    pub const MINIFIED: &str = "minified";
    /// Character encoding of a text body; thywill serves and processes UTF-8 only.
    pub const ENCODING: &str = "encoding";
}

/// Stores resources and looks them up by client path: what a resource store implements (with
/// plain `async fn`s); the node stores it as [`DynResourceManager`].
pub trait ResourceManager: Send + Sync + 'static {
    /// Stores (or replaces) a resource.
    fn store(&self, resource: Resource) -> impl Future<Output = CoreResult<()>> + Send;
    /// Loads a resource by client path.
    fn load(&self, client_path: &str) -> impl Future<Output = CoreResult<Option<Resource>>> + Send;
    /// Removes a resource.
    fn remove(&self, client_path: &str) -> impl Future<Output = CoreResult<()>> + Send;
    /// Every bootstrap resource, ordered by weight.
    fn bootstrap(&self) -> impl Future<Output = CoreResult<Vec<Resource>>> + Send;
}

/// Object-safe form of [`ResourceManager`], implemented for every `ResourceManager`: what the
/// node stores (`Arc<dyn DynResourceManager>`). Implement [`ResourceManager`], never this.
pub trait DynResourceManager: Send + Sync + 'static {
    /// See [`ResourceManager::store`].
    fn store(&self, resource: Resource) -> BoxFuture<'_, CoreResult<()>>;
    /// See [`ResourceManager::load`].
    fn load<'a>(&'a self, client_path: &'a str) -> BoxFuture<'a, CoreResult<Option<Resource>>>;
    /// See [`ResourceManager::remove`].
    fn remove<'a>(&'a self, client_path: &'a str) -> BoxFuture<'a, CoreResult<()>>;
    /// See [`ResourceManager::bootstrap`].
    fn bootstrap(&self) -> BoxFuture<'_, CoreResult<Vec<Resource>>>;
}

impl<R: ResourceManager> DynResourceManager for R {
    fn store(&self, resource: Resource) -> BoxFuture<'_, CoreResult<()>> {
        Box::pin(ResourceManager::store(self, resource))
    }
    fn load<'a>(&'a self, client_path: &'a str) -> BoxFuture<'a, CoreResult<Option<Resource>>> {
        Box::pin(ResourceManager::load(self, client_path))
    }
    fn remove<'a>(&'a self, client_path: &'a str) -> BoxFuture<'a, CoreResult<()>> {
        Box::pin(ResourceManager::remove(self, client_path))
    }
    fn bootstrap(&self) -> BoxFuture<'_, CoreResult<Vec<Resource>>> {
        Box::pin(ResourceManager::bootstrap(self))
    }
}

/// Renders templates with a JSON context.
pub trait TemplateEngine: Send + Sync + 'static {
    /// Renders `source` (cached under `name`) with `context`.
    fn render(&self, name: &str, source: &str, context: &serde_json::Value) -> CoreResult<String>;

    /// Renders a page template: `slots` are trusted HTML fragments built by thywill (the
    /// bootstrap styles, scripts and client templates) that must be inserted unescaped;
    /// `context` is data, escaped as the engine escapes.
    ///
    /// The default puts the slots into the context as plain strings, which is right for an
    /// engine that does not escape; escaping engines override it.
    fn render_page(
        &self,
        name: &str,
        source: &str,
        slots: &BTreeMap<String, String>,
        context: &serde_json::Value,
    ) -> CoreResult<String> {
        let mut merged = match context {
            serde_json::Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        for (k, v) in slots {
            merged.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
        self.render(name, source, &serde_json::Value::Object(merged))
    }

    /// Renders a script template (JavaScript): every value printed is written as a JSON
    /// literal (a string comes out quoted and escaped, a map as an object), never as raw text,
    /// so data cannot become code. Used for application scripts rendered at start-up with
    /// their application id, client template ids and values (`thywill_resources::ScriptValues`).
    ///
    /// The default refuses: an engine renders scripts only if it can write values as JSON.
    fn render_script(&self, name: &str, source: &str, context: &serde_json::Value) -> CoreResult<String> {
        let _ = (source, context);
        Err(crate::CoreError::component(
            "templates",
            format!("{name}: this template engine does not render script templates"),
        ))
    }
}

/// Minifies scripts and styles.
pub trait Minifier: Send + Sync + 'static {
    /// Minifies JavaScript; `origin` names the source in error messages.
    fn minify_js(&self, origin: &str, source: &str) -> CoreResult<String>;
    /// Minifies CSS; `origin` names the source in error messages.
    fn minify_css(&self, origin: &str, source: &str) -> CoreResult<String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_and_mime_from_extension() {
        assert_eq!(ResourceKind::from_path("/a/b.JS"), ResourceKind::Javascript);
        assert_eq!(
            ResourceKind::from_path("/a/t.tpl").mime(),
            "text/template; charset=utf-8"
        );
        assert_eq!(ResourceKind::from_path("/a/noext"), ResourceKind::Text);
        let r = Resource::new("/x/page.html", "<p>").with_weight(-3).bootstrap();
        assert_eq!((r.kind, r.weight, r.bootstrap), (ResourceKind::Html, -3, true));
        assert_eq!(r.text(), Some("<p>"));
        let t = Resource::new("/x/t.tpl", "x")
            .with_template_id("x-t")
            .with_origin("static/t.tpl")
            .with_attribute(attr::CACHE_CONTROL, "no-store");
        assert_eq!(t.template_id.as_deref(), Some("x-t"));
        assert_eq!(t.display_name(), "static/t.tpl");
        assert_eq!(t.attribute(attr::CACHE_CONTROL), Some("no-store"));
        assert_eq!(Resource::variant_key("/x/a.js", "br"), "/x/a.js#br");
    }
}
