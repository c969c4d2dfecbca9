//! Rewriting relative URLs in CSS when stylesheets from different directories are merged into
//! one bundle: `url(img/x.png)` in `/app/css/theme/main.css` becomes `url(/app/css/theme/img/x.png)`.
//!
//! A small scanner, aware of comments and strings, so that it works on any minifier's output
//! and on vendored `.min.css` files alike.

/// Whether a URL must be left alone: absolute, root-relative, protocol-relative, a data or
/// other scheme URL, or a fragment.
fn is_absolute(url: &str) -> bool {
    let u = url.trim();
    if u.is_empty() || u.starts_with('/') || u.starts_with('#') {
        return true;
    }
    // A scheme: letters, digits, `+`, `-`, `.` before a colon, starting with a letter.
    match u.find(':') {
        Some(i) => {
            let scheme = &u[..i];
            scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// Resolves `relative` against the directory of `from` (a client path), removing `.` and
/// `..` segments. Never climbs above the root.
pub fn resolve(from: &str, relative: &str) -> String {
    let dir = match from.rfind('/') {
        Some(i) => &from[..i],
        None => "",
    };
    let (path, suffix) = match relative.find(['?', '#']) {
        Some(i) => (&relative[..i], &relative[i..]),
        None => (relative, ""),
    };
    let mut segments: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::from("/");
    out.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        out.push('/');
    }
    out.push_str(suffix);
    out
}

fn quote_if_needed(url: &str) -> String {
    if url
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '(' | ')' | '\'' | '"' | '\\'))
    {
        format!("\"{}\"", url.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        url.to_owned()
    }
}

/// Rewrites every relative `url(...)` and `@import "..."` in `css` (served from client path
/// `from`) to a root-relative path.
pub fn rebase(css: &str, from: &str) -> String {
    let bytes = css.as_bytes();
    let mut out = String::with_capacity(css.len() + 64);
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'/' && bytes.get(i + 1) == Some(&b'*') {
            // Comment: skip to its end.
            i = css[i + 2..].find("*/").map_or(bytes.len(), |e| i + 2 + e + 2);
            continue;
        }
        if b == b'"' || b == b'\'' {
            i = skip_string(bytes, i);
            continue;
        }
        if (b == b'u' || b == b'U')
            && css[i..].len() >= 4
            && css[i..i + 4].eq_ignore_ascii_case("url(")
            && (i == 0 || !is_ident_byte(bytes[i - 1]))
        {
            let start = i + 4;
            if let Some((url, end)) = parse_url_arg(css, start) {
                if !is_absolute(&url) {
                    out.push_str(&css[copied..i]);
                    out.push_str("url(");
                    out.push_str(&quote_if_needed(&resolve(from, url.trim())));
                    out.push(')');
                    copied = end;
                }
                i = end;
                continue;
            }
        }
        if b == b'@' && css[i..].len() >= 7 && css[i + 1..i + 7].eq_ignore_ascii_case("import") {
            // `@import "x.css"` (the `url(...)` form is handled above).
            let mut j = i + 7;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            if j < bytes.len() && (bytes[j] == b'"' || bytes[j] == b'\'') {
                let end = skip_string(bytes, j);
                let inner = &css[j + 1..end.saturating_sub(1).max(j + 1)];
                if !is_absolute(inner) {
                    out.push_str(&css[copied..j]);
                    out.push('"');
                    out.push_str(&resolve(from, inner).replace('"', "\\\""));
                    out.push('"');
                    copied = end;
                }
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&css[copied..]);
    out
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b >= 0x80
}

/// Index just past the string starting at `start` (a quote).
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            c if c == quote => return i + 1,
            b'\n' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Parses the argument of `url(` starting at `start`; returns the unescaped URL and the index
/// just past the closing parenthesis.
fn parse_url_arg(css: &str, start: usize) -> Option<(String, usize)> {
    let bytes = css.as_bytes();
    let mut i = start;
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    let url;
    if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
        let end = skip_string(bytes, i);
        let inner = &css[i + 1..end.saturating_sub(1).max(i + 1)];
        url = inner.replace("\\\"", "\"").replace("\\'", "'");
        i = end;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if bytes.get(i) != Some(&b')') {
            return None;
        }
    } else {
        let close = css[i..].find(')')? + i;
        url = css[i..close].trim().to_owned();
        i = close;
    }
    Some((url, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_paths() {
        assert_eq!(resolve("/a/css/x.css", "img/p.png"), "/a/css/img/p.png");
        assert_eq!(
            resolve("/a/css/x.css", "../img/p.png?v=1#f"),
            "/a/img/p.png?v=1#f"
        );
        assert_eq!(resolve("/a/css/x.css", "../../../../p.png"), "/p.png");
        assert_eq!(resolve("/a/css/x.css", "./p.png"), "/a/css/p.png");
    }

    #[test]
    fn rewrites_relative_urls_only() {
        let css = r#"/* url(c.png) */ .a{background:url(img/a.png)} .b{background:URL( "../b c.png" )}
.c{background:url(/abs.png)} .d{background:url(data:image/png;base64,AAA=)} .e{content:"url(x.png)"}
.f{background:url(https://x.example/f.png)} .g{mask:url(#m)} @import "base.css"; @import url('other.css');"#;
        let out = rebase(css, "/app/css/theme/main.css");
        assert!(out.contains("/* url(c.png) */"), "{out}");
        assert!(out.contains("url(/app/css/theme/img/a.png)"), "{out}");
        assert!(out.contains(r#"url("/app/css/b c.png")"#), "{out}");
        assert!(out.contains("url(/abs.png)"), "{out}");
        assert!(out.contains("url(data:image/png;base64,AAA=)"), "{out}");
        assert!(out.contains(r#"content:"url(x.png)""#), "{out}");
        assert!(out.contains("url(https://x.example/f.png)"), "{out}");
        assert!(out.contains("url(#m)"), "{out}");
        assert!(out.contains(r#"@import "/app/css/theme/base.css""#), "{out}");
        assert!(out.contains("url(/app/css/theme/other.css)"), "{out}");
    }
}
