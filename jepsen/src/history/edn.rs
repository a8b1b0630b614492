//! A small reader for the subset of EDN found in Jepsen histories.
//!
//! Reads `nil`, booleans, integers, strings, keywords, vectors, lists and maps
//! into a [`serde_json::Value`]: keywords lose their colon (`:invoke` becomes
//! `"invoke"`), vectors and lists become arrays, map keys become strings.
//! Commas are whitespace, as in EDN. It leaves out sets, tagged literals, chars,
//! ratios and metadata: Jepsen's register and kv histories do not use them.

use serde_json::{Map, Value};

/// Parses one complete EDN value from `s`; trailing text is an error.
pub fn parse(s: &str) -> Result<Value, String> {
    let mut r = Reader {
        s: s.as_bytes(),
        pos: 0,
    };
    let v = r.value()?;
    r.skip_ws();
    if r.pos != r.s.len() {
        return Err(format!("unexpected text at column {}", r.pos + 1));
    }
    Ok(v)
}

struct Reader<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn skip_ws(&mut self) {
        while self
            .s
            .get(self.pos)
            .is_some_and(|c| c.is_ascii_whitespace() || *c == b',')
        {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        self.skip_ws();
        let Some(&c) = self.s.get(self.pos) else {
            return Err("unexpected end of value".into());
        };
        match c {
            b'"' => self.string().map(Value::String),
            b'[' | b'(' => {
                self.pos += 1;
                let close = if c == b'[' { b']' } else { b')' };
                let mut items = Vec::new();
                while !self.eat(close)? {
                    items.push(self.value()?);
                }
                Ok(Value::Array(items))
            }
            b'{' => {
                self.pos += 1;
                let mut map = Map::new();
                while !self.eat(b'}')? {
                    let key = match self.value()? {
                        Value::String(k) => k,
                        other => other.to_string(),
                    };
                    let value = self.value()?;
                    map.insert(key, value);
                }
                Ok(Value::Object(map))
            }
            _ => self.atom(),
        }
    }

    /// Skips whitespace; consumes `close` if it is next. Errors at end of input.
    fn eat(&mut self, close: u8) -> Result<bool, String> {
        self.skip_ws();
        match self.s.get(self.pos) {
            None => Err(format!("missing '{}'", close as char)),
            Some(&c) if c == close => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.pos += 1; // opening quote
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.pos) else {
                return Err("unterminated string".into());
            };
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.pos) else {
                        return Err("unterminated string".into());
                    };
                    self.pos += 1;
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        other => other,
                    });
                }
                _ => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| "string is not UTF-8".into())
    }

    fn atom(&mut self) -> Result<Value, String> {
        let start = self.pos;
        while self
            .s
            .get(self.pos)
            .is_some_and(|c| !c.is_ascii_whitespace() && !b",()[]{}\"".contains(c))
        {
            self.pos += 1;
        }
        let tok = std::str::from_utf8(&self.s[start..self.pos]).map_err(|e| e.to_string())?;
        Ok(match tok {
            "" => return Err(format!("unexpected '{}'", self.s[start] as char)),
            "nil" => Value::Null,
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => {
                if let Some(kw) = tok.strip_prefix(':') {
                    Value::String(kw.to_string())
                } else if let Ok(i) = tok.parse::<i64>() {
                    Value::from(i)
                } else {
                    return Err(format!("unsupported token {tok:?}"));
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_jepsen_values() {
        assert_eq!(parse("nil").unwrap(), Value::Null);
        assert_eq!(parse(" [3 0] ").unwrap(), json!([3, 0]));
        assert_eq!(parse(":timed-out").unwrap(), json!("timed-out"));
        assert_eq!(
            parse(r#"{:process 9, :type :invoke, :f :append, :key "0", :value "x \"9\" 0 y"}"#)
                .unwrap(),
            json!({"process": 9, "type": "invoke", "f": "append", "key": "0", "value": "x \"9\" 0 y"})
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse("[1 2").is_err());
        assert!(parse("\"abc").is_err());
        assert!(parse("1 2").is_err());
        assert!(parse("foo").is_err());
    }
}
