//! The page through the resource pipeline: one page, one minified script bundle, one CSS
//! bundle; ETag and 304; immutable bundles; brotli and gzip; on-demand and run-time resources.

use std::io::Read;

use thywill::Resource;
use thywill::core::attr;

use crate::fixture::{Served, attributes, fast_app, request, serve, start};

/// The page and the paths of its bundles.
async fn page(served: &Served) -> anyhow::Result<(String, String, String)> {
    let r = served.get("/tabular/", &[]).await?;
    assert_eq!(r.status, 200);
    let html = r.text()?.to_owned();
    let scripts = attributes(&html, "<script src=", "src");
    let styles = attributes(&html, "<link rel=\"stylesheet\"", "href");
    assert_eq!(scripts.len(), 1, "one script bundle: {html}");
    assert_eq!(styles.len(), 1, "one style bundle: {html}");
    Ok((html, scripts[0].clone(), styles[0].clone()))
}

fn gunzip(body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body).read_to_end(&mut out)?;
    Ok(out)
}

fn unbrotli(body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    brotli::Decompressor::new(body, 4096).read_to_end(&mut out)?;
    Ok(out)
}

#[tokio::test]
async fn one_page_one_minified_script_bundle_one_style_bundle() -> anyhow::Result<()> {
    let served = start(fast_app()).await?;
    let (html, script, style) = page(&served).await?;
    assert!(
        script.starts_with("/tabular/js/") && script.ends_with(".min.js"),
        "{script}"
    );
    assert!(
        style.starts_with("/tabular/css/") && style.ends_with(".min.css"),
        "{style}"
    );
    assert!(html.contains("<script type=\"text/template\" id=\"tabular-template-main\">"));
    assert!(!html.contains("{{"), "every slot is filled: {html}");
    // The on-demand feature is not part of the page.
    assert!(!html.contains("totals.js") && !html.contains("tabular-template-totals"));

    let js = served.get(&script, &[]).await?;
    assert_eq!(js.status, 200);
    assert_eq!(js.header("content-type"), Some("text/javascript; charset=utf-8"));
    let js = js.text()?;
    // Client library first, then the application, then Alpine.js verbatim (`.min.` file).
    let client = js.find("protocolVersion").unwrap_or(usize::MAX);
    let app = js.find("tabular-template-main").unwrap_or(usize::MAX);
    let alpine = js.find("@vue/reactivity").unwrap_or(usize::MAX);
    assert!(
        client < app && app < alpine,
        "order: client {client}, app {app}, alpine {alpine}"
    );
    // Minified: comments gone, no indentation, but the globals other scripts use survive.
    assert!(!js.contains("Tabular: the page's application script"));
    assert!(!js.contains("\n    "));
    assert!(js.contains("Thywill") && js.contains("ApplicationInterface"));

    let css = served.get(&style, &[]).await?;
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    let css = css.text()?;
    assert!(css.contains(".tabular-wrapper{"), "{css}");
    assert!(!css.contains("/* Tabular"), "{css}");
    Ok(())
}

#[tokio::test]
async fn etag_and_304_for_the_page_and_bundles() -> anyhow::Result<()> {
    let served = start(fast_app()).await?;
    let (_, script, style) = page(&served).await?;
    for path in [
        "/tabular/",
        script.as_str(),
        style.as_str(),
        "/tabular/thywill/thywill.js",
    ] {
        let first = served.get(path, &[]).await?;
        assert_eq!(first.status, 200, "{path}");
        let etag = first.header("etag").map(str::to_owned);
        let etag = etag.ok_or_else(|| anyhow::anyhow!("no etag on {path}"))?;
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        let again = served.get(path, &[("If-None-Match", &etag)]).await?;
        assert_eq!(again.status, 304, "{path}");
        assert!(again.body.is_empty());
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        let weak = format!("W/{etag}");
        assert_eq!(
            served.get(path, &[("If-None-Match", &weak)]).await?.status,
            304,
            "{path}"
        );
        let other = served
            .get(path, &[("If-None-Match", "\"something-else\"")])
            .await?;
        assert_eq!(other.status, 200, "{path}");
    }
    // HEAD answers with the headers only.
    let head = request(served.addr, "HEAD", &script, &[]).await?;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(head.header("etag").is_some());
    Ok(())
}

#[tokio::test]
async fn bundles_are_immutable_and_everything_else_revalidates() -> anyhow::Result<()> {
    let served = start(fast_app()).await?;
    let (_, script, style) = page(&served).await?;
    for bundle in [&script, &style] {
        let r = served.get(bundle, &[]).await?;
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=31536000, immutable"),
            "{bundle}"
        );
    }
    for path in [
        "/tabular/",
        "/tabular/js/tabular.js",
        example_tabular::TOTALS_SCRIPT,
    ] {
        let r = served.get(path, &[]).await?;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
    }
    // The bundle's name is its content's hash: the same files give the same name.
    let again = start(fast_app()).await?;
    let (_, script2, style2) = page(&again).await?;
    assert_eq!((script, style), (script2, style2));
    Ok(())
}

#[tokio::test]
async fn compressed_where_the_browser_accepts_it() -> anyhow::Result<()> {
    let served = start(fast_app()).await?;
    let (_, script, style) = page(&served).await?;
    for path in [script.as_str(), style.as_str(), "/tabular/"] {
        let plain = served.get(path, &[]).await?;
        assert_eq!(plain.header("content-encoding"), None);
        assert_eq!(plain.header("vary"), Some("accept-encoding"));

        let br = served
            .get(path, &[("Accept-Encoding", "gzip, deflate, br")])
            .await?;
        assert_eq!(br.header("content-encoding"), Some("br"), "{path}");
        assert_eq!(br.header("vary"), Some("accept-encoding"));
        assert!(br.body.len() < plain.body.len(), "{path}: br is smaller");
        assert_eq!(unbrotli(&br.body)?, plain.body, "{path}");
        assert_ne!(br.header("etag"), plain.header("etag"));
        // The compressed copy revalidates under its own ETag.
        let tag = br.header("etag").unwrap_or_default().to_owned();
        let not_modified = served
            .get(path, &[("Accept-Encoding", "br"), ("If-None-Match", &tag)])
            .await?;
        assert_eq!(not_modified.status, 304);

        let gz = served.get(path, &[("Accept-Encoding", "gzip")]).await?;
        assert_eq!(gz.header("content-encoding"), Some("gzip"), "{path}");
        assert_eq!(gunzip(&gz.body)?, plain.body, "{path}");

        let refused = served
            .get(path, &[("Accept-Encoding", "br;q=0, gzip;q=0")])
            .await?;
        assert_eq!(refused.header("content-encoding"), None);
        assert_eq!(refused.body, plain.body);
    }
    // Variants are not reachable by path.
    let direct = served.get(&format!("{script}%23br"), &[]).await?;
    assert_eq!(direct.status, 404);
    Ok(())
}

#[tokio::test]
async fn on_demand_and_run_time_resources_are_minified_and_served() -> anyhow::Result<()> {
    let served = start(fast_app()).await?;
    let totals = served.get(example_tabular::TOTALS_SCRIPT, &[]).await?;
    assert_eq!(totals.status, 200);
    let text = totals.text()?;
    assert!(
        text.contains("loadStylesheet") && !text.contains("The totals feature"),
        "{text}"
    );
    let tpl = served.get("/tabular/tpl/totals.tpl", &[]).await?;
    assert_eq!(
        tpl.header("x-thywill-template-id"),
        Some("tabular-template-totals")
    );

    // Added while running: minified and compressed like the rest.
    let source = format!(
        "// a feature added at run time\nfunction lateFeature(name) {{\n  var greeting = 'hello ' + name;\n  return greeting;\n}}\n{}",
        "window.lateFeatureLoaded = lateFeature('page');\n".repeat(20)
    );
    served
        .node
        .resources()
        .store(Resource::new("/tabular/js/late.js", source.clone()))
        .await?;
    let late = served.get("/tabular/js/late.js", &[]).await?;
    assert_eq!(late.status, 200);
    let min = late.text()?;
    assert!(
        min.len() < source.len() && !min.contains("a feature added"),
        "{min}"
    );
    assert!(
        min.contains("function lateFeature("),
        "top-level names are kept: {min}"
    );
    let stored = served.node.resources().load("/tabular/js/late.js").await?;
    assert_eq!(
        stored
            .and_then(|r| r.attribute(attr::ENCODINGS).map(str::to_owned))
            .as_deref(),
        Some("br,gzip")
    );
    let br = served
        .get("/tabular/js/late.js", &[("Accept-Encoding", "br")])
        .await?;
    assert_eq!(unbrotli(&br.body)?, late.body);

    // A broken script stored at run time is refused with file, line and column.
    let broken = served
        .node
        .resources()
        .store(Resource::new("/tabular/js/broken.js", "var ok = 1;\nvar = ;\n"))
        .await;
    let msg = broken.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("/tabular/js/broken.js:2:5"), "{msg}");
    assert_eq!(served.get("/tabular/js/broken.js", &[]).await?.status, 404);

    // Removing a resource removes its variants.
    served.node.resources().remove("/tabular/js/late.js").await?;
    assert_eq!(
        served
            .get("/tabular/js/late.js", &[("Accept-Encoding", "br")])
            .await?
            .status,
        404
    );
    let variant = served
        .node
        .resources()
        .load(&Resource::variant_key("/tabular/js/late.js", "br"))
        .await?;
    assert!(variant.is_none());
    Ok(())
}

#[tokio::test]
async fn minification_can_be_switched_off() -> anyhow::Result<()> {
    let app = fast_app();
    let served = serve(example_tabular::builder_with(app.clone())?.minify(false), app).await?;
    let (_, script, style) = page(&served).await?;
    assert!(
        script.ends_with(".js") && !script.ends_with(".min.js"),
        "{script}"
    );
    assert!(style.ends_with(".css") && !style.ends_with(".min.css"), "{style}");
    let js = served.get(&script, &[]).await?;
    assert!(js.text()?.contains("Tabular: the page's application script"));
    Ok(())
}

#[test]
fn the_vendored_framework_is_the_published_file() {
    // The sha256 recorded in static/vendor/alpinejs/README.md: the file is npm's, unmodified.
    let file = include_bytes!("../../static/vendor/alpinejs/alpine-3.17.5.min.js");
    assert_eq!(
        thywill::resources::content_hash(file),
        "b4036e9e9ac22fa6f6ae1ba292e015e1f3e9c85d0d79e73e4c8eb9bb139b522e"
    );
    let readme = include_str!("../../static/vendor/alpinejs/README.md");
    assert!(readme.contains("b4036e9e9ac22fa6f6ae1ba292e015e1f3e9c85d0d79e73e4c8eb9bb139b522e"));
}
