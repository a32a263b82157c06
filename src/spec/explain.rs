//! YAML mistakes in the user's words. The parser and serde report where they
//! noticed a problem, in their own terms ("invalid type: unit value", "found
//! character that cannot start any token", the first key of a mapping for an
//! error in its third); this module turns that into what went wrong and
//! where: the field's own line, a tab named as a tab, a key indented into the
//! value above it, a quote never closed.

use serde_path_to_error::Segment;

/// A spec error as the user should read it: where, and what.
#[derive(Debug, PartialEq, Eq)]
pub struct Explained {
    pub line: usize,
    pub column: usize,
    /// The field path to print before the message; empty for none.
    pub path: String,
    pub message: String,
}

/// Explains serde's or the parser's `message` about the field at `segments`,
/// which it reported at `line`:`column` of `text`.
pub fn explain(
    text: &str,
    segments: &[Segment],
    path: &str,
    (line, column): (usize, usize),
    message: &str,
) -> Explained {
    let lines: Vec<&str> = text.lines().collect();
    let at = |line: usize, column: usize, message: String| Explained {
        line,
        column,
        path: path.to_string(),
        message,
    };
    if let Some(found) = syntax(&lines, (line, column), message) {
        return Explained {
            path: String::new(),
            ..found
        };
    }
    // The field's own line: serde reports errors found while building a
    // mapping at the mapping's first key.
    let keys: Vec<String> = segments
        .iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(key.clone()),
            _ => None,
        })
        .collect();
    let located = locate(&lines, &keys);
    if let Some(dup) = message
        .strip_prefix("duplicate field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        let mut within = keys.clone();
        within.push(dup.to_string());
        let (line, column) = locate_nth(&lines, &within, 1).unwrap_or((line, column));
        return at(
            line,
            column,
            format!("`{dup}` is given twice; keep one of the two"),
        );
    }
    // serde's place when it is the more precise one (a value inside the
    // field, on or after its line).
    let (line, column) = match located {
        Some((l, c)) if l > line => (l, c),
        _ => (line, column),
    };
    if let Some(found) = swallowed(&lines, line, path) {
        return found;
    }
    at(line, column, words(message))
}

/// Errors of the YAML syntax itself, at the place they are.
fn syntax(lines: &[&str], (line, column): (usize, usize), message: &str) -> Option<Explained> {
    let found = |line: usize, column: usize, message: String| {
        Some(Explained {
            line,
            column,
            path: String::new(),
            message,
        })
    };
    let text_at = lines.get(line.wrapping_sub(1)).copied().unwrap_or("");
    // A tab anywhere in the indentation of the line (or the one it complains of).
    if let Some(tab) = text_at
        .find('\t')
        .filter(|&t| text_at[..t].trim().is_empty())
    {
        return found(
            line,
            tab + 1,
            "a tab character: YAML indents with spaces only; replace the tab with spaces".into(),
        );
    }
    if let Some(rest) = message
        .split("while scanning a quoted scalar at line ")
        .nth(1)
    {
        let (l, c) = line_column(rest)?;
        return found(
            l,
            c,
            "this quote is never closed: add the closing quote on the same line (YAML read \
             everything after it as the value)"
                .into(),
        );
    }
    if message.contains("did not find expected key")
        || message.contains("mapping values are not allowed in this context")
        || message.contains("did not find expected '-' indicator")
    {
        return found(
            line,
            column,
            "this line is not indented like the keys around it: the keys of one mapping \
             start in the same column (two spaces deeper than the key they belong to)"
                .into(),
        );
    }
    None
}

/// `L column C` at the start of `text`.
fn line_column(text: &str) -> Option<(usize, usize)> {
    let (l, rest) = text.split_once(" column ")?;
    let c: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((l.trim().parse().ok()?, c.parse().ok()?))
}

/// A value that took in what was meant as more keys: the next line is
/// indented deeper and reads `key:` (YAML folded it into the value above),
/// or the value opens a quote its line never closes.
fn swallowed(lines: &[&str], line: usize, path: &str) -> Option<Explained> {
    let here = lines.get(line.checked_sub(1)?)?;
    let key = here.trim_start().split(':').next()?.trim();
    let value = here.split_once(':').map(|(_, v)| v.trim())?;
    if let Some(quote) = value.chars().next().filter(|c| *c == '"' || *c == '\'')
        && !value[1..].contains(quote)
    {
        let column = here.find(quote).map_or(1, |c| c + 1);
        return Some(Explained {
            line,
            column,
            path: path.to_string(),
            message: format!(
                "the quote after `{key}:` is not closed on this line, so YAML read the lines \
                 after it into the value; close it"
            ),
        });
    }
    let next_no = (line..lines.len()).find(|&i| !lines[i].trim().is_empty())?;
    let next = lines[next_no];
    let deeper = indent(next) > indent(here);
    let next_key = next.trim_start().split_once(':').map(|(k, _)| k.trim())?;
    let is_key = !next_key.is_empty()
        && next_key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    (deeper && is_key && !value.is_empty()).then(|| Explained {
        line: next_no + 1,
        column: indent(next) + 1,
        path: String::new(),
        message: format!(
            "`{next_key}:` is indented deeper than `{key}:` on the line above, so YAML read it \
             as part of {key}'s value; indent it like `{key}:`"
        ),
    })
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The line and column of the key at `keys` (a mapping path) in block YAML,
/// or of the deepest of them that is found.
fn locate(lines: &[&str], keys: &[String]) -> Option<(usize, usize)> {
    locate_nth(lines, keys, 0)
}

/// Like `locate`, taking the `nth` (from 0) occurrence of the last key.
fn locate_nth(lines: &[&str], keys: &[String], nth: usize) -> Option<(usize, usize)> {
    let (mut from, mut to, mut parent) = (0, lines.len(), None::<usize>);
    let mut found = None;
    for (depth, key) in keys.iter().enumerate() {
        let last = depth + 1 == keys.len();
        let mut seen = 0;
        let mut hit = None;
        for (i, l) in lines.iter().enumerate().take(to).skip(from) {
            let content = l.trim_start();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            if parent.is_some_and(|p| indent(l) <= p) {
                break;
            }
            let name = content.split(':').next().unwrap_or("").trim();
            let name = name.trim_matches(|c| c == '"' || c == '\'');
            if content.contains(':') && name == key {
                if last && seen < nth {
                    seen += 1;
                    continue;
                }
                hit = Some(i);
                break;
            }
        }
        let i = hit?;
        found = Some((i + 1, indent(lines[i]) + 1));
        parent = Some(indent(lines[i]));
        from = i + 1;
        to = (from..lines.len())
            .find(|&j| {
                let l = lines[j];
                !l.trim().is_empty()
                    && !l.trim_start().starts_with('#')
                    && indent(l) <= indent(lines[i])
            })
            .unwrap_or(lines.len());
    }
    found
}

/// serde's words for a wrong kind of value, in the spec author's.
fn words(message: &str) -> String {
    let kind = |k: &str| -> String {
        match k {
            "unit value" => "nothing".into(),
            "sequence" => "a list (`- item` lines)".into(),
            "map" => "a mapping (`key: value` lines)".into(),
            k if k.starts_with("string ") => format!("the text {}", &k[7..]),
            k if k.starts_with("integer ") => format!("the number {}", &k[8..]),
            k if k.starts_with("floating point ") => format!("the number {}", &k[15..]),
            k if k.starts_with("boolean ") => format!(
                "{} (YAML reads yes, no, true, false, on and off as a boolean; quote it)",
                &k[8..]
            ),
            other => other.into(),
        }
    };
    let expected = |e: &str| -> String {
        match e {
            "a map" => "a mapping (`key: value` lines)".into(),
            "a sequence" => "a list".into(),
            "a boolean" => "true or false".into(),
            "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number".into(),
            "i8" | "i16" | "i32" | "i64" | "isize" | "f32" | "f64" => "a number".into(),
            e => e.into(),
        }
    };
    if let Some((got, want)) = message
        .strip_prefix("invalid type: ")
        .and_then(|rest| rest.split_once(", expected "))
    {
        if got == "unit value" {
            return format!("has no value; give {}", expected(want));
        }
        return format!("is {}, where {} belongs", kind(got), expected(want));
    }
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        return format!("`{field}` is required here");
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_their_path() {
        let text = "host:\n  hostname: a\ndkim:\n  key: shared\n  selector: x\n  bits: 1\n";
        let lines: Vec<&str> = text.lines().collect();
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(locate(&lines, &path(&["dkim", "bits"])), Some((6, 3)));
        assert_eq!(locate(&lines, &path(&["host", "hostname"])), Some((2, 3)));
        // Not found: the deepest key that is.
        assert_eq!(locate(&lines, &path(&["dkim", "nope"])), None);
        assert_eq!(locate(&lines, &path(&["dkim"])), Some((3, 1)));
    }

    #[test]
    fn serde_words_are_translated() {
        assert_eq!(
            words("invalid type: unit value, expected a string or a list of strings"),
            "has no value; give a string or a list of strings"
        );
        assert_eq!(
            words("invalid type: sequence, expected a map"),
            "is a list (`- item` lines), where a mapping (`key: value` lines) belongs"
        );
    }
}
