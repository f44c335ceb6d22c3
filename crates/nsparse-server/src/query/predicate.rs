//! Predicates on a document's filter values: `term`, `terms`, `range`, `exists`, `ids` and
//! their combinations, tested against the [`DocEntry`] of a snapshot.

use std::collections::HashSet;

use serde_json::Value;

use crate::mapping::FilterValue;
use crate::store::DocEntry;

/// A predicate on a document's filter values.
#[derive(Debug, Clone)]
pub enum Pred {
    /// `term` / `terms`: any value of the field equals one of these.
    Terms(String, Vec<Value>),
    /// `range`.
    Range(String, Vec<(&'static str, Value)>),
    /// `exists`.
    Exists(String),
    /// `ids`.
    Ids(HashSet<String>),
    /// Conjunction (empty = true).
    And(Vec<Pred>),
    /// Negation.
    Not(Box<Pred>),
}

impl Pred {
    /// Whether the document passes.
    pub fn test(&self, id: &str, doc: &DocEntry) -> bool {
        match self {
            Pred::And(all) => all.iter().all(|p| p.test(id, doc)),
            Pred::Not(p) => !p.test(id, doc),
            Pred::Ids(ids) => ids.contains(id),
            Pred::Exists(field) => values(doc, field).next().is_some(),
            Pred::Terms(field, targets) if field == "_id" => targets
                .iter()
                .any(|t| equals(&FilterValue::Str(id.into()), t)),
            Pred::Terms(field, targets) => {
                values(doc, field).any(|v| targets.iter().any(|t| equals(v, t)))
            }
            Pred::Range(field, bounds) => values(doc, field).any(|v| {
                bounds.iter().all(|(op, bound)| match compare(v, bound) {
                    None => false,
                    Some(ord) => match *op {
                        "gt" => ord.is_gt(),
                        "gte" => ord.is_ge(),
                        "lt" => ord.is_lt(),
                        _ => ord.is_le(),
                    },
                })
            }),
        }
    }
}

fn values<'a>(doc: &'a DocEntry, field: &'a str) -> impl Iterator<Item = &'a FilterValue> + 'a {
    let direct = doc.values.iter().any(|(p, _)| &**p == field);
    // Unmapped strings are kept once; `x.keyword` reads them like OpenSearch's dynamic sub-field.
    let path = match field.strip_suffix(".keyword") {
        Some(base) if !direct => base,
        _ => field,
    };
    doc.values
        .iter()
        .filter(move |(p, _)| &**p == path)
        .map(|(_, v)| v)
}

fn equals(v: &FilterValue, target: &Value) -> bool {
    match (v, target) {
        (FilterValue::Str(s), Value::String(t)) => **s == **t,
        (FilterValue::Str(s), Value::Number(n)) => **s == n.to_string(),
        (FilterValue::Str(s), Value::Bool(b)) => **s == b.to_string(),
        (FilterValue::Num(x), Value::Number(n)) => n.as_f64() == Some(*x),
        (FilterValue::Num(x), Value::String(t)) => t.trim().parse::<f64>().ok() == Some(*x),
        (FilterValue::Bool(b), Value::Bool(t)) => b == t,
        (FilterValue::Bool(b), Value::String(t)) => b.to_string() == *t,
        _ => false,
    }
}

fn compare(v: &FilterValue, bound: &Value) -> Option<std::cmp::Ordering> {
    match (v, bound) {
        (FilterValue::Num(x), Value::Number(n)) => x.partial_cmp(&n.as_f64()?),
        (FilterValue::Num(x), Value::String(t)) => x.partial_cmp(&t.trim().parse::<f64>().ok()?),
        (FilterValue::Str(s), Value::String(t)) => Some((**s).cmp(t.as_str())),
        (FilterValue::Str(s), Value::Number(n)) => {
            s.trim().parse::<f64>().ok()?.partial_cmp(&n.as_f64()?)
        }
        _ => None,
    }
}
