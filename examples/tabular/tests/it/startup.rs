//! A script or stylesheet that does not parse fails start-up with its file, line and column.

use thywill::resources::Source;
use thywill::{Entry, Manifest, ResourceKind};

use crate::fixture::fast_app;

async fn build_with(extra: Entry) -> Result<thywill::Thywill, thywill::Error> {
    example_tabular::builder_with(fast_app())?
        .bootstrap(Manifest::new().entry(extra))
        .build()
        .await
}

#[tokio::test]
async fn a_broken_script_fails_start_up_with_file_line_and_column() -> anyhow::Result<()> {
    let source = Source::inline(
        "static/js/broken.js",
        "function ok() {\n  return 1;\n}\nvar x = {;\n",
    );
    let err = match build_with(Entry::new("/tabular/js/broken.js", source).weight(15)).await {
        Ok(_) => anyhow::bail!("a broken script must fail start-up"),
        Err(e) => e,
    };
    assert!(err.is_syntax(), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("static/js/broken.js:4:10"), "{msg}");
    Ok(())
}

#[tokio::test]
async fn a_broken_on_demand_script_fails_start_up_too() -> anyhow::Result<()> {
    let source = Source::inline("static/js/later.js", "let a = 1;\nlet a = 2;\nif (\n");
    let err = match build_with(Entry::new("/tabular/js/later.js", source).on_demand()).await {
        Ok(_) => anyhow::bail!("a broken script must fail start-up"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("static/js/later.js:"), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_broken_stylesheet_fails_start_up_with_file_line_and_column() -> anyhow::Result<()> {
    let source = Source::inline(
        "static/css/broken.css",
        ".a { color: red; }\n\n@media screen and ( {\n}\n",
    );
    let err = match build_with(Entry::new("/tabular/css/broken.css", source)).await {
        Ok(_) => anyhow::bail!("a broken stylesheet must fail start-up"),
        Err(e) => e,
    };
    assert!(err.is_syntax(), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("static/css/broken.css:3:"), "{msg}");
    Ok(())
}

#[tokio::test]
async fn a_broken_page_template_fails_start_up_with_its_name() -> anyhow::Result<()> {
    let source = Source::inline("static/other.html", "<p>\n{% if %}\n</p>");
    let err = match build_with(Entry::new("/tabular/other/", source).kind(ResourceKind::Html)).await {
        Ok(_) => anyhow::bail!("a broken page template must fail start-up"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(
        msg.contains("static/other.html") && msg.contains("line 2"),
        "{msg}"
    );
    Ok(())
}
