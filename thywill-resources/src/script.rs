//! Application scripts rendered with their context at start-up, so that client code does not
//! hard-code its application id, the ids of its client templates or values the server knows
//! (the original thywill rendered its applications' scripts the same way).
//!
//! An [`Entry`](crate::Entry) marked [`rendered`](crate::Entry::rendered) is a script template:
//! [`Manifest::render`](crate::Manifest::render) renders it with the configured
//! [`TemplateEngine`]'s [`render_script`](TemplateEngine::render_script), which writes every
//! value as a JSON literal (strings quoted and escaped), never as raw text. The context holds:
//!
//! | name | value |
//! |---|---|
//! | `application_id` | the id given to [`ScriptValues::application`] (a string), if any |
//! | `base_path` | the service's base path, such as `"/draw"` |
//! | `templates` | the client templates of the page: file stem → element id, such as `{"message": "echo-template-message"}` for `/echo/tpl/message.tpl` |
//! | anything else | the values given to [`ScriptValues::value`] |
//!
//! ```
//! use thywill_resources::{Entry, Manifest, ScriptValues, Source};
//! use thywill_templates::MiniJinja;
//!
//! let script = "const app = new Thywill.ApplicationInterface({{ application_id }});\n\
//!               const LIFETIME_MS = {{ lifetime_ms }};\n\
//!               const ROW = document.getElementById({{ templates.row }});";
//! let manifest = Manifest::new()
//!     .entry(Entry::new("/app/tpl/row.tpl", Source::inline("row.tpl", "<li></li>")).template_id("app-row"))
//!     .entry(
//!         Entry::new("/app/js/app.js", Source::inline("app.js", script))
//!             .rendered(ScriptValues::new().application("app").value("lifetime_ms", 30_000)?),
//!     );
//! let resources = manifest.render(&MiniJinja::new(), "/app", &[])?;
//! assert_eq!(
//!     resources[1].text(),
//!     Some("const app = new Thywill.ApplicationInterface(\"app\");\n\
//!           const LIFETIME_MS = 30000;\n\
//!           const ROW = document.getElementById(\"app-row\");")
//! );
//! # Ok::<(), thywill_resources::ResourcesError>(())
//! ```

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};
use thywill_core::{Resource, ResourceKind, TemplateEngine};

use crate::{ResourcesError, Result};

/// Names of the context that thywill fills in; [`ScriptValues::value`] refuses them.
pub const RESERVED: [&str; 3] = ["application_id", "base_path", "templates"];

/// The values a script template is rendered with (see the [module docs](self)): the
/// application id and any values the application supplies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScriptValues {
    application: Option<String>,
    values: Map<String, Value>,
}

impl ScriptValues {
    /// No application id and no values.
    pub fn new() -> Self {
        Self::default()
    }

    /// The application the script belongs to: `{{ application_id }}`.
    pub fn application(mut self, id: impl Into<String>) -> Self {
        self.application = Some(id.into());
        self
    }

    /// A value: `{{ name }}` prints it as JSON. Fails if `value` does not serialise to JSON
    /// or `name` is one of the [`RESERVED`] names.
    pub fn value(mut self, name: impl Into<String>, value: impl Serialize) -> Result<Self> {
        let name = name.into();
        if RESERVED.contains(&name.as_str()) {
            return Err(ResourcesError::Invalid {
                origin: "script values".into(),
                message: format!("`{name}` is filled in by thywill; use another name"),
            });
        }
        let value = serde_json::to_value(value).map_err(|e| ResourcesError::Invalid {
            origin: "script values".into(),
            message: format!("`{name}`: {e}"),
        })?;
        self.values.insert(name, value);
        Ok(self)
    }

    /// Several values at once (a map of serde values), with the same checks as
    /// [`ScriptValues::value`].
    pub fn values(mut self, values: Map<String, Value>) -> Result<Self> {
        for (name, value) in values {
            self = self.value(name, value)?;
        }
        Ok(self)
    }

    /// The application id, if set.
    pub fn application_id(&self) -> Option<&str> {
        self.application.as_deref()
    }

    /// The context to render with: the reserved names first, then the values.
    pub(crate) fn context(&self, base_path: &str, templates: &Map<String, Value>) -> Value {
        let mut context = self.values.clone();
        if let Some(app) = &self.application {
            context.insert("application_id".into(), Value::String(app.clone()));
        }
        context.insert("base_path".into(), Value::String(base_path.to_owned()));
        context.insert("templates".into(), Value::Object(templates.clone()));
        Value::Object(context)
    }
}

/// The page's client templates, file stem → element id, for the `templates` value. Two
/// templates with the same stem and different ids are refused (a script could not tell them
/// apart).
pub(crate) fn template_ids<'a>(
    resources: impl IntoIterator<Item = &'a Resource>,
) -> Result<Map<String, Value>> {
    let mut ids = Map::new();
    for r in resources {
        let Some(id) = &r.template_id else { continue };
        let name = r.client_path.rsplit('/').next().unwrap_or(&r.client_path);
        let stem = name.split('.').next().unwrap_or(name).to_owned();
        match ids.get(&stem) {
            Some(Value::String(other)) if other != id => {
                return Err(ResourcesError::Invalid {
                    origin: r.display_name().to_owned(),
                    message: format!(
                        "client templates `{other}` and `{id}` are both named `{stem}`: rename a file"
                    ),
                });
            }
            _ => {
                ids.insert(stem, Value::String(id.clone()));
            }
        }
    }
    Ok(ids)
}

/// Renders one script template in place.
pub(crate) fn render(
    resource: &mut Resource,
    values: &ScriptValues,
    engine: &dyn TemplateEngine,
    base_path: &str,
    templates: &Map<String, Value>,
) -> Result<()> {
    if resource.kind != ResourceKind::Javascript {
        return Err(ResourcesError::Invalid {
            origin: resource.display_name().to_owned(),
            message: "only scripts (.js) can be rendered with script values".into(),
        });
    }
    let source = resource.text().ok_or_else(|| ResourcesError::NotText {
        origin: resource.display_name().to_owned(),
    })?;
    let context = values.context(base_path, templates);
    let rendered = engine
        .render_script(resource.display_name(), source, &context)
        .map_err(|e| ResourcesError::Invalid {
            origin: resource.display_name().to_owned(),
            message: format!("script template: {e}"),
        })?;
    resource.body = Arc::from(rendered.into_bytes());
    Ok(())
}
