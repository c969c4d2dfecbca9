//! Bootstrap manifests: the list of files a service ships to browsers, declared in Rust or in
//! a JSON manifest file.
//!
//! ```
//! use thywill_resources::{Entry, Manifest, Source};
//! use thywill_core::ResourceKind;
//!
//! let manifest = Manifest::new()
//!     .entry(Entry::new("/app/", Source::inline("index.html", "<html>{{ bootstrap_js }}</html>")).kind(ResourceKind::Html))
//!     .entry(Entry::new("/app/js/app.js", Source::inline("app.js", "var app = 1;")).weight(10))
//!     .entry(Entry::new("/app/js/later.js", Source::inline("later.js", "var later = 1;")).on_demand());
//! let resources = manifest.resources()?;
//! assert_eq!(resources.len(), 3);
//! assert!(resources[0].bootstrap && !resources[2].bootstrap);
//! # Ok::<(), thywill_resources::ResourcesError>(())
//! ```
//!
//! A manifest file (JSON) names files relative to its own directory (or to `root`, itself
//! relative to the manifest); a missing `path` is `base` + `/` + the file's path:
//!
//! ```json
//! {
//!   "base": "/app",
//!   "root": "static",
//!   "entries": [
//!     { "file": "index.html", "path": "/app/", "kind": "html" },
//!     { "file": "js/vendor.min.js", "weight": -10 },
//!     { "file": "js/app.js", "weight": 10 },
//!     { "file": "css/app.css" },
//!     { "file": "tpl/row.tpl", "template_id": "app-row" },
//!     { "file": "js/extra.js", "bootstrap": false }
//!   ]
//! }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use thywill_core::{Resource, ResourceKind, TemplateEngine, attr};

use crate::script::{self, ScriptValues};
use crate::{ResourcesError, Result};

/// Where an entry's content comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A file, read when the manifest's resources are loaded (at start-up).
    File(PathBuf),
    /// Content compiled into the program (see [`embed!`](crate::embed)); `origin` names it
    /// in error messages.
    Inline {
        /// The file it came from, for messages.
        origin: String,
        /// The content.
        body: Arc<[u8]>,
    },
}

impl Source {
    /// A file read at start-up.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::File(path.into())
    }

    /// Content from memory.
    pub fn inline(origin: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Self::Inline {
            origin: origin.into(),
            body: Arc::from(body.into()),
        }
    }

    fn origin(&self) -> String {
        match self {
            Self::File(p) => p.display().to_string(),
            Self::Inline { origin, .. } => origin.clone(),
        }
    }
}

/// Compiles a file of the calling crate into the program, as a [`Source`] whose origin is the
/// file's full path: `embed!("static/app.js")` (the path is relative to the crate's
/// `Cargo.toml`).
#[macro_export]
macro_rules! embed {
    ($path:literal) => {
        $crate::Source::inline(
            concat!(env!("CARGO_MANIFEST_DIR"), "/", $path),
            &include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $path))[..],
        )
    };
}

/// One resource of a manifest.
#[derive(Clone, Debug)]
pub struct Entry {
    client_path: String,
    source: Source,
    kind: Option<ResourceKind>,
    weight: i32,
    bootstrap: bool,
    template_id: Option<String>,
    attributes: BTreeMap<String, String>,
    script: Option<ScriptValues>,
}

impl Entry {
    /// A bootstrap resource served at `client_path`; the kind comes from the client path's
    /// extension, else from the source file's.
    pub fn new(client_path: impl Into<String>, source: Source) -> Self {
        Self {
            client_path: client_path.into(),
            source,
            kind: None,
            weight: 0,
            bootstrap: true,
            template_id: None,
            attributes: BTreeMap::new(),
            script: None,
        }
    }

    /// Makes this script a template rendered at start-up with `values` (its application id,
    /// the page's client template ids and values the application supplies; see
    /// [`crate::script`]). [`Manifest::render`] renders it; [`Manifest::resources`] refuses it.
    pub fn rendered(mut self, values: ScriptValues) -> Self {
        self.script = Some(values);
        self
    }

    /// The values of a script template ([`Entry::rendered`]).
    pub fn script_values(&self) -> Option<&ScriptValues> {
        self.script.as_ref()
    }

    /// Sets the kind (needed for pages served at `/app/`).
    pub fn kind(mut self, kind: ResourceKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Order among the bootstrap resources of its kind: lower comes first.
    pub fn weight(mut self, weight: i32) -> Self {
        self.weight = weight;
        self
    }

    /// Stored, minified and served, but not part of the page: the client loads it on demand
    /// (`Thywill.load…`) or when the server exposes it.
    pub fn on_demand(mut self) -> Self {
        self.bootstrap = false;
        self
    }

    /// Sets the element id a client template is inlined under.
    pub fn template_id(mut self, id: impl Into<String>) -> Self {
        self.template_id = Some(id.into());
        self
    }

    /// Sets a free attribute.
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// The client path.
    pub fn client_path(&self) -> &str {
        &self.client_path
    }

    /// Reads the entry into a resource. Text resources must be UTF-8 (a byte-order mark is
    /// dropped). A script template ([`Entry::rendered`]) comes unrendered.
    pub fn load(&self) -> Result<Resource> {
        let origin = self.source.origin();
        let body: Vec<u8> = match &self.source {
            Source::File(path) => std::fs::read(path).map_err(|source| ResourcesError::Io {
                path: path.clone(),
                source,
            })?,
            Source::Inline { body, .. } => body.to_vec(),
        };
        let kind = self.kind.unwrap_or_else(|| {
            let k = ResourceKind::from_path(&self.client_path);
            if k == ResourceKind::Text {
                ResourceKind::from_path(&origin)
            } else {
                k
            }
        });
        let body = if is_text(kind) {
            let text = std::str::from_utf8(&body).map_err(|_| ResourcesError::NotText {
                origin: origin.clone(),
            })?;
            text.strip_prefix('\u{feff}').unwrap_or(text).as_bytes().to_vec()
        } else {
            body
        };
        let mut r = Resource::new(self.client_path.clone(), body)
            .with_kind(kind)
            .with_weight(self.weight)
            .with_origin(origin);
        r.bootstrap = self.bootstrap;
        r.template_id = self.template_id.clone();
        r.attributes = self.attributes.clone();
        if is_text(kind) {
            r.attributes
                .entry(attr::ENCODING.into())
                .or_insert_with(|| "utf-8".into());
        }
        Ok(r)
    }
}

/// Whether resources of this kind are text that thywill reads (and so must be UTF-8).
pub fn is_text(kind: ResourceKind) -> bool {
    !matches!(kind, ResourceKind::Png | ResourceKind::Icon)
}

/// The resources a service ships: pages, scripts, styles, client templates and anything else,
/// with their client paths and weights.
#[derive(Clone, Debug, Default)]
pub struct Manifest {
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileManifest {
    #[serde(default)]
    base: Option<String>,
    #[serde(default)]
    root: Option<String>,
    entries: Vec<FileEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    file: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    kind: Option<ResourceKind>,
    #[serde(default)]
    weight: i32,
    #[serde(default = "yes")]
    bootstrap: bool,
    #[serde(default)]
    template_id: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

impl Manifest {
    /// An empty manifest.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry.
    pub fn entry(mut self, entry: Entry) -> Self {
        self.entries.push(entry);
        self
    }

    /// Adds every entry of another manifest.
    pub fn extend(mut self, other: Manifest) -> Self {
        self.entries.extend(other.entries);
        self
    }

    /// The entries, in declaration order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Reads a JSON manifest file (see the module documentation for the format).
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ResourcesError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        Self::from_json_str(&text, dir, &path.display().to_string())
    }

    /// Parses a JSON manifest whose files are relative to `dir`; `origin` names it in messages.
    pub fn from_json_str(text: &str, dir: &Path, origin: &str) -> Result<Self> {
        let parsed: FileManifest = serde_json::from_str(text).map_err(|e| ResourcesError::Manifest {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        let root = match &parsed.root {
            Some(r) => dir.join(r),
            None => dir.to_path_buf(),
        };
        let base = parsed
            .base
            .as_deref()
            .unwrap_or("")
            .trim_end_matches('/')
            .to_owned();
        let mut manifest = Manifest::new();
        for e in parsed.entries {
            let file = e.file.trim_start_matches("./");
            if file.split(['/', '\\']).any(|seg| seg == "..") || Path::new(file).is_absolute() {
                return Err(ResourcesError::Manifest {
                    origin: origin.to_owned(),
                    message: format!("`{file}` must be a relative path inside the manifest's root"),
                });
            }
            let client_path = e.path.unwrap_or_else(|| format!("{base}/{file}"));
            if !client_path.starts_with('/') {
                return Err(ResourcesError::Manifest {
                    origin: origin.to_owned(),
                    message: format!("client path `{client_path}` must start with `/`"),
                });
            }
            let mut entry = Entry::new(client_path, Source::file(root.join(file))).weight(e.weight);
            entry.kind = e.kind;
            entry.bootstrap = e.bootstrap;
            entry.template_id = e.template_id;
            entry.attributes = e.attributes;
            manifest.entries.push(entry);
        }
        Ok(manifest)
    }

    /// Loads every entry into a resource, in declaration order. Refuses script templates
    /// ([`Entry::rendered`]): they need [`Manifest::render`].
    pub fn resources(&self) -> Result<Vec<Resource>> {
        if let Some(e) = self.entries.iter().find(|e| e.script.is_some()) {
            return Err(ResourcesError::Invalid {
                origin: e.source.origin(),
                message: "a script template: load the manifest with `Manifest::render`".into(),
            });
        }
        self.entries.iter().map(Entry::load).collect()
    }

    /// Loads every entry into a resource, in declaration order, rendering the script
    /// templates ([`Entry::rendered`]) with `engine` (see [`crate::script`]) for a service
    /// under `base_path`. The `templates` value lists the client templates of this manifest
    /// and of `others` (resources added besides it). A template error fails with the file and
    /// the line.
    pub fn render(
        &self,
        engine: &dyn TemplateEngine,
        base_path: &str,
        others: &[Resource],
    ) -> Result<Vec<Resource>> {
        let mut resources: Vec<Resource> = self.entries.iter().map(Entry::load).collect::<Result<_>>()?;
        if self.entries.iter().all(|e| e.script.is_none()) {
            return Ok(resources);
        }
        let templates = script::template_ids(resources.iter().chain(others))?;
        let base_path = base_path.trim_end_matches('/');
        for (entry, resource) in self.entries.iter().zip(resources.iter_mut()) {
            if let Some(values) = &entry.script {
                script::render(resource, values, engine, base_path, &templates)?;
            }
        }
        Ok(resources)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_manifest_resolves_files_and_paths() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("thywill-manifest-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("static/js"))?;
        std::fs::write(dir.join("static/index.html"), "\u{feff}<html></html>")?;
        std::fs::write(dir.join("static/js/app.js"), "var a;")?;
        let json = r#"{"base":"/app/","root":"static","entries":[
            {"file":"index.html","path":"/app/","kind":"html"},
            {"file":"js/app.js","weight":5,"bootstrap":false,"attributes":{"x":"y"}}]}"#;
        std::fs::write(dir.join("manifest.json"), json)?;
        let rs = Manifest::from_json_file(dir.join("manifest.json"))?.resources()?;
        assert_eq!(rs[0].client_path, "/app/");
        assert_eq!(
            (rs[0].kind, rs[0].text()),
            (ResourceKind::Html, Some("<html></html>"))
        );
        assert_eq!(
            (rs[1].client_path.as_str(), rs[1].weight, rs[1].bootstrap),
            ("/app/js/app.js", 5, false)
        );
        assert_eq!(rs[1].attribute("x"), Some("y"));
        assert!(rs[1].display_name().ends_with("app.js"));

        let bad = Manifest::from_json_str(r#"{"entries":[{"file":"../x.js"}]}"#, &dir, "m.json");
        assert!(matches!(bad, Err(ResourcesError::Manifest { .. })));
        let typo = Manifest::from_json_str(r#"{"entries":[{"file":"x.js","wieght":1}]}"#, &dir, "m.json");
        assert!(matches!(typo, Err(ResourcesError::Manifest { .. })));
        let missing =
            Manifest::from_json_str(r#"{"entries":[{"file":"nope.js"}]}"#, &dir, "m.json")?.resources();
        assert!(matches!(missing, Err(ResourcesError::Io { .. })));
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn script_templates_are_rendered_with_their_context() -> anyhow::Result<()> {
        let engine = thywill_templates::MiniJinja::new();
        let source = "var A = {{ application_id }}, B = {{ base_path }}, T = {{ templates }}, \
                      M = {{ members }}, S = {{ evil }};";
        let values = ScriptValues::new()
            .application("display")
            .value("members", ["alpha", "beta"])?
            .value("evil", "\"; alert(1); //</script>")?;
        let manifest = Manifest::new()
            .entry(
                Entry::new("/d/", Source::inline("index.html", "{{ bootstrap_js }}"))
                    .kind(ResourceKind::Html),
            )
            .entry(Entry::new("/d/tpl/row.tpl", Source::inline("row.tpl", "<li>")).template_id("d-row"))
            .entry(Entry::new("/d/js/d.js", Source::inline("d.js", source)).rendered(values.clone()));
        let other = Resource::new("/d/tpl/cell.tpl", "<td>").with_template_id("d-cell");
        let rs = manifest.render(&engine, "/d/", std::slice::from_ref(&other))?;
        assert_eq!(rs.len(), 3);
        assert_eq!(
            rs[0].text(),
            Some("{{ bootstrap_js }}"),
            "pages are rendered later, by the pipeline"
        );
        assert_eq!(
            rs[2].text(),
            Some(
                r#"var A = "display", B = "/d", T = {"cell": "d-cell", "row": "d-row"}, M = ["alpha", "beta"], S = "\"; alert(1); //\u003c/script\u003e";"#
            )
        );
        assert_eq!(rs[2].kind, ResourceKind::Javascript);

        // `resources()` will not hand out an unrendered template.
        assert!(matches!(
            manifest.resources(),
            Err(ResourcesError::Invalid { .. })
        ));
        // Reserved names, non-scripts, undefined values and two templates of one name fail.
        assert!(ScriptValues::new().value("templates", 1).is_err());
        assert!(
            ScriptValues::new()
                .values(
                    serde_json::json!({"base_path": 1})
                        .as_object()
                        .cloned()
                        .unwrap_or_default()
                )
                .is_err()
        );
        let css = Manifest::new()
            .entry(Entry::new("/d/x.css", Source::inline("x.css", "a{}")).rendered(values.clone()));
        assert!(matches!(
            css.render(&engine, "/d", &[]),
            Err(ResourcesError::Invalid { .. })
        ));
        let typo = Manifest::new().entry(
            Entry::new(
                "/d/js/t.js",
                Source::inline("t.js", "var a = 1;\nvar b = {{ nope }};"),
            )
            .rendered(values.clone()),
        );
        let msg = typo
            .render(&engine, "/d", &[])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("t.js") && msg.contains("line 2"), "{msg}");
        let twice = Manifest::new()
            .entry(Entry::new("/d/a/row.tpl", Source::inline("a.tpl", "x")).template_id("one"))
            .entry(Entry::new("/d/b/row.tpl", Source::inline("b.tpl", "y")).template_id("two"))
            .entry(Entry::new("/d/js/d.js", Source::inline("d.js", "1")).rendered(values));
        assert!(matches!(
            twice.render(&engine, "/d", &[]),
            Err(ResourcesError::Invalid { .. })
        ));
        Ok(())
    }

    #[test]
    fn non_utf8_text_is_refused() {
        let r = Entry::new("/a/x.js", Source::inline("x.js", vec![0xff, 0xfe, 0x00])).load();
        assert!(matches!(r, Err(ResourcesError::NotText { .. })));
        let png = Entry::new("/a/x.png", Source::inline("x.png", vec![0xff, 0xfe, 0x00])).load();
        assert!(png.is_ok());
    }
}
