//! The bootstrap pipeline over resources declared in a manifest.

use std::sync::Arc;

use thywill_core::{CoreResult, Minifier, Resource, ResourceKind, attr};
use thywill_resources::{
    Entry, IMMUTABLE, Manifest, Pipeline, PipelineConfig, ResourcesError, Source, is_minified_name,
};
use thywill_templates::MiniJinja;

const PAGE: &str = "<html><head>{{ bootstrap_css }}{{ bootstrap_js }}</head><body>{{ bootstrap_templates }}<p>{{ base_path }}</p></body></html>";

fn pipeline(minify: bool) -> Pipeline {
    Pipeline::new(PipelineConfig::new("/app").with_minify(minify)).with_templates(Arc::new(MiniJinja::new()))
}

fn manifest() -> Manifest {
    Manifest::new()
        .entry(Entry::new("/app/", Source::inline("index.html", PAGE)).kind(ResourceKind::Html))
        .entry(
            Entry::new(
                "/app/js/late.js",
                Source::inline("late.js", "// comes last\nfunction lateFn(a) { return a + 1; }\n"),
            )
            .weight(10),
        )
        .entry(
            Entry::new(
                "/app/js/vendor.min.js",
                Source::inline("vendor.min.js", "/*! vendor licence */var vendor=1"),
            )
            .weight(-10),
        )
        .entry(
            Entry::new(
                "/app/js/first.js",
                Source::inline("first.js", "// tie, declared first\nvar firstValue = 1 + 2;\n"),
            )
            .weight(0),
        )
        .entry(Entry::new(
            "/app/js/second.js",
            Source::inline("second.js", "// tie, declared second\nvar secondValue = 3;\n"),
        ))
        .entry(Entry::new(
            "/app/css/theme/main.css",
            Source::inline(
                "main.css",
                "/* theme */\n.a {\n  background: url(img/a.png);\n}\n",
            ),
        ))
        .entry(
            Entry::new(
                "/app/css/base.css",
                Source::inline(
                    "base.css",
                    ".b { color: #ff0000; background: url('../img/b.png') }\n",
                ),
            )
            .weight(-1),
        )
        .entry(
            Entry::new(
                "/app/tpl/row.tpl",
                Source::inline("row.tpl", "<li>{{ value }}</li>"),
            )
            .template_id("app-row"),
        )
        .entry(Entry::new(
            "/app/tpl/cell.tpl",
            Source::inline("cell.tpl", "<td></td>"),
        ))
        .entry(
            Entry::new(
                "/app/js/extra.js",
                Source::inline("extra.js", "// on demand\nvar extraThing = 40 + 2;\n"),
            )
            .on_demand(),
        )
}

fn find<'a>(rs: &'a [Resource], path: &str) -> anyhow::Result<&'a Resource> {
    rs.iter()
        .find(|r| r.client_path == path)
        .ok_or_else(|| anyhow::anyhow!("no resource {path}"))
}

#[test]
fn bundles_follow_weight_order_and_pages_get_the_slots() -> anyhow::Result<()> {
    let assembly = pipeline(true).assemble(manifest().resources()?)?;
    let script = assembly.script_bundle.clone().unwrap_or_default();
    let style = assembly.style_bundle.clone().unwrap_or_default();
    assert!(
        script.starts_with("/app/js/") && script.ends_with(".min.js"),
        "{script}"
    );
    assert!(
        style.starts_with("/app/css/") && style.ends_with(".min.css"),
        "{style}"
    );
    assert_eq!(assembly.pages, ["/app/"]);

    let js_bundle = find(&assembly.resources, &script)?;
    let js = js_bundle.text().unwrap_or_default();
    assert_eq!(js_bundle.attribute(attr::CACHE_CONTROL), Some(IMMUTABLE));
    // Weight order: vendor (-10), first and second (0, declaration order), late (10); each
    // piece followed by `;\n`; the `.min.` file verbatim, licence comment included.
    let at = |needle: &str| js.find(needle).unwrap_or(usize::MAX);
    assert!(js.starts_with("/*! vendor licence */var vendor=1;\n"), "{js}");
    assert!(
        at("vendor") < at("firstValue") && at("firstValue") < at("secondValue"),
        "{js}"
    );
    assert!(at("secondValue") < at("lateFn"), "{js}");
    assert!(
        !js.contains("comes last") && !js.contains("tie, declared"),
        "{js}"
    );
    assert!(
        !js.contains("extraThing"),
        "on-demand scripts stay out of the bundle: {js}"
    );

    let css = find(&assembly.resources, &style)?
        .text()
        .unwrap_or_default()
        .to_owned();
    // base.css (-1) before main.css (0); relative URLs rewritten against each file's path.
    assert!(
        css.find(".b{").unwrap_or(usize::MAX) < css.find(".a{").unwrap_or(0),
        "{css}"
    );
    assert!(css.contains("url(/app/img/b.png)"), "{css}");
    assert!(css.contains("url(/app/css/theme/img/a.png)"), "{css}");
    assert!(css.contains("color:red"), "{css}");

    let page = find(&assembly.resources, "/app/")?
        .text()
        .unwrap_or_default()
        .to_owned();
    assert!(
        page.contains(&format!("<link rel=\"stylesheet\" href=\"{style}\">")),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "<script src=\"{script}\" data-base=\"/app\" defer></script>"
        )),
        "{page}"
    );
    assert!(
        page.contains("<script type=\"text/template\" id=\"app-row\"><li>{{ value }}</li></script>"),
        "{page}"
    );
    assert!(
        page.contains("<script type=\"text/template\" id=\"cell\"><td></td></script>"),
        "{page}"
    );
    assert!(
        page.contains("<p>&#x2f;app</p>"),
        "base path is data, escaped: {page}"
    );

    // Every script stays available at its own path, minified; the on-demand one too.
    let extra = find(&assembly.resources, "/app/js/extra.js")?;
    assert!(!extra.bootstrap);
    assert_eq!(extra.text(), Some("var extraThing=42;"));
    assert_eq!(
        find(&assembly.resources, "/app/js/vendor.min.js")?.text(),
        Some("/*! vendor licence */var vendor=1")
    );
    Ok(())
}

#[test]
fn bundle_names_are_content_hashes() -> anyhow::Result<()> {
    let a = pipeline(true).assemble(manifest().resources()?)?;
    let b = pipeline(true).assemble(manifest().resources()?)?;
    assert_eq!(a.script_bundle, b.script_bundle);
    assert_eq!(a.style_bundle, b.style_bundle);
    let changed = manifest().entry(Entry::new(
        "/app/js/more.js",
        Source::inline("more.js", "var more = 1;"),
    ));
    let c = pipeline(true).assemble(changed.resources()?)?;
    assert_ne!(a.script_bundle, c.script_bundle);
    assert_eq!(a.style_bundle, c.style_bundle);
    Ok(())
}

#[test]
fn without_minification_the_sources_are_merged_as_they_are() -> anyhow::Result<()> {
    let assembly = pipeline(false).assemble(manifest().resources()?)?;
    let script = assembly.script_bundle.clone().unwrap_or_default();
    assert!(script.ends_with(".js") && !is_minified_name(&script), "{script}");
    let js = find(&assembly.resources, &script)?
        .text()
        .unwrap_or_default()
        .to_owned();
    assert!(
        js.contains("// comes last") && js.contains("var firstValue = 1 + 2;"),
        "{js}"
    );
    let style = assembly.style_bundle.clone().unwrap_or_default();
    let css = find(&assembly.resources, &style)?
        .text()
        .unwrap_or_default()
        .to_owned();
    assert!(
        css.contains("/* theme */") && css.contains("url(/app/css/theme/img/a.png)"),
        "{css}"
    );
    Ok(())
}

#[test]
fn a_broken_script_names_file_line_and_column() -> anyhow::Result<()> {
    let broken = manifest().entry(Entry::new(
        "/app/js/broken.js",
        Source::inline("static/js/broken.js", "var ok = 1;\nvar = 2;\n"),
    ));
    match pipeline(true).assemble(broken.resources()?) {
        Err(e) => {
            assert!(e.is_syntax(), "{e:?}");
            assert!(e.to_string().contains("static/js/broken.js:2:5"), "{e}");
        }
        Ok(_) => anyhow::bail!("a broken script must fail"),
    }
    Ok(())
}

#[test]
fn a_broken_stylesheet_names_file_line_and_column() -> anyhow::Result<()> {
    let broken = manifest().entry(Entry::new(
        "/app/css/broken.css",
        Source::inline(
            "static/css/broken.css",
            ".ok { color: red }\n.x[ { color: red }\n.y {}\n",
        ),
    ));
    match pipeline(true).assemble(broken.resources()?) {
        Err(e) => {
            assert!(e.is_syntax(), "{e:?}");
            assert!(e.to_string().contains("static/css/broken.css:"), "{e}");
        }
        Ok(_) => anyhow::bail!("a broken stylesheet must fail"),
    }
    Ok(())
}

/// A replacement minifier: marks what it minified.
struct Marker;

impl Minifier for Marker {
    fn minify_js(&self, origin: &str, source: &str) -> CoreResult<String> {
        Ok(format!("/*{origin}*/{}", source.len()))
    }
    fn minify_css(&self, origin: &str, _source: &str) -> CoreResult<String> {
        Ok(format!("/*{origin}*/"))
    }
}

#[test]
fn another_minifier_can_replace_the_default() -> anyhow::Result<()> {
    let p = pipeline(true).with_minifier(Arc::new(Marker));
    let assembly = p.assemble(manifest().resources()?)?;
    let script = assembly.script_bundle.clone().unwrap_or_default();
    let js = find(&assembly.resources, &script)?
        .text()
        .unwrap_or_default()
        .to_owned();
    assert!(js.contains("/*first.js*/") && js.contains("/*late.js*/"), "{js}");
    assert!(
        js.contains("/*! vendor licence */"),
        "`.min.` files still pass untouched: {js}"
    );
    Ok(())
}

#[test]
fn client_templates_cannot_close_their_script_element() -> anyhow::Result<()> {
    let bad = manifest().entry(Entry::new(
        "/app/tpl/bad.tpl",
        Source::inline("bad.tpl", "<p></SCRIPT><script>alert(1)</script>"),
    ));
    match pipeline(true).assemble(bad.resources()?) {
        Err(ResourcesError::Invalid { origin, message }) => {
            assert_eq!(origin, "bad.tpl");
            assert!(message.contains("</script"), "{message}");
        }
        other => anyhow::bail!("expected a refusal, got {other:?}"),
    }
    Ok(())
}

#[test]
fn untrusted_page_data_is_escaped_but_slots_are_not() -> anyhow::Result<()> {
    // A base path with markup in it (it is configuration, not a slot) is escaped in the page.
    let p = Pipeline::new(PipelineConfig::new("/a<b>")).with_templates(Arc::new(MiniJinja::new()));
    let page = Entry::new(
        "/a<b>/",
        Source::inline("index.html", "{{ base_path }}|{{ bootstrap_js }}"),
    )
    .kind(ResourceKind::Html);
    let js = Entry::new("/a<b>/js/x.js", Source::inline("x.js", "var x;"));
    let assembly = p.assemble(Manifest::new().entry(page).entry(js).resources()?)?;
    let html = find(&assembly.resources, "/a<b>/")?
        .text()
        .unwrap_or_default()
        .to_owned();
    assert!(
        html.starts_with("&#x2f;a&lt;b&gt;|<script src=\"/a&lt;b&gt;/js/"),
        "{html}"
    );
    Ok(())
}

#[test]
fn pages_need_a_template_engine() -> anyhow::Result<()> {
    let p = Pipeline::new(PipelineConfig::new("/app"));
    assert!(matches!(
        p.assemble(manifest().resources()?),
        Err(ResourcesError::Invalid { .. })
    ));
    Ok(())
}
