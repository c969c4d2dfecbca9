//! A scanner for Rust syntax that needs a newer compiler than a package's `rust-version`.
//!
//! This machine has one toolchain and cannot download another, so `cargo +<msrv> check`
//! cannot run here; this scanner covers what the compiler would reject on an older toolchain
//! and clippy cannot see (clippy's `incompatible_msrv` covers std APIs, not syntax). It lexes
//! each file (comments, strings and char literals are skipped) and looks for the syntax in
//! [`scan`]'s table. Syntax that is not in the table is not caught: add a row when the
//! project starts to use something new.

use std::fmt;
use std::path::{Path, PathBuf};

/// A Rust version, `major.minor` (patch releases add no syntax).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Version(pub(crate) u32, pub(crate) u32);

impl Version {
    /// Parses `1.88` or `1.88.0`.
    pub(crate) fn parse(s: &str) -> Option<Version> {
        let mut parts = s.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().unwrap_or("0").parse().ok()?;
        Some(Version(major, minor))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// One use of versioned syntax.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Hit {
    /// 1-based line.
    pub(crate) line: usize,
    /// What it is, for the message.
    pub(crate) what: &'static str,
    /// The Rust version that stabilised it.
    pub(crate) since: Version,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Punct(&'static str),
    /// A string literal; `true` for a C string (`c"…"`, `cr"…"`).
    Str(bool),
    /// Char, byte, number literals and lifetimes: nothing the table looks at.
    Other,
}

const PUNCTS: [&str; 33] = [
    "<<=", ">>=", "...", "..=", "&&", "||", "==", "!=", "<=", ">=", "=>", "->", "::", "+=", "-=", "*=", "/=",
    "%=", "^=", "&=", "|=", "<<", ">>", "..", "{", "}", "(", ")", "[", "]", ";", ",", "=",
];

/// Splits source text into tokens with their lines; comments and literal contents dropped.
fn lex(src: &str) -> Vec<(usize, Tok)> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    let count_lines = |from: usize, to: usize| b[from..to].iter().filter(|&&c| c == b'\n').count();
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let start = i;
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            line += count_lines(start, i.min(b.len()));
        } else if let Some((end, is_c)) = string_at(b, i) {
            out.push((line, Tok::Str(is_c)));
            line += count_lines(i, end);
            i = end;
        } else if c == b'\'' {
            // A char literal ('a', '\n', '\u{..}') or a lifetime ('a).
            let start = i;
            i += 1;
            if i < b.len() && b[i] == b'\\' {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            } else {
                // One character (maybe multi-byte), then a closing quote: a char literal.
                let ch_len = src[i..].chars().next().map_or(1, char::len_utf8);
                if b.get(i + ch_len) == Some(&b'\'') {
                    i += ch_len + 1;
                } else {
                    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                        i += 1;
                    }
                }
            }
            line += count_lines(start, i.min(b.len()));
            out.push((line, Tok::Other));
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((line, Tok::Other));
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] >= 0x80) {
                i += 1;
            }
            let word = &src[start..i];
            out.push((
                line,
                Tok::Ident(word.strip_prefix("r#").unwrap_or(word).to_string()),
            ));
        } else if let Some(p) = PUNCTS.iter().find(|p| b[i..].starts_with(p.as_bytes())) {
            out.push((line, Tok::Punct(p)));
            i += p.len();
        } else {
            // Single-character punctuation the table does not look at, except `|` and `&`.
            out.push((
                line,
                match c {
                    b'|' => Tok::Punct("|"),
                    b'&' => Tok::Punct("&"),
                    b'<' => Tok::Punct("<"),
                    b'#' => Tok::Punct("#"),
                    _ => Tok::Other,
                },
            ));
            i += 1;
        }
    }
    out
}

/// If a string literal starts at `i` (`"…"`, `b"…"`, `c"…"`, `r#"…"#`, `br"…"`, `cr"…"`),
/// where it ends and whether it is a C string.
fn string_at(b: &[u8], i: usize) -> Option<(usize, bool)> {
    // Not the tail of an identifier (`abc"` cannot happen, but `r` in `for r in` must stay).
    if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
        return None;
    }
    let mut j = i;
    let mut is_c = false;
    match b.get(j) {
        Some(b'b') => j += 1,
        Some(b'c') => {
            is_c = true;
            j += 1;
        }
        _ => {}
    }
    let raw = b.get(j) == Some(&b'r');
    if raw {
        j += 1;
    }
    let mut hashes = 0;
    while raw && b.get(j) == Some(&b'#') {
        hashes += 1;
        j += 1;
    }
    if b.get(j) != Some(&b'"') {
        return None;
    }
    j += 1;
    if raw {
        while j < b.len() {
            if b[j] == b'"' && b[j + 1..].iter().take(hashes).filter(|&&c| c == b'#').count() == hashes {
                return Some((j + 1 + hashes, is_c));
            }
            j += 1;
        }
        Some((b.len(), is_c))
    } else {
        while j < b.len() {
            match b[j] {
                b'\\' => j += 2,
                b'"' => return Some((j + 1, is_c)),
                _ => j += 1,
            }
        }
        Some((b.len(), is_c))
    }
}

fn is_ident(t: Option<&(usize, Tok)>, word: &str) -> bool {
    matches!(t, Some((_, Tok::Ident(w))) if w == word)
}

fn is_punct(t: Option<&(usize, Tok)>, p: &str) -> bool {
    matches!(t, Some((_, Tok::Punct(q))) if *q == p)
}

/// Whether the condition of the `if`/`while` at `start` is a let chain: a `let` and a `&&`
/// (or `||`) both at the condition's top level. The condition ends at its block's `{`, at a
/// match guard's `=>`, or where the enclosing brackets close.
fn let_chain_at(toks: &[(usize, Tok)], start: usize) -> bool {
    let mut depth = 0i32;
    let mut has_let = false;
    let mut has_chain = false;
    // Inside `let PATTERN =`: braces there are a struct pattern, not the block.
    let mut in_pattern = false;
    for (_, t) in &toks[start + 1..] {
        match t {
            Tok::Punct("(" | "[") => depth += 1,
            Tok::Punct("{") if in_pattern || depth > 0 => depth += 1,
            Tok::Punct("{" | "=>" | ";") if depth == 0 => break,
            Tok::Punct(")" | "]" | "}") => {
                depth -= 1;
                if depth < 0 {
                    break;
                }
            }
            Tok::Ident(w) if depth == 0 && w == "let" => {
                has_let = true;
                in_pattern = true;
            }
            Tok::Punct("=") if depth == 0 => in_pattern = false,
            Tok::Punct("&&" | "||") if depth == 0 && !in_pattern => has_chain = true,
            _ => {}
        }
    }
    has_let && has_chain
}

/// Every use of versioned syntax in `src`, in order:
///
/// | syntax | since |
/// |---|---|
/// | let chains (`if let … && …`, `while let … && …`) | 1.88 |
/// | `cfg(true)` / `cfg(false)` | 1.88 |
/// | async closures (`async \|…\|`, `async move \|…\|`) | 1.85 |
/// | `use<…>` precise-capturing bounds | 1.82 |
/// | `&raw const` / `&raw mut` | 1.82 |
/// | `unsafe extern` blocks | 1.82 |
/// | inline `const { … }` blocks | 1.79 |
/// | C string literals (`c"…"`) | 1.77 |
pub(crate) fn scan(src: &str) -> Vec<Hit> {
    let toks = lex(src);
    let mut hits = Vec::new();
    let mut hit = |line: usize, what: &'static str, since: Version| hits.push(Hit { line, what, since });
    for (i, (line, t)) in toks.iter().enumerate() {
        let line = *line;
        let next = toks.get(i + 1);
        let next2 = toks.get(i + 2);
        match t {
            Tok::Ident(w) if (w == "if" || w == "while") && let_chain_at(&toks, i) => {
                hit(line, "a let chain (`if let … &&`)", Version(1, 88));
            }
            Tok::Ident(w)
                if (w == "cfg" || w == "cfg_attr")
                    && is_punct(next, "(")
                    && (is_ident(next2, "true") || is_ident(next2, "false")) =>
            {
                hit(line, "`cfg(true)`/`cfg(false)`", Version(1, 88));
            }
            Tok::Ident(w)
                if w == "async"
                    && (is_punct(next, "|")
                        || is_punct(next, "||")
                        || (is_ident(next, "move") && (is_punct(next2, "|") || is_punct(next2, "||")))) =>
            {
                hit(line, "an async closure", Version(1, 85));
            }
            Tok::Ident(w) if w == "use" && is_punct(next, "<") => {
                hit(line, "a `use<…>` precise-capturing bound", Version(1, 82));
            }
            Tok::Punct("&")
                if is_ident(next, "raw") && (is_ident(next2, "const") || is_ident(next2, "mut")) =>
            {
                hit(line, "`&raw const`/`&raw mut`", Version(1, 82));
            }
            Tok::Ident(w)
                if w == "unsafe"
                    && is_ident(next, "extern")
                    && (is_punct(next2, "{")
                        || (matches!(next2, Some((_, Tok::Str(_)))) && is_punct(toks.get(i + 3), "{"))) =>
            {
                hit(line, "an `unsafe extern` block", Version(1, 82));
            }
            Tok::Ident(w) if w == "const" && is_punct(next, "{") => {
                hit(line, "an inline `const { … }` block", Version(1, 79));
            }
            Tok::Str(true) => hit(line, "a C string literal", Version(1, 77)),
            _ => {}
        }
    }
    hits
}

/// The `.rs` files of the package in `dir`: not those of packages nested in it (a directory
/// with its own Cargo.toml), nor build output (`target*`) or hidden directories.
pub(crate) fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                let skip = name.starts_with('.')
                    || name.starts_with("target")
                    || name == "node_modules"
                    || path.join("Cargo.toml").is_file();
                if !skip {
                    dirs.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(src: &str) -> Vec<(usize, Version)> {
        scan(src).into_iter().map(|h| (h.line, h.since)).collect()
    }

    #[test]
    fn finds_let_chains() {
        let src = "fn f() {\n    if let Some(x) = a && x > 1 {}\n    while let Some(y) = it.next()\n        && y.ok() {}\n    if a && let Some(b) = c {}\n}\n";
        assert_eq!(
            found(src),
            vec![(2, Version(1, 88)), (3, Version(1, 88)), (5, Version(1, 88))]
        );
    }

    #[test]
    fn plain_conditions_are_not_let_chains() {
        let src = r#"
fn f() {
    if let Some(x) = a { if b && c {} }
    if let Some(x) = f(a && b) {}
    if let Point { x, y } = p { let z = x && y; }
    if a && b { let c = d; }
    while let Some(v) = it.next() { g(v && w); }
    match v { Some(x) if x && y => {} _ => {} }
    let s = "if let x = y && z";
    // if let Some(x) = a && b
    /* if let Some(x) = a && b */
    let c = '{';
    if let Some(x) = a.iter().find(|y| y.ok() && y.big()) {}
    if let Some(x) = m { x } else if let Ok(y) = n { y } else { z };
}
"#;
        assert_eq!(found(src), vec![]);
    }

    #[test]
    fn struct_patterns_do_not_hide_a_chain() {
        let src = "fn f() { if let P { x, y } = p && x > y {} }";
        assert_eq!(found(src), vec![(1, Version(1, 88))]);
    }

    #[test]
    fn finds_the_other_rows() {
        let src = "#[cfg(false)]\nfn a() { let f = async move |x| x; let g = async || 1; }\nfn b() -> impl Sized + use<> {}\nfn c() { let p = &raw const X; let s = c\"hi\"; let k = const { 1 }; }\nunsafe extern \"C\" { fn d(); }\n";
        assert_eq!(
            found(src),
            vec![
                (1, Version(1, 88)),
                (2, Version(1, 85)),
                (2, Version(1, 85)),
                (3, Version(1, 82)),
                (4, Version(1, 82)),
                (4, Version(1, 77)),
                (4, Version(1, 79)),
                (5, Version(1, 82)),
            ]
        );
    }

    #[test]
    fn older_lookalikes_are_not_flagged() {
        let src = r##"
use std::io;
const X: u8 = 1;
const fn k() {}
unsafe extern "C" fn cb() {}
fn f<'a>(s: &'a str) -> char { let r = r#"c"x""#; let async_ = 1; 'x' }
async fn g() { let h = async move { 1 }; }
"##;
        assert_eq!(found(src), vec![]);
    }

    #[test]
    fn counts_lines_across_comments_and_strings() {
        let src = "/* one\ntwo */\nlet s = \"a\nb\";\nif let Some(x) = y && z {}\n";
        assert_eq!(found(src), vec![(5, Version(1, 88))]);
    }

    #[test]
    fn parses_versions() {
        assert_eq!(Version::parse("1.88"), Some(Version(1, 88)));
        assert_eq!(Version::parse("1.88.1"), Some(Version(1, 88)));
        assert!(Version(1, 88) > Version(1, 9));
        assert_eq!(Version::parse("x"), None);
    }
}
