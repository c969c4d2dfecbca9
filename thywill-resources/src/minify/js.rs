//! JavaScript minification with swc_core.
//!
//! Scripts are treated as classic scripts that may define globals other scripts use: top-level
//! names are never mangled or dropped. Each file is parsed on its own, so a syntax error
//! names its own file, line and column.

use std::panic::{AssertUnwindSafe, catch_unwind};

use swc_core::common::comments::SingleThreadedComments;
use swc_core::common::sync::Lrc;
use swc_core::common::{FileName, GLOBALS, Globals, Mark, SourceMap, Span, Spanned};
use swc_core::ecma::codegen::text_writer::JsWriter;
use swc_core::ecma::codegen::{Config as CodegenConfig, Emitter};
use swc_core::ecma::minifier::optimize;
use swc_core::ecma::minifier::option::{CompressOptions, ExtraOptions, MangleOptions, MinifyOptions};
use swc_core::ecma::parser::{EsSyntax, Parser, StringInput, Syntax};
use swc_core::ecma::transforms::base::fixer::fixer;
use swc_core::ecma::transforms::base::hygiene::hygiene;
use swc_core::ecma::transforms::base::resolver;

use crate::ResourcesError;

fn syntax_error(cm: &SourceMap, origin: &str, span: Span, message: String) -> ResourcesError {
    let (line, column) = match cm.try_lookup_char_pos(span.lo) {
        Ok(loc) => (loc.line, loc.col_display + 1),
        Err(_) => (0, 0),
    };
    ResourcesError::Syntax {
        file: origin.to_owned(),
        line,
        column,
        message,
    }
}

/// Minifies one script. `origin` names it in error messages.
pub fn minify(origin: &str, source: &str) -> Result<String, ResourcesError> {
    let run = || {
        GLOBALS.set(&Globals::new(), || {
            let cm: Lrc<SourceMap> = Default::default();
            let fm = cm.new_source_file(Lrc::new(FileName::Custom(origin.to_owned())), source.to_owned());
            let comments = SingleThreadedComments::default();
            let mut parser = Parser::new(
                Syntax::Es(EsSyntax::default()),
                StringInput::from(&*fm),
                Some(&comments),
            );
            let parsed = parser.parse_program();
            // The parser recovers from some errors and only records them: any is fatal here.
            let recovered = parser.take_errors();
            let program = match parsed {
                Ok(p) => p,
                Err(e) => return Err(syntax_error(&cm, origin, e.span(), e.kind().msg().into_owned())),
            };
            if let Some(e) = recovered.into_iter().next() {
                return Err(syntax_error(&cm, origin, e.span(), e.kind().msg().into_owned()));
            }

            let unresolved_mark = Mark::new();
            let top_level_mark = Mark::new();
            let program = program.apply(resolver(unresolved_mark, top_level_mark, false));
            let options = MinifyOptions {
                compress: Some(CompressOptions::default()),
                mangle: Some(MangleOptions {
                    // Classic scripts share the global scope: keep top-level names.
                    top_level: Some(false),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let extra = ExtraOptions {
                unresolved_mark,
                top_level_mark,
                mangle_name_cache: None,
            };
            let program = optimize(program, cm.clone(), Some(&comments), None, &options, &extra);
            let program = program.apply(hygiene()).apply(fixer(Some(&comments)));

            let mut out = Vec::with_capacity(source.len() / 2);
            {
                let mut emitter = Emitter {
                    cfg: CodegenConfig::default().with_minify(true),
                    cm: cm.clone(),
                    comments: None,
                    wr: JsWriter::new(cm.clone(), "\n", &mut out, None),
                };
                emitter
                    .emit_program(&program)
                    .map_err(|e| ResourcesError::Invalid {
                        origin: origin.to_owned(),
                        message: format!("cannot print the minified script: {e}"),
                    })?;
            }
            String::from_utf8(out).map_err(|_| ResourcesError::NotText {
                origin: origin.to_owned(),
            })
        })
    };
    // swc reports some internal failures by panicking; never let them take the server down.
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(result) => result,
        Err(_) => Err(ResourcesError::Invalid {
            origin: origin.to_owned(),
            message: "the JavaScript minifier failed on this file".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minifies_and_keeps_globals() -> Result<(), ResourcesError> {
        let src = "/* c */\nfunction greet(name) {\n  var message = 'hello ' + name;\n  return message;\n}\nvar unused_local = (function () { var x = 1; return x + 1; })();\n";
        let out = minify("a.js", src)?;
        assert!(out.len() < src.len(), "{out}");
        assert!(out.contains("function greet("), "{out}");
        assert!(out.contains("unused_local"), "{out}");
        assert!(!out.contains("/* c */"), "{out}");
        Ok(())
    }

    #[test]
    fn syntax_errors_name_file_line_and_column() {
        let err = minify("static/broken.js", "var a = 1;\nvar b = ;\n");
        match err {
            Err(ResourcesError::Syntax {
                file, line, column, ..
            }) => {
                assert_eq!((file.as_str(), line), ("static/broken.js", 2));
                assert_eq!(column, 9);
            }
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }
}
