//! Rust names for Varlink names, and doc comments from IDL comments.

/// Words Rust reserves: a field of such a name becomes a raw identifier (`r#type`).
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "do", "dyn",
    "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let",
    "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref", "return",
    "static", "struct", "trait", "true", "try", "type", "typeof", "unsafe", "unsized", "use",
    "virtual", "where", "while", "yield",
];

/// Keywords that cannot be raw identifiers: they get a trailing `_`.
const NOT_RAW: &[&str] = &["self", "Self", "super", "crate"];

/// `camelCase`, `PascalCase` or `SCREAMING` to `snake_case`: `ifIndex` → `if_index`,
/// `SSHKeys` → `ssh_keys`, `GetInfo` → `get_info`.
pub(crate) fn snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            let boundary = match prev {
                Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(char::is_ascii_lowercase),
                _ => false,
            };
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `snake_case` or `lowercase` to `PascalCase`: `in_progress` → `InProgress`, `ipv4` →
/// `Ipv4`; letters already upper case stay so (`AAAA`).
pub(crate) fn pascal(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for part in name.split('_').filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    out
}

/// `name` made a usable identifier: raw if Rust reserves it.
pub(crate) fn ident(name: &str) -> String {
    if NOT_RAW.contains(&name) {
        format!("{name}_")
    } else if KEYWORDS.contains(&name) {
        format!("r#{name}")
    } else {
        name.to_owned()
    }
}

/// `text` as a Rust string literal.
pub(crate) fn literal(text: &str) -> String {
    format!("{text:?}")
}

/// Doc attributes for the lines of an IDL comment, so that rustdoc reads them as plain text:
/// no links from `[]string`, no HTML from `<name>`, no code blocks (or doc tests) from an
/// indented line.
pub(crate) fn doc(lines: &[String], indent: &str) -> String {
    let mut out = String::new();
    for line in lines {
        let mut text = String::with_capacity(line.len());
        // Inside a code span (between backticks) everything is literal already.
        let mut code = false;
        for c in line.trim().chars() {
            match c {
                '`' => {
                    code = !code;
                    text.push(c);
                }
                '[' | ']' | '\\' if !code => {
                    text.push('\\');
                    text.push(c);
                }
                '<' if !code => text.push_str("&lt;"),
                '>' if !code => text.push_str("&gt;"),
                '&' if !code => text.push_str("&amp;"),
                c => text.push(c),
            }
        }
        out.push_str(indent);
        if text.is_empty() {
            out.push_str("///\n");
        } else {
            out.push_str("/// ");
            out.push_str(&text);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(snake("ifindex"), "ifindex");
        assert_eq!(snake("ifIndex"), "if_index");
        assert_eq!(snake("SSHKeys"), "ssh_keys");
        assert_eq!(snake("GetInfo"), "get_info");
        assert_eq!(snake("refused_uid_share"), "refused_uid_share");
        assert_eq!(snake("ResolveHostname"), "resolve_hostname");
        assert_eq!(snake("IPv4Address"), "i_pv4_address");
        assert_eq!(pascal("in_progress"), "InProgress");
        assert_eq!(pascal("AAAA"), "AAAA");
        assert_eq!(pascal("ipv4"), "Ipv4");
        assert_eq!(ident("type"), "r#type");
        assert_eq!(ident("self"), "self_");
        assert_eq!(ident("Self"), "Self_");
        assert_eq!(ident("value"), "value");
    }

    #[test]
    fn comments_are_plain_text() {
        let lines = vec![
            "  a list: []string, <tag> & more, `[]string`".to_owned(),
            String::new(),
            "    indented".to_owned(),
        ];
        assert_eq!(
            doc(&lines, ""),
            "/// a list: \\[\\]string, &lt;tag&gt; &amp; more, `[]string`\n///\n/// indented\n"
        );
    }
}
