//! CSS minification with lightningcss, for a fixed set of browser targets so that the output
//! keeps syntax older browsers understand (`min-width` rather than range media queries).

use lightningcss::stylesheet::{MinifyOptions, ParserOptions, PrinterOptions, StyleSheet};
use lightningcss::targets::{Browsers, Targets};

use crate::ResourcesError;

/// The browsers minified CSS must work in: the last few years of the evergreen browsers.
pub fn default_targets() -> Targets {
    let v = |major: u32| Some(major << 16);
    Targets::from(Browsers {
        chrome: v(90),
        edge: v(90),
        firefox: v(88),
        safari: v(14),
        ios_saf: v(14),
        opera: v(76),
        samsung: v(15),
        android: v(90),
        ie: None,
    })
}

/// Minifies one stylesheet. `origin` names it in error messages.
pub fn minify(origin: &str, source: &str, targets: Targets) -> Result<String, ResourcesError> {
    let syntax = |loc: Option<lightningcss::error::ErrorLocation>, message: String| {
        let (line, column) = loc.map_or((0, 0), |l| (l.line as usize + 1, l.column as usize));
        ResourcesError::Syntax {
            file: origin.to_owned(),
            line,
            column,
            message,
        }
    };
    let options = ParserOptions {
        filename: origin.to_owned(),
        ..ParserOptions::default()
    };
    let mut sheet = StyleSheet::parse(source, options).map_err(|e| syntax(e.loc, e.kind.to_string()))?;
    sheet
        .minify(MinifyOptions {
            targets,
            ..MinifyOptions::default()
        })
        .map_err(|e| syntax(e.loc, e.kind.to_string()))?;
    let printed = sheet
        .to_css(PrinterOptions {
            minify: true,
            targets,
            ..PrinterOptions::default()
        })
        .map_err(|e| syntax(e.loc, e.kind.to_string()))?;
    Ok(printed.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minifies_for_older_browsers() -> Result<(), ResourcesError> {
        let src = "/* x */\n.a {\n  color: #ff0000;\n  margin: 0px 0px 0px 0px;\n}\n@media (min-width: 600px) {\n  .a { color: red; }\n}\n";
        let out = minify("a.css", src, default_targets())?;
        assert!(out.len() < src.len(), "{out}");
        assert!(out.contains("min-width:600px"), "{out}");
        assert!(!out.contains("/* x */"), "{out}");
        Ok(())
    }

    #[test]
    fn syntax_errors_name_file_line_and_column() {
        match minify(
            "static/broken.css",
            ".a { color: red; }\n@media ( {\n}\n",
            default_targets(),
        ) {
            Err(ResourcesError::Syntax {
                file, line, column, ..
            }) => {
                assert_eq!((file.as_str(), line, column), ("static/broken.css", 2, 11));
            }
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }
}
