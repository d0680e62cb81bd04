//! The folded form of the legacy exception instructions, which the `wast` crate does not parse:
//! `(try $l? bt* (do instr*) (catch $t instr*)* (catch_all instr*)?)` and
//! `(try $l? bt* (do instr*) (delegate $l))` are rewritten to their flat forms
//! (`try ... catch ... end`, `try ... delegate $l`); everything else is kept byte for byte.

enum Node<'a> {
    /// An atom, a string, whitespace or a comment: kept as it is.
    Text(&'a str),
    List(Vec<Node<'a>>),
}

fn tokens(s: &str) -> Option<Vec<&str>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        if s[i..].starts_with(";;") {
            i = s[i..].find('\n').map_or(b.len(), |n| i + n);
        } else if s[i..].starts_with("(;") {
            let mut depth = 0;
            loop {
                if s[i..].starts_with("(;") {
                    depth += 1;
                    i += 2;
                } else if s[i..].starts_with(";)") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else if i < b.len() {
                    i += 1;
                } else {
                    return None;
                }
            }
        } else if b[i] == b'(' || b[i] == b')' {
            i += 1;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
        } else if b[i].is_ascii_whitespace() {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'(' | b')' | b'"') && !s[i..].starts_with(";;") {
                i += 1;
            }
        }
        out.push(s.get(start..i)?);
    }
    Some(out)
}

fn parse<'a>(toks: &[&'a str], i: &mut usize, depth: usize) -> Option<Vec<Node<'a>>> {
    let mut nodes = Vec::new();
    while *i < toks.len() {
        let t = toks[*i];
        *i += 1;
        match t {
            "(" => nodes.push(Node::List(parse(toks, i, depth + 1)?)),
            ")" if depth > 0 => return Some(nodes),
            ")" => return None,
            _ => nodes.push(Node::Text(t)),
        }
    }
    (depth == 0).then_some(nodes)
}

fn significant(t: &str) -> bool {
    !(t.trim().is_empty() || t.starts_with(";;") || t.starts_with("(;"))
}

fn head<'a>(nodes: &[Node<'a>]) -> Option<&'a str> {
    nodes.iter().find_map(|n| match n {
        Node::Text(t) if significant(t) => Some(Some(*t)),
        Node::Text(_) => None,
        Node::List(_) => Some(None),
    })?
}

/// The nodes after the head atom.
fn after_head<'a, 'n>(nodes: &'n [Node<'a>]) -> &'n [Node<'a>] {
    let k = nodes.iter().position(|n| matches!(n, Node::Text(t) if significant(t))).map_or(0, |k| k + 1);
    &nodes[k..]
}

fn write(nodes: &[Node<'_>], out: &mut String) {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::List(inner) => write_list(inner, out),
        }
    }
}

fn write_list(inner: &[Node<'_>], out: &mut String) {
    let folded_try = head(inner) == Some("try")
        && inner.iter().any(|n| matches!(n, Node::List(l) if head(l) == Some("do")));
    if !folded_try {
        out.push('(');
        write(inner, out);
        out.push(')');
        return;
    }
    out.push_str(" try");
    for n in after_head(inner) {
        match n {
            Node::List(l) if matches!(head(l), Some("do" | "catch" | "catch_all" | "delegate")) => {
                let h = head(l).unwrap_or_default();
                if h != "do" {
                    out.push(' ');
                    out.push_str(h);
                }
                out.push(' ');
                write(after_head(l), out);
                if h == "delegate" {
                    return;
                }
            }
            other => write(std::slice::from_ref(other), out),
        }
    }
    out.push_str(" end ");
}

/// `text` with folded legacy `try` blocks unfolded, or `None` if it has none (or does not
/// tokenize).
pub fn unfold(text: &str) -> Option<String> {
    if !text.contains("(do") {
        return None;
    }
    let toks = tokens(text)?;
    let nodes = parse(&toks, &mut 0, 0)?;
    let mut out = String::with_capacity(text.len());
    write(&nodes, &mut out);
    Some(out)
}
