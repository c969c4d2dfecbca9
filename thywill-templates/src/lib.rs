//! A [`TemplateEngine`] for thywill-rs over [minijinja](https://docs.rs/minijinja) (Jinja2
//! syntax): HTML autoescaping, a bounded cache of compiled templates, and page templates with
//! slots for the bootstrap styles, scripts and client templates.
//!
//! ```
//! use std::collections::BTreeMap;
//! use thywill_core::TemplateEngine;
//! use thywill_templates::MiniJinja;
//!
//! let engine = MiniJinja::new();
//! let page = "<head>{{ bootstrap_js }}</head><h1>{{ title }}</h1>";
//! let slots = BTreeMap::from([("bootstrap_js".to_owned(), "<script src=\"/a.js\"></script>".to_owned())]);
//! let context = serde_json::json!({ "title": "<b>Hi</b>" });
//! let html = engine.render_page("/app/", page, &slots, &context)?;
//! assert_eq!(html, "<head><script src=\"/a.js\"></script></head><h1>&lt;b&gt;Hi&lt;&#x2f;b&gt;</h1>");
//! # Ok::<(), thywill_core::CoreError>(())
//! ```
//!
//! Page templates (see `thywill_resources::slots`) use `{{ encoding }}`, `{{ bootstrap_css }}`,
//! `{{ bootstrap_js }}` and `{{ bootstrap_templates }}`; the slots are trusted HTML made by
//! thywill and are never escaped, while every other value is. Any other engine can be plugged
//! in through the [`TemplateEngine`] trait.
//!
//! Script templates ([`TemplateEngine::render_script`], used for application scripts rendered
//! at start-up) write every value as a JSON literal, with `<`, `>`, `&` and `'` escaped as
//! `\u003c`… inside strings: `{{ application_id }}` prints `"draw"`, a list prints `["a","b"]`,
//! and no value can end a string or a `<script>` element. Only `|safe` prints raw text.
//!
//! ```
//! use thywill_core::TemplateEngine;
//! use thywill_templates::MiniJinja;
//!
//! let engine = MiniJinja::new();
//! let context = serde_json::json!({ "application_id": "draw", "who": "</script>'\"" });
//! let js = engine.render_script("/draw/js/draw.js", "var id = {{ application_id }}, who = {{ who }};", &context)?;
//! assert_eq!(js, r#"var id = "draw", who = "\u003c/script\u003e\u0027\"";"#);
//! # Ok::<(), thywill_core::CoreError>(())
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{PoisonError, RwLock};

use minijinja::value::{Kwargs, Serde};
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use thywill_core::{CoreError, CoreResult, TemplateEngine};

/// Errors of the template engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemplatesError {
    /// The template does not compile or failed while rendering.
    #[error("template {name}: {message}")]
    Template {
        /// The template's name.
        name: String,
        /// minijinja's explanation, with the line.
        message: String,
    },
    /// The context is not a JSON object (or null).
    #[error("template {name}: the context must be a JSON object")]
    Context {
        /// The template's name.
        name: String,
    },
}

impl From<TemplatesError> for CoreError {
    fn from(e: TemplatesError) -> Self {
        CoreError::component("templates", e)
    }
}

/// How values are escaped when printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Escape {
    /// HTML escaping for every template, whatever its name (the default: page names such as
    /// `/echo/` have no telling extension).
    #[default]
    Html,
    /// minijinja's default: HTML for names ending in `.html`, `.htm` or `.xml`, none otherwise.
    ByName,
    /// No escaping (plain-text templates).
    None,
}

struct Cache {
    env: Environment<'static>,
    /// Name → hash of the compiled source, to recompile when the source changes.
    sources: HashMap<String, u64>,
    /// Names, least recently compiled first.
    order: VecDeque<String>,
}

/// The minijinja template engine. Compiled templates are cached by name (at most
/// [`MiniJinja::with_capacity`], 100 by default); a name rendered with a different source is
/// recompiled.
///
/// Undefined values fail rendering when printed or iterated (minijinja's "semi-strict" mode),
/// so typos in templates are caught by tests; `{% if x %}` on an undefined `x` is allowed.
pub struct MiniJinja {
    cache: RwLock<Cache>,
    /// Script templates: a plain environment whose formatter writes every value as JSON.
    scripts: RwLock<Cache>,
    capacity: usize,
}

impl std::fmt::Debug for MiniJinja {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cached = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .order
            .len();
        f.debug_struct("MiniJinja")
            .field("capacity", &self.capacity)
            .field("cached", &cached)
            .finish()
    }
}

impl Default for MiniJinja {
    fn default() -> Self {
        Self::new()
    }
}

fn source_hash(source: &str) -> u64 {
    let mut h = DefaultHasher::new();
    source.hash(&mut h);
    h.finish()
}

fn template_error(name: &str, e: &minijinja::Error) -> TemplatesError {
    let mut message = e.to_string();
    if let Some(line) = e.line()
        && !message.contains("line")
    {
        message.push_str(&format!(" (line {line})"));
    }
    TemplatesError::Template {
        name: name.to_owned(),
        message,
    }
}

impl Cache {
    fn new(env: Environment<'static>) -> Self {
        Self {
            env,
            sources: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

/// The environment of script templates: every printed value is written as a JSON literal,
/// HTML-safe (`<`, `>`, `&`, `'` escaped inside strings), except strings marked safe.
fn script_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_formatter(|out, _state, value| {
        if value.is_safe() {
            return write!(out, "{value}").map_err(minijinja::Error::from);
        }
        let json = minijinja::filters::tojson(
            value,
            None,
            Kwargs::from_iter(std::iter::empty::<(&str, Value)>()),
        )?;
        write!(out, "{json}").map_err(minijinja::Error::from)
    });
    env
}

impl MiniJinja {
    /// HTML autoescaping, semi-strict undefined values, 100 cached templates.
    pub fn new() -> Self {
        Self::with_environment(Escape::Html, |_| {})
    }

    /// A customised engine: `setup` may add filters, functions and globals, or change
    /// minijinja settings, of page and plain templates (script templates keep a plain
    /// environment that writes every value as JSON).
    pub fn with_environment(escape: Escape, setup: impl FnOnce(&mut Environment<'static>)) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        match escape {
            Escape::Html => env.set_auto_escape_callback(|_| AutoEscape::Html),
            Escape::None => env.set_auto_escape_callback(|_| AutoEscape::None),
            Escape::ByName => env.set_auto_escape_callback(minijinja::default_auto_escape_callback),
        }
        setup(&mut env);
        Self {
            cache: RwLock::new(Cache::new(env)),
            scripts: RwLock::new(Cache::new(script_environment())),
            capacity: 100,
        }
    }

    /// Keeps at most `capacity` compiled templates (at least 1).
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Number of compiled templates in the cache (page and script templates are cached apart,
    /// each up to the capacity).
    pub fn cached(&self) -> usize {
        [&self.cache, &self.scripts]
            .iter()
            .map(|c| c.read().unwrap_or_else(PoisonError::into_inner).order.len())
            .sum()
    }

    fn compile(&self, which: &RwLock<Cache>, name: &str, source: &str) -> Result<(), TemplatesError> {
        let hash = source_hash(source);
        {
            let cache = which.read().unwrap_or_else(PoisonError::into_inner);
            if cache.sources.get(name) == Some(&hash) {
                return Ok(());
            }
        }
        let mut cache = which.write().unwrap_or_else(PoisonError::into_inner);
        if cache.sources.get(name) == Some(&hash) {
            return Ok(());
        }
        cache
            .env
            .add_template_owned(name.to_owned(), source.to_owned())
            .map_err(|e| template_error(name, &e))?;
        if cache.sources.insert(name.to_owned(), hash).is_none() {
            cache.order.push_back(name.to_owned());
        }
        while cache.order.len() > self.capacity {
            if let Some(old) = cache.order.pop_front() {
                cache.env.remove_template(&old);
                cache.sources.remove(&old);
            }
        }
        Ok(())
    }

    fn render_value(
        &self,
        which: &RwLock<Cache>,
        name: &str,
        source: &str,
        ctx: Value,
    ) -> Result<String, TemplatesError> {
        self.compile(which, name, source)?;
        let cache = which.read().unwrap_or_else(PoisonError::into_inner);
        let template = cache
            .env
            .get_template(name)
            .map_err(|e| template_error(name, &e))?;
        template.render(ctx).map_err(|e| template_error(name, &e))
    }

    fn context_map(
        name: &str,
        context: &serde_json::Value,
    ) -> Result<BTreeMap<String, Value>, TemplatesError> {
        match context {
            serde_json::Value::Object(map) => Ok(map
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(Serde(v))))
                .collect()),
            serde_json::Value::Null => Ok(BTreeMap::new()),
            _ => Err(TemplatesError::Context {
                name: name.to_owned(),
            }),
        }
    }
}

impl TemplateEngine for MiniJinja {
    fn render(&self, name: &str, source: &str, context: &serde_json::Value) -> CoreResult<String> {
        let map = Self::context_map(name, context)?;
        Ok(self.render_value(&self.cache, name, source, Value::from_object(map))?)
    }

    fn render_script(&self, name: &str, source: &str, context: &serde_json::Value) -> CoreResult<String> {
        let map = Self::context_map(name, context)?;
        Ok(self.render_value(&self.scripts, name, source, Value::from_object(map))?)
    }

    fn render_page(
        &self,
        name: &str,
        source: &str,
        slots: &BTreeMap<String, String>,
        context: &serde_json::Value,
    ) -> CoreResult<String> {
        let mut map = Self::context_map(name, context)?;
        for (k, v) in slots {
            map.insert(k.clone(), Value::from_safe_string(v.clone()));
        }
        Ok(self.render_value(&self.cache, name, source, Value::from_object(map))?)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn untrusted_data_is_escaped() -> anyhow::Result<()> {
        let e = MiniJinja::new();
        let evil = r#"<script>alert("x")</script>&'"#;
        let out = e.render(
            "/page/",
            "<p>{{ name }}</p><a title=\"{{ name }}\">",
            &json!({ "name": evil }),
        )?;
        assert!(!out.contains("<script>"), "{out}");
        assert!(
            out.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;&#x2f;script&gt;&amp;&#x27;"),
            "{out}"
        );
        // Nested data too.
        let out = e.render(
            "list",
            "{% for u in users %}{{ u.n }}{% endfor %}",
            &json!({"users": [{"n": "<i>"}]}),
        )?;
        assert_eq!(out, "&lt;i&gt;");
        Ok(())
    }

    #[test]
    fn slots_are_trusted_and_data_is_not() -> anyhow::Result<()> {
        let e = MiniJinja::new();
        let slots = BTreeMap::from([(
            "bootstrap_js".to_owned(),
            "<script src=\"/x.js\"></script>".to_owned(),
        )]);
        let out = e.render_page(
            "/p/",
            "{{ bootstrap_js }}|{{ who }}",
            &slots,
            &json!({"who": "<b>"}),
        )?;
        assert_eq!(out, "<script src=\"/x.js\"></script>|&lt;b&gt;");
        // Data cannot smuggle a slot's trust in under the same name.
        let out = e.render_page(
            "/p/",
            "{{ bootstrap_js }}",
            &BTreeMap::new(),
            &json!({"bootstrap_js": "<b>"}),
        )?;
        assert_eq!(out, "&lt;b&gt;");
        Ok(())
    }

    #[test]
    fn compiled_templates_are_cached_and_bounded() -> anyhow::Result<()> {
        let e = MiniJinja::new().with_capacity(2);
        assert_eq!(e.render("a", "A{{ x }}", &json!({"x": 1}))?, "A1");
        assert_eq!(e.render("a", "A{{ x }}", &json!({"x": 2}))?, "A2");
        assert_eq!(e.cached(), 1);
        // A new source under the same name is recompiled.
        assert_eq!(e.render("a", "B{{ x }}", &json!({"x": 3}))?, "B3");
        e.render("b", "b", &json!({}))?;
        e.render("c", "c", &json!({}))?;
        assert_eq!(e.cached(), 2);
        Ok(())
    }

    #[test]
    fn script_templates_write_values_as_json() -> anyhow::Result<()> {
        let e = MiniJinja::new();
        let nasty = [
            "plain",
            "\"; alert(1); //",
            "'; alert(1); //",
            "</script><script>alert(1)</script>",
            "line\nbreak\u{2028}\u{2029}",
            "back\\slash ${template} `tick`",
            "<!-- -->",
            "",
        ];
        for value in nasty {
            let out = e.render_script("s.js", "{{ v }}", &json!({ "v": value }))?;
            // The output is one JSON (so JavaScript) string literal holding exactly the value.
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&out)?,
                json!(value),
                "{out}"
            );
            assert!(!out.contains('<') && !out.contains('\''), "HTML-safe: {out}");
        }
        let context = json!({
            "application_id": "draw",
            "members": ["alpha", "beta"],
            "limits": {"ms": 30000, "on": true, "none": null},
        });
        let out = e.render_script(
            "/draw/js/draw.js",
            "var ID = {{ application_id }}; var M = {{ members }}; var L = {{ limits }}; var MS = {{ limits.ms }};",
            &context,
        )?;
        assert_eq!(
            out,
            r#"var ID = "draw"; var M = ["alpha", "beta"]; var L = {"ms": 30000, "none": null, "on": true}; var MS = 30000;"#
        );
        // Loops print items as JSON too; `|safe` is the explicit way to print raw text.
        let out = e.render_script(
            "loop.js",
            "{% for m in members %}f({{ m }});{% endfor %}{{ raw|safe }}",
            &json!({"members": ["a'b"], "raw": "/* raw */"}),
        )?;
        assert_eq!(out, r#"f("a\u0027b");/* raw */"#);
        // Undefined values fail, as in pages.
        assert!(e.render_script("u.js", "{{ missing }}", &json!({})).is_err());
        // Page templates of the same name are unaffected: HTML escaping there.
        assert_eq!(e.render("s.js", "{{ v }}", &json!({"v": "<b>"}))?, "&lt;b&gt;");
        Ok(())
    }

    #[test]
    fn engines_without_script_support_refuse_scripts() {
        struct Plain;
        impl TemplateEngine for Plain {
            fn render(&self, _: &str, source: &str, _: &serde_json::Value) -> CoreResult<String> {
                Ok(source.to_owned())
            }
        }
        let err = Plain.render_script("/a/x.js", "{{ v }}", &json!({"v": 1}));
        let msg = err.map(|_| ()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("/a/x.js") && msg.contains("script"), "{msg}");
    }

    #[test]
    fn errors_name_the_template_and_line() {
        let e = MiniJinja::new();
        let err = e.render("/page/", "line one\n{{ oops(", &json!({}));
        let msg = err.map(|_| ()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("/page/") && msg.contains("line 2"), "{msg}");
        let undefined = e.render("u", "{{ missing }}", &json!({}));
        assert!(undefined.is_err());
        assert!(e.render("n", "x", &json!([1])).is_err());
        assert_eq!(
            e.render("i", "{% if missing %}y{% endif %}n", &json!({}))
                .ok()
                .as_deref(),
            Some("n")
        );
    }
}
