//! A compare-and-set register, initially nil (Jepsen's cas-register).
//!
//! Functions: `read` (result: the value or `null`), `write v`, `cas [old, new]`
//! (takes effect only when the register holds `old`; an `ok` cas succeeded, a
//! failed one is a `fail` event and never reaches the model). Values are any
//! JSON, compared exactly; `null` is nil. Operations with a `key` are
//! independent registers, so the history is split by key when all have one.

use serde_json::Value;

use super::intern::Interner;
use super::{Compiled, Model};
use crate::history::Operation;
use crate::Result;

/// The register model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Register;

/// A compiled register operation; values are interned ids, 0 is nil.
#[derive(Debug, Clone, Copy)]
pub enum RegisterOp {
    /// A read that returned this value.
    Read(u32),
    Write(u32),
    /// `known`: the cas returned ok; otherwise its outcome is unknown.
    Cas {
        old: u32,
        new: u32,
        known: bool,
    },
}

impl Model for Register {
    type Ctx = Interner<String>;
    type Op = RegisterOp;
    type State = u32;

    fn name(&self) -> &'static str {
        "register"
    }

    fn partition_key<'a>(&self, op: &'a Operation) -> Option<&'a str> {
        op.key.as_deref()
    }

    fn compile(&self, ops: &[&Operation]) -> Result<Compiled<Self::Ctx, RegisterOp>> {
        let mut values = Interner::with_first(Value::Null.to_string());
        let mut id = |v: &Value| values.intern(v.to_string());
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            out.push(match op.f.as_str() {
                "read" => op.output.as_ref().map(|v| RegisterOp::Read(id(v))),
                "write" => Some(RegisterOp::Write(id(&op.input))),
                "cas" => match &op.input {
                    Value::Array(pair) if pair.len() == 2 => Some(RegisterOp::Cas {
                        old: id(&pair[0]),
                        new: id(&pair[1]),
                        known: op.output.is_some(),
                    }),
                    _ => return Err(op.error("cas needs [old, new]")),
                },
                f => return Err(op.error(format!("register has no function {f:?}"))),
            });
        }
        Ok(Compiled {
            ctx: values,
            ops: out,
        })
    }

    fn init(&self, _: &Self::Ctx) -> u32 {
        0
    }

    fn step(&self, _: &mut Self::Ctx, &state: &u32, op: &RegisterOp) -> Option<u32> {
        match *op {
            RegisterOp::Read(v) => (v == state).then_some(state),
            RegisterOp::Write(v) => Some(v),
            RegisterOp::Cas { old, new, known } => {
                if state == old {
                    Some(new)
                } else if known {
                    None
                } else {
                    Some(state)
                }
            }
        }
    }

    fn describe_state(&self, ctx: &Self::Ctx, state: &u32) -> String {
        ctx.get(*state).clone()
    }

    fn describe_op(&self, op: &Operation) -> String {
        let key = op
            .key
            .as_deref()
            .map(|k| format!("[{k:?}] "))
            .unwrap_or_default();
        let out = match &op.output {
            None => "?".to_string(),
            Some(v) => v.to_string(),
        };
        match (op.f.as_str(), &op.input) {
            ("read", _) => format!("{key}read -> {out}"),
            ("cas", Value::Array(p)) if p.len() == 2 => {
                let res = if op.output.is_some() { "ok" } else { "?" };
                format!("{key}cas {} -> {} : {res}", p[0], p[1])
            }
            (f, v) => {
                let res = if op.output.is_some() { "ok" } else { "?" };
                format!("{key}{f} {v} : {res}")
            }
        }
    }
}
