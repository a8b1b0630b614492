//! Go's formatting, reproduced where etcdctl's output depends on it:
//! `strconv.Quote` (`%q`), `encoding/json` strings and objects, base64 of
//! byte slices, go-humanize's `Bytes`, `time.Duration`'s `String`, and what
//! `fmt.Printf` does to a format string given no arguments (etcdctl prints
//! protobuf bytes with `fmt.Printf(string(b))`, so a `%` in them is a verb).
//!
//! Written from the Go documentation of each function, not from its source.

use std::fmt::Write as _;
use std::time::Duration;

/// Decodes one UTF-8 character at the start of `b`: `Some((char, len))`, or
/// `None` when the first byte does not start a valid sequence (Go then
/// takes one byte as U+FFFD).
fn decode(b: &[u8]) -> Option<(char, usize)> {
    let len = match b[0] {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return None,
    };
    let s = std::str::from_utf8(b.get(..len)?).ok()?;
    s.chars().next().map(|c| (c, len))
}

/// Go's `unicode.IsPrint`, closely enough: letters, marks, numbers,
/// punctuation, symbols and the ASCII space.
fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    // Unassigned, private use, surrogates and format characters.
    !matches!(c as u32,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x200b..=0x200f
        | 0x202a..=0x202e | 0x2060..=0x206f | 0xfeff | 0xfff9..=0xfffb
        | 0xe000..=0xf8ff | 0xf0000..=0x10ffff | 0xfdd0..=0xfdef)
        && (c as u32) & 0xfffe != 0xfffe
}

/// `strconv.Quote` of a Go string holding `b`.
pub fn quote(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() + 2);
    out.push('"');
    let mut i = 0;
    while i < b.len() {
        let Some((c, n)) = decode(&b[i..]) else {
            let _ = write!(out, "\\x{:02x}", b[i]);
            i += 1;
            continue;
        };
        i += n;
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_print(c) => out.push(c),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// A Go string holding `b`, as `fmt` prints it with `%s`: the bytes as they
/// are (lossy only for display on a terminal, never altered).
pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `encoding/json`'s encoding of a string (HTML-safe, as `json.Marshal`).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Standard base64 with padding (`encoding/json` of a `[]byte`).
pub fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = match chunk.len() {
            3 => (chunk[0] as u32) << 16 | (chunk[1] as u32) << 8 | chunk[2] as u32,
            2 => (chunk[0] as u32) << 16 | (chunk[1] as u32) << 8,
            _ => (chunk[0] as u32) << 16,
        };
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A JSON object written field by field, in order (Go marshals struct
/// fields in declaration order).
#[derive(Default)]
pub struct Obj {
    buf: String,
}

impl Obj {
    pub fn new() -> Obj {
        Obj::default()
    }

    /// Adds `"name":raw` (raw is already JSON).
    pub fn raw(&mut self, name: &str, raw: &str) -> &mut Self {
        if !self.buf.is_empty() {
            self.buf.push(',');
        }
        self.buf.push('"');
        self.buf.push_str(name);
        self.buf.push_str("\":");
        self.buf.push_str(raw);
        self
    }

    /// A number, left out when zero and `omit` (Go's `omitempty`).
    pub fn num<T: std::fmt::Display + Default + PartialEq>(
        &mut self,
        name: &str,
        v: T,
        omit: bool,
    ) -> &mut Self {
        if omit && v == T::default() {
            return self;
        }
        self.raw(name, &v.to_string())
    }

    pub fn bool(&mut self, name: &str, v: bool, omit: bool) -> &mut Self {
        if omit && !v {
            return self;
        }
        self.raw(name, if v { "true" } else { "false" })
    }

    pub fn str(&mut self, name: &str, v: &str, omit: bool) -> &mut Self {
        if omit && v.is_empty() {
            return self;
        }
        self.raw(name, &json_string(v))
    }

    /// A `[]byte`: base64, left out when empty and `omit`.
    pub fn bytes(&mut self, name: &str, v: &[u8], omit: bool) -> &mut Self {
        if omit && v.is_empty() {
            return self;
        }
        self.raw(name, &json_string(&base64(v)))
    }

    /// An optional nested object (a Go pointer): left out when `None` and
    /// `omit`, `null` otherwise.
    pub fn obj(&mut self, name: &str, v: Option<String>, omit: bool) -> &mut Self {
        match v {
            Some(v) => self.raw(name, &v),
            None if omit => self,
            None => self.raw(name, "null"),
        }
    }

    /// A slice: left out when empty and `omit`; `null` when empty and
    /// `nil_null` (a nil Go slice), `[]` otherwise.
    pub fn list(
        &mut self,
        name: &str,
        items: Vec<String>,
        omit: bool,
        nil_null: bool,
    ) -> &mut Self {
        if items.is_empty() {
            if omit {
                return self;
            }
            return self.raw(name, if nil_null { "null" } else { "[]" });
        }
        self.raw(name, &format!("[{}]", items.join(",")))
    }

    /// Splices the fields of another object in (a Go embedded struct).
    pub fn embed(&mut self, inner: Obj) -> &mut Self {
        if !inner.buf.is_empty() {
            if !self.buf.is_empty() {
                self.buf.push(',');
            }
            self.buf.push_str(&inner.buf);
        }
        self
    }

    pub fn done(&self) -> String {
        format!("{{{}}}", self.buf)
    }
}

/// go-humanize's `Bytes`: SI units, one decimal below 10.
pub fn humanize_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(UNITS.len() - 1);
    let val = ((n as f64) / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", UNITS[e])
    } else {
        format!("{val:.0} {}", UNITS[e])
    }
}

/// `time.Duration.String`: "1.5s", "2ms", "3µs", "0s", "1m2.5s", "1h0m0s".
pub fn duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", frac(ns, 1_000));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", frac(ns, 1_000_000));
    }
    let secs = ns / 1_000_000_000;
    let sub = ns % 1_000_000_000;
    let s_part = frac(secs % 60 * 1_000_000_000 + sub, 1_000_000_000);
    let mins = secs / 60;
    if mins == 0 {
        return format!("{s_part}s");
    }
    let hours = mins / 60;
    if hours == 0 {
        return format!("{}m{s_part}s", mins % 60);
    }
    format!("{hours}h{}m{s_part}s", mins % 60)
}

/// `v / unit` with the remainder as decimals, trailing zeros dropped.
fn frac(v: u128, unit: u128) -> String {
    let whole = v / unit;
    let rem = v % unit;
    if rem == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{rem:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_as_go() {
        assert_eq!(quote(b"foo"), "\"foo\"");
        assert_eq!(quote(b"a\"b\\c\n\t"), "\"a\\\"b\\\\c\\n\\t\"");
        assert_eq!(quote(b"\xff\x01"), "\"\\xff\\x01\"");
        assert_eq!(quote("é☃".as_bytes()), "\"é☃\"");
        assert_eq!(quote("\u{a0}".as_bytes()), "\"\\u00a0\"");
    }

    #[test]
    fn json_as_go() {
        assert_eq!(
            json_string("a<b>&\"\n\x01"),
            "\"a\\u003cb\\u003e\\u0026\\\"\\n\\u0001\""
        );
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"x"), "eA==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
        let mut inner = Obj::new();
        inner.num("a", 1u64, true).num("b", 0i64, true);
        let mut o = Obj::new();
        o.embed(inner)
            .str("s", "", false)
            .list("l", vec![], false, true);
        assert_eq!(o.done(), "{\"a\":1,\"s\":\"\",\"l\":null}");
    }

    #[test]
    fn humanize_as_go() {
        assert_eq!(humanize_bytes(0), "0 B");
        assert_eq!(humanize_bytes(20480), "20 kB");
        assert_eq!(humanize_bytes(1500), "1.5 kB");
        assert_eq!(humanize_bytes(999), "999 B");
        assert_eq!(humanize_bytes(25 * 1024 * 1024), "26 MB");
    }

    #[test]
    fn durations_as_go() {
        assert_eq!(duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(duration(Duration::from_nanos(1_232_611)), "1.232611ms");
        assert_eq!(duration(Duration::from_secs(62)), "1m2s");
        assert_eq!(duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(duration(Duration::from_micros(5)), "5µs");
    }
}
