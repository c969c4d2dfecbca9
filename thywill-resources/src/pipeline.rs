//! The bootstrap pipeline: minify every script and style, merge the page's scripts and styles
//! in weight order into content-hashed bundles, render the pages with the bundles and the
//! inlined client templates, and make precompressed variants.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use thywill_core::{CoreError, Minifier, Resource, ResourceKind, TemplateEngine, attr};

use crate::{ResourcesError, Result, compress, css_urls, minify};

/// `Cache-Control` of content-hashed bundles: cached for a year, never revalidated.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of everything else: cached, but revalidated with the ETag every time.
pub const REVALIDATE: &str = "no-cache";

/// Names of the page template slots (trusted HTML fragments, inserted unescaped).
pub mod slots {
    /// `<link rel="stylesheet">` of the style bundle.
    pub const STYLES: &str = "bootstrap_css";
    /// `<script src data-base defer>` of the script bundle (`data-base` is the base path, for
    /// the client library inside the bundle).
    pub const SCRIPTS: &str = "bootstrap_js";
    /// The bootstrap client templates, each as `<script type="text/template" id="…">`.
    pub const TEMPLATES: &str = "bootstrap_templates";
    /// The page's character encoding, `utf-8`.
    pub const ENCODING: &str = "encoding";
}

/// Settings of a [`Pipeline`].
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    base_path: String,
    minify_js: bool,
    minify_css: bool,
    script_dir: Option<String>,
    style_dir: Option<String>,
    compress: bool,
    compress_min_size: usize,
    brotli_quality: u32,
    gzip_level: u32,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            base_path: String::new(),
            minify_js: true,
            minify_css: true,
            script_dir: None,
            style_dir: None,
            compress: true,
            compress_min_size: 256,
            brotli_quality: 9,
            gzip_level: 9,
        }
    }
}

impl PipelineConfig {
    /// Defaults for a service under `base_path` (such as `/echo`): minified, bundles in
    /// `<base>/js` and `<base>/css`, brotli and gzip variants of text of 256 bytes or more.
    pub fn new(base_path: &str) -> Self {
        Self {
            base_path: base_path.trim_end_matches('/').to_owned(),
            ..Self::default()
        }
    }

    /// Minify scripts and styles (both on by default).
    pub fn with_minify(mut self, on: bool) -> Self {
        self.minify_js = on;
        self.minify_css = on;
        self
    }

    /// Minify scripts.
    pub fn with_minify_js(mut self, on: bool) -> Self {
        self.minify_js = on;
        self
    }

    /// Minify styles.
    pub fn with_minify_css(mut self, on: bool) -> Self {
        self.minify_css = on;
        self
    }

    /// Client directories of the script and style bundles (default `<base>/js`, `<base>/css`).
    pub fn with_bundle_dirs(mut self, scripts: impl Into<String>, styles: impl Into<String>) -> Self {
        self.script_dir = Some(scripts.into().trim_end_matches('/').to_owned());
        self.style_dir = Some(styles.into().trim_end_matches('/').to_owned());
        self
    }

    /// Store brotli and gzip variants (on by default).
    pub fn with_compression(mut self, on: bool) -> Self {
        self.compress = on;
        self
    }

    /// Smallest body worth compressing, in bytes (default 256).
    pub fn with_compression_min_size(mut self, bytes: usize) -> Self {
        self.compress_min_size = bytes;
        self
    }

    /// Brotli quality, 0–11 (default 9: nearly the size of 11 at a fraction of the time).
    pub fn with_brotli_quality(mut self, quality: u32) -> Self {
        self.brotli_quality = quality.min(11);
        self
    }

    /// Gzip level, 0–9 (default 9).
    pub fn with_gzip_level(mut self, level: u32) -> Self {
        self.gzip_level = level.min(9);
        self
    }

    /// The base path.
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    /// Whether scripts are minified.
    pub fn minifies_js(&self) -> bool {
        self.minify_js
    }

    /// Whether styles are minified.
    pub fn minifies_css(&self) -> bool {
        self.minify_css
    }

    fn script_dir(&self) -> String {
        self.script_dir
            .clone()
            .unwrap_or_else(|| format!("{}/js", self.base_path))
    }

    fn style_dir(&self) -> String {
        self.style_dir
            .clone()
            .unwrap_or_else(|| format!("{}/css", self.base_path))
    }
}

/// What [`Pipeline::assemble`] produced.
#[derive(Clone, Debug, Default)]
pub struct Assembly {
    /// Everything to store: the resources given (minified, pages rendered) and the bundles.
    pub resources: Vec<Resource>,
    /// Client path of the script bundle, if the pages have scripts.
    pub script_bundle: Option<String>,
    /// Client path of the style bundle, if the pages have styles.
    pub style_bundle: Option<String>,
    /// Client paths of the rendered pages.
    pub pages: Vec<String>,
}

/// Results of minification by content hash, so that the same file is minified once.
#[derive(Default)]
struct Memo {
    entries: HashMap<String, Arc<[u8]>>,
}

const MEMO_CAPACITY: usize = 256;

/// Minifies, bundles, renders and compresses resources. Cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    config: Arc<PipelineConfig>,
    minifier: Arc<dyn Minifier>,
    templates: Option<Arc<dyn TemplateEngine>>,
    memo: Arc<Mutex<Memo>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("config", &self.config)
            .field("templates", &self.templates.is_some())
            .finish_non_exhaustive()
    }
}

/// A content hash: hex SHA-256.
pub fn content_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a path names an already minified file (`.min.` in its name): it passes through the
/// minifiers untouched.
pub fn is_minified_name(path: &str) -> bool {
    let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
    name.contains(".min.")
}

fn escape_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

fn text_of(r: &Resource) -> Result<&str> {
    r.text().ok_or_else(|| ResourcesError::NotText {
        origin: r.display_name().to_owned(),
    })
}

impl Pipeline {
    /// A pipeline with the best minifier compiled in and no template engine (pages then fail
    /// to assemble: see [`Pipeline::with_templates`]).
    pub fn new(config: PipelineConfig) -> Self {
        Self {
            config: Arc::new(config),
            minifier: minify::default_minifier(),
            templates: None,
            memo: Arc::new(Mutex::new(Memo::default())),
        }
    }

    /// Uses another minifier.
    pub fn with_minifier(mut self, minifier: Arc<dyn Minifier>) -> Self {
        self.minifier = minifier;
        self
    }

    /// Renders pages with this template engine.
    pub fn with_templates(mut self, templates: Arc<dyn TemplateEngine>) -> Self {
        self.templates = Some(templates);
        self
    }

    /// The settings.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    fn minify_memo(&self, r: &Resource, css: bool) -> Result<Arc<[u8]>> {
        let source = text_of(r)?;
        let key = format!(
            "{}:{}",
            if css { "css" } else { "js" },
            content_hash(source.as_bytes())
        );
        if let Some(hit) = self
            .memo
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .get(&key)
        {
            return Ok(hit.clone());
        }
        let origin = r.display_name();
        let out = if css {
            self.minifier.minify_css(origin, source)?
        } else {
            self.minifier.minify_js(origin, source)?
        };
        let out: Arc<[u8]> = Arc::from(out.into_bytes());
        let mut memo = self.memo.lock().unwrap_or_else(PoisonError::into_inner);
        if memo.entries.len() >= MEMO_CAPACITY {
            memo.entries.clear();
        }
        memo.entries.insert(key, out.clone());
        Ok(out)
    }

    fn skips(r: &Resource) -> bool {
        is_minified_name(&r.client_path)
            || r.origin.as_deref().is_some_and(is_minified_name)
            || r.attribute(attr::MINIFIED) == Some("true")
    }

    /// Minifies one script or stylesheet (unless minification of its kind is off, its name has
    /// `.min.`, or it is marked [`attr::MINIFIED`]); other resources pass unchanged.
    pub fn prepare(&self, mut r: Resource) -> Result<Resource> {
        let css = match r.kind {
            ResourceKind::Javascript if self.config.minify_js => false,
            ResourceKind::Css if self.config.minify_css => true,
            _ => return Ok(r),
        };
        if Self::skips(&r) {
            return Ok(r);
        }
        r.body = self.minify_memo(&r, css)?;
        r.attributes.insert(attr::MINIFIED.into(), "true".into());
        Ok(r)
    }

    /// Sets the resource's ETag and makes its precompressed variants (stored under
    /// [`Resource::variant_key`]), recording their codings in [`attr::ENCODINGS`].
    pub fn finish(&self, mut r: Resource) -> (Resource, Vec<Resource>) {
        let hash = content_hash(&r.body);
        let tag = &hash[..32];
        let etag = format!("\"{tag}\"");
        r.attributes.insert(attr::ETAG.into(), etag.clone());
        r.attributes.remove(attr::ENCODINGS);
        let mut variants = Vec::new();
        if self.config.compress
            && compress::is_compressible(r.kind)
            && r.body.len() >= self.config.compress_min_size
            && r.attribute(attr::CONTENT_ENCODING).is_none()
        {
            let made = [
                ("br", compress::brotli(&r.body, self.config.brotli_quality)),
                ("gzip", compress::gzip(&r.body, self.config.gzip_level)),
            ];
            for (coding, body) in made {
                if body.is_empty() || body.len() >= r.body.len() {
                    continue;
                }
                let mut v =
                    Resource::new(Resource::variant_key(&r.client_path, coding), body).with_kind(r.kind);
                v.template_id = r.template_id.clone();
                v.origin = r.origin.clone();
                v.attributes.insert(attr::CONTENT_ENCODING.into(), coding.into());
                v.attributes.insert(attr::VARIANT_OF.into(), etag.clone());
                v.attributes
                    .insert(attr::ETAG.into(), format!("\"{tag}.{coding}\""));
                if let Some(cc) = r.attribute(attr::CACHE_CONTROL) {
                    v.attributes.insert(attr::CACHE_CONTROL.into(), cc.to_owned());
                }
                variants.push(v);
            }
            if !variants.is_empty() {
                let codings: Vec<&str> = variants
                    .iter()
                    .filter_map(|v| v.attribute(attr::CONTENT_ENCODING))
                    .collect();
                let list = codings.join(",");
                r.attributes.insert(attr::ENCODINGS.into(), list);
            }
        }
        (r, variants)
    }

    /// Runs the bootstrap pipeline over every resource a service ships:
    ///
    /// 1. scripts and styles are minified (syntax errors name file, line and column);
    /// 2. bootstrap scripts, in weight order (ties keep their order), are merged into one
    ///    bundle `<base>/js/<hash>.min.js`, each followed by `;\n`; bootstrap styles into
    ///    `<base>/css/<hash>.min.css`, with relative `url()`s rewritten; bundles are served
    ///    as immutable;
    /// 3. bootstrap pages (`text/html`) are rendered with the template engine, with the slots
    ///    of [`slots`] filled in;
    /// 4. everything, bundles included, is returned for storing; non-bootstrap scripts and
    ///    styles stay available, minified, at their own paths (progressive exposure).
    pub fn assemble(&self, inputs: Vec<Resource>) -> Result<Assembly> {
        let mut prepared = inputs
            .into_iter()
            .map(|r| self.prepare(r))
            .collect::<Result<Vec<Resource>>>()?;
        let mut order: Vec<usize> = (0..prepared.len()).filter(|&i| prepared[i].bootstrap).collect();
        order.sort_by_key(|&i| prepared[i].weight);

        let of_kind = |kind: ResourceKind| -> Vec<usize> {
            order
                .iter()
                .copied()
                .filter(|&i| prepared[i].kind == kind)
                .collect()
        };
        let (scripts, styles, templates, pages) = (
            of_kind(ResourceKind::Javascript),
            of_kind(ResourceKind::Css),
            of_kind(ResourceKind::Template),
            of_kind(ResourceKind::Html),
        );

        let mut assembly = Assembly::default();
        let mut bundles = Vec::new();
        if !scripts.is_empty() {
            let mut text = String::new();
            for &i in &scripts {
                text.push_str(text_of(&prepared[i])?);
                text.push_str(";\n");
            }
            let suffix = if self.config.minify_js { "min.js" } else { "js" };
            let path = format!(
                "{}/{}.{suffix}",
                self.config.script_dir(),
                &content_hash(text.as_bytes())[..20]
            );
            bundles.push(self.bundle(path.clone(), text, ResourceKind::Javascript, scripts.len()));
            assembly.script_bundle = Some(path);
        }
        if !styles.is_empty() {
            let mut text = String::new();
            for (n, &i) in styles.iter().enumerate() {
                let r = &prepared[i];
                let css = css_urls::rebase(text_of(r)?, &r.client_path);
                if n > 0 && css.contains("@import") {
                    tracing::warn!(
                        file = r.display_name(),
                        "@import after the first stylesheet of a bundle is ignored by browsers"
                    );
                }
                text.push_str(&css);
                text.push('\n');
            }
            let suffix = if self.config.minify_css { "min.css" } else { "css" };
            let path = format!(
                "{}/{}.{suffix}",
                self.config.style_dir(),
                &content_hash(text.as_bytes())[..20]
            );
            bundles.push(self.bundle(path.clone(), text, ResourceKind::Css, styles.len()));
            assembly.style_bundle = Some(path);
        }

        if !pages.is_empty() {
            let mut slot_values = BTreeMap::new();
            slot_values.insert(
                slots::STYLES.to_owned(),
                assembly
                    .style_bundle
                    .as_deref()
                    .map(|p| format!("<link rel=\"stylesheet\" href=\"{}\">", escape_attr(p)))
                    .unwrap_or_default(),
            );
            slot_values.insert(
                slots::SCRIPTS.to_owned(),
                assembly
                    .script_bundle
                    .as_deref()
                    .map(|p| {
                        // `data-base` tells the client library, bundled inside, its base path.
                        format!(
                            "<script src=\"{}\" data-base=\"{}\" defer></script>",
                            escape_attr(p),
                            escape_attr(&self.config.base_path)
                        )
                    })
                    .unwrap_or_default(),
            );
            let mut inlined = Vec::new();
            for &i in &templates {
                inlined.push(Self::inline_template(&prepared[i])?);
            }
            slot_values.insert(slots::TEMPLATES.to_owned(), inlined.join("\n"));
            slot_values.insert(slots::ENCODING.to_owned(), "utf-8".to_owned());
            let context = serde_json::json!({ "base_path": self.config.base_path });
            for &i in &pages {
                let page = &prepared[i];
                let Some(engine) = &self.templates else {
                    return Err(ResourcesError::Invalid {
                        origin: page.display_name().to_owned(),
                        message: "no template engine to render this page".into(),
                    });
                };
                let html = engine
                    .render_page(&page.client_path, text_of(page)?, &slot_values, &context)
                    .map_err(|e| match e {
                        CoreError::Component { source, .. } => ResourcesError::Invalid {
                            origin: page.display_name().to_owned(),
                            message: source.to_string(),
                        },
                        other => ResourcesError::Component(other),
                    })?;
                let page = &mut prepared[i];
                page.body = Arc::from(html.into_bytes());
                page.attributes
                    .insert(attr::CACHE_CONTROL.into(), REVALIDATE.into());
                assembly.pages.push(page.client_path.clone());
            }
        }

        prepared.extend(bundles);
        assembly.resources = prepared;
        Ok(assembly)
    }

    /// [`Pipeline::assemble`] on tokio's blocking pool (on the calling thread outside a tokio
    /// runtime), for async callers: minifying and rendering a service's resources takes from
    /// milliseconds to seconds, which must not hold up a runtime worker thread.
    pub async fn assemble_async(&self, inputs: Vec<Resource>) -> Result<Assembly> {
        let pipeline = self.clone();
        crate::blocking::run(move || pipeline.assemble(inputs)).await?
    }

    fn bundle(&self, path: String, text: String, kind: ResourceKind, pieces: usize) -> Resource {
        Resource::new(path, text)
            .with_kind(kind)
            .with_origin(format!("bundle of {pieces} files"))
            .with_attribute(attr::CACHE_CONTROL, IMMUTABLE)
            .with_attribute(attr::MINIFIED, "true")
    }

    /// `<script type="text/template" id="…">…</script>` for a client template; its id is its
    /// template id, else its file name without the extension.
    fn inline_template(r: &Resource) -> Result<String> {
        let text = text_of(r)?;
        if text.to_ascii_lowercase().contains("</script") {
            return Err(ResourcesError::Invalid {
                origin: r.display_name().to_owned(),
                message: "a client template cannot contain `</script`".into(),
            });
        }
        Ok(format!(
            "<script type=\"text/template\" id=\"{}\">{text}</script>",
            escape_attr(&template_id(r))
        ))
    }
}

/// The element id of a client template: its template id, else its file name without the
/// extension.
pub fn template_id(r: &Resource) -> String {
    r.template_id.clone().unwrap_or_else(|| {
        let name = r.client_path.rsplit('/').next().unwrap_or(&r.client_path);
        name.split('.').next().unwrap_or(name).to_owned()
    })
}
