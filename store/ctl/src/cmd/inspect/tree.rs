//! `inspect tree [PREFIX]`: the key space (or the keys under PREFIX, shown
//! without it) as a tree split on `/`, each branch with its number of keys and the bytes of
//! its keys and values; a leaf's value is shown, pretty-printed when it is
//! JSON.

use std::collections::BTreeMap;

use clap::Args;
use keel_client::RangeRequest;
use serde_json::json;

use super::{bold, Style};
use crate::error::Result;
use crate::global::Ctx;
use crate::outln;
use crate::output::go::humanize_bytes;

/// inspect tree [PREFIX]
#[derive(Debug, Clone, Args)]
pub struct TreeArgs {
    /// Don't show values, only the branches and keys
    #[arg(long)]
    pub no_values: bool,
    /// PREFIX (default: every key)
    pub prefix: Option<String>,
}

/// A branch of the key tree.
#[derive(Debug, Default)]
pub struct Node {
    pub keys: u64,
    pub bytes: u64,
    /// The value when a key ends here.
    pub value: Option<Vec<u8>>,
    pub children: BTreeMap<String, Node>,
}

impl Node {
    /// Adds `key` = `value`, splitting the key on `/` (a leading `/` gives
    /// an empty first segment, shown as `/`).
    #[cfg(test)]
    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        self.insert_sized(key, value, (key.len() + value.len()) as u64);
    }

    /// Adds `key` = `value` counting `size` bytes (the whole key's, when
    /// `key` is shown without its prefix).
    pub fn insert_sized(&mut self, key: &[u8], value: &[u8], size: u64) {
        let text = String::from_utf8_lossy(key).into_owned();
        let mut node = self;
        node.keys += 1;
        node.bytes += size;
        let parts: Vec<&str> = text.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let name = if last {
                part.to_string()
            } else {
                format!("{part}/")
            };
            if last && part.is_empty() && i > 0 {
                // "a/" : the key is the branch itself.
                node.value = Some(value.to_vec());
                return;
            }
            node = node.children.entry(name).or_default();
            node.keys += 1;
            node.bytes += size;
        }
        node.value = Some(value.to_vec());
    }

    fn to_json(&self) -> serde_json::Value {
        let children: serde_json::Map<String, serde_json::Value> = self
            .children
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect();
        let mut o = json!({"keys": self.keys, "bytes": self.bytes});
        if let Some(v) = &self.value {
            o["value"] =
                serde_json::from_slice(v).unwrap_or_else(|_| json!(String::from_utf8_lossy(v)));
        }
        if !children.is_empty() {
            o["children"] = serde_json::Value::Object(children);
        }
        o
    }
}

/// Renders the tree below `node` with box-drawing branches.
pub fn render(node: &Node, values: bool) -> String {
    let mut out = String::new();
    walk(node, "", values, &mut out);
    out
}

fn walk(node: &Node, indent: &str, values: bool, out: &mut String) {
    let n = node.children.len();
    for (i, (name, child)) in node.children.iter().enumerate() {
        let last = i + 1 == n;
        let (branch, more) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        let stats = if child.children.is_empty() {
            format!("({})", humanize_bytes(child.bytes))
        } else {
            format!(
                "({} key{}, {})",
                child.keys,
                if child.keys == 1 { "" } else { "s" },
                humanize_bytes(child.bytes)
            )
        };
        let shown = if child.children.is_empty() {
            name.clone()
        } else {
            bold(name)
        };
        out.push_str(&format!("{indent}{branch}{shown} {stats}"));
        let inner = format!("{indent}{more}");
        match (&child.value, values) {
            (Some(v), true) => match serde_json::from_slice::<serde_json::Value>(v) {
                Ok(j) if j.is_object() || j.is_array() => {
                    out.push('\n');
                    let pretty = serde_json::to_string_pretty(&j).unwrap_or_default();
                    for l in pretty.lines() {
                        out.push_str(&format!("{inner}  {l}\n"));
                    }
                }
                _ => out.push_str(&format!(" = {}\n", String::from_utf8_lossy(v))),
            },
            _ => out.push('\n'),
        }
        walk(child, &inner, values, out);
    }
}

pub async fn run(ctx: &Ctx, a: TreeArgs) -> Result<()> {
    let style = super::style(ctx)?;
    let c = ctx.client()?;
    let prefix = a.prefix.clone().unwrap_or_default().into_bytes();
    let (key, range_end) = if prefix.is_empty() {
        (vec![0], vec![0])
    } else {
        (prefix.clone(), keel_client::prefix_end(&prefix))
    };
    let resp = ctx
        .timed(c.range(RangeRequest {
            key,
            range_end,
            ..Default::default()
        }))
        .await?;
    // The tree below the prefix: keys are shown without it.
    let mut root = Node::default();
    for kv in &resp.kvs {
        let rest = kv.key.strip_prefix(prefix.as_slice()).unwrap_or(&kv.key);
        root.insert_sized(rest, &kv.value, (kv.key.len() + kv.value.len()) as u64);
    }
    let rev = resp.header.map(|h| h.revision).unwrap_or(0);
    match style {
        Style::Json => {
            let mut j = root.to_json();
            j["prefix"] = json!(a.prefix.unwrap_or_default());
            j["revision"] = json!(rev);
            outln!("{j}");
        }
        Style::Table => {
            outln!(
                "{} ({} key{}, {}, revision {rev})",
                bold(a.prefix.as_deref().unwrap_or("(all keys)")),
                root.keys,
                if root.keys == 1 { "" } else { "s" },
                humanize_bytes(root.bytes)
            );
            crate::output::out(render(&root, !a.no_values));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_counts_and_renders() {
        let mut t = Node::default();
        t.insert(b"/registry/pods/default/a", br#"{"kind":"Pod"}"#);
        t.insert(b"/registry/pods/default/b", b"x");
        t.insert(b"/registry/nodes/n1", b"yy");
        t.insert(b"top", b"v");
        assert_eq!(t.keys, 4);
        let reg = &t.children["/"].children["registry/"];
        assert_eq!(reg.keys, 3);
        assert_eq!(reg.children["pods/"].keys, 2);
        assert_eq!(reg.children["pods/"].bytes, (24 + 14 + 24 + 1) as u64);
        let s = render(&t, true);
        assert!(s.contains("└── top (4 B) = v\n"), "{s}");
        assert!(s.contains("├── a (38 B)\n"), "{s}");
        assert!(s.contains("  \"kind\": \"Pod\"\n"), "{s}");
        assert!(s.contains("└── b (25 B) = x\n"), "{s}");
    }
}
