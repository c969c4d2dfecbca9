//! The page keeps the original's structure (ui-reference.md) and is served with its assets.

use crate::fixture::Fixture;

#[tokio::test]
async fn the_page_has_the_originals_structure() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    let (status, page) = f.get("/calculations/").await?;
    assert_eq!(status, 200);
    for needle in [
        "<title>Thywill: Calculations Application</title>",
        r#"<div id="calculations-wrapper">"#,
        r#"<ul class="operations-wrapper">"#,
        r#"id="title""#,
        r#"id="status""#,
        r#"id="instructions""#,
        // One script bundle (client library and calculations.js) and one style bundle.
        r#"<script src="/calculations/js/"#,
        r#".min.js" data-base="/calculations" defer></script>"#,
        r#"<link rel="stylesheet" href="/calculations/css/"#,
    ] {
        assert!(page.contains(needle), "page lacks {needle}");
    }
    for (op, label) in [
        ("multiplyByTwo", "* 2"),
        ("divideByTwo", "/ 2"),
        ("square", "^ 2"),
        ("squareRoot", "^ 0.5"),
    ] {
        assert!(
            page.contains(&format!(r#"<li id="{op}" class="operation-wrapper">"#)),
            "{op}"
        );
        assert!(
            page.contains(&format!(r#"<input operation="{op}" type="text" maxlength="5""#)),
            "{op}"
        );
        assert!(
            page.contains(&format!(r#"<span class="operation">{label}</span>"#)),
            "{op}"
        );
    }
    assert_eq!(page.matches(r#"<span class="equals">=</span>"#).count(), 4);
    assert_eq!(page.matches(r#"<span class="result"></span>"#).count(), 4);
    for asset in [
        "/calculations/js/calculations.js",
        "/calculations/css/calculations.css",
        "/calculations/thywill/thywill.js",
    ] {
        let (status, body) = f.get(asset).await?;
        assert_eq!(status, 200, "{asset}");
        assert!(!body.is_empty(), "{asset}");
    }
    Ok(())
}

#[tokio::test]
async fn the_typescript_declarations_are_served() -> anyhow::Result<()> {
    let f = Fixture::start().await?;
    let (status, dts) = f.get(example_calculations::TYPESCRIPT_PATH).await?;
    assert_eq!(status, 200);
    assert!(dts.contains("interface CalculationsRpc {"), "{dts}");
    for name in [
        "multiplicative.multiplyByTwo",
        "multiplicative.divideByTwo",
        "powers.square",
        "powers.squareRoot",
    ] {
        assert!(
            dts.contains(&format!(
                r#"  "{name}": {{ args: [number]; result: number | null }};"#
            )),
            "{name} in {dts}"
        );
    }
    Ok(())
}
