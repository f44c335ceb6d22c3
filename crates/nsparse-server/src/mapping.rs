//! Index settings and mappings: parsing `PUT /{index}` bodies, checking documents against the
//! mapping, and extracting the values that filters (`term`, `range`, `exists`) read.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::names::{metadata_field_in_document, validate_field_name, METADATA_FIELDS};

/// What a mapped field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// A sparse vector (`rank_features` or `sparse_vector`): its own nsparse index (see
    /// [`SparseLayout`]).
    Vector,
    /// Full text: feeds BM25, not filterable.
    Text,
    /// An exact string.
    Keyword,
    /// Any numeric type (compared as f64).
    Numeric,
    /// A date: ISO-8601 strings compare as strings, epoch milliseconds as numbers.
    Date,
    /// `true` / `false`.
    Boolean,
    /// An object with its own `properties`.
    Object,
}

impl FieldType {
    fn parse(name: &str) -> Option<FieldType> {
        Some(match name {
            "rank_features" | "sparse_vector" => FieldType::Vector,
            "text" | "match_only_text" => FieldType::Text,
            "keyword" | "constant_keyword" | "wildcard" => FieldType::Keyword,
            "long" | "integer" | "short" | "byte" | "double" | "float" | "half_float"
            | "scaled_float" | "unsigned_long" => FieldType::Numeric,
            "date" | "date_nanos" => FieldType::Date,
            "boolean" => FieldType::Boolean,
            "object" => FieldType::Object,
            _ => return None,
        })
    }
}

/// One mapped leaf field (dotted path), possibly with keyword-like sub-fields (`fields`).
#[derive(Debug, Clone)]
pub struct Field {
    /// Dotted path, e.g. `meta.year`.
    pub path: String,
    /// The mapping type name as given (`long`, `rank_features`, ...), for messages.
    pub type_name: String,
    /// Kind of values.
    pub ty: FieldType,
    /// Multi-fields: `(path.sub, type)`, indexed from the same source value.
    pub subfields: Vec<(String, FieldType)>,
}

/// The persisted description of an index: identity, settings and mappings as the client gave them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexMeta {
    /// Random identity shown as `uuid` (stable across restarts).
    pub uuid: String,
    /// Creation time, epoch milliseconds.
    pub creation_date: u64,
    /// Settings flattened to `index.*` keys.
    pub settings: Map<String, Value>,
    /// `{"properties": {...}}` as given (normalised).
    pub mappings: Value,
    /// Where the sparse fields' vectors live (absent in `meta.json` files of earlier releases).
    #[serde(default)]
    pub sparse_layout: SparseLayout,
    /// Leaf fields derived from `mappings`.
    #[serde(skip)]
    pub fields: Vec<Field>,
}

/// Where the vectors of an index's sparse fields live.
///
/// Releases before per-field sparse indexes kept the one sparse field an index could have in
/// the main nsparse index, whose fixed vocabulary is bert-base-uncased WordPiece. Indexes
/// created since give every sparse field its own nsparse index with an open vocabulary
/// (`sparse/` of the index directory); an index of an earlier release keeps its field in the
/// main index, and sparse fields added to it later get their own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SparseLayout {
    /// Written by an earlier release (`meta.json` without `sparse_layout`): the sparse field
    /// of the mappings, if any, is in the main index. [`IndexMeta::derive_fields`] turns it
    /// into [`SparseLayout::PerField`] naming that field.
    #[default]
    Legacy,
    /// Every sparse field has its own index, except `main`.
    PerField {
        /// The sparse field kept in the main index (an index of an earlier release), if any.
        main: Option<String>,
    },
}

/// Values of one document that filters read, by dotted path (multi-valued fields repeat).
pub type DocValues = Vec<(Box<str>, FilterValue)>;

/// One filterable value.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterValue {
    /// A keyword (or unmapped short string).
    Str(Box<str>),
    /// A number.
    Num(f64),
    /// A boolean.
    Bool(bool),
    /// A text or vector field: only `exists` can test it.
    Present,
}

/// Unmapped strings longer than this are not kept for filters (OpenSearch's dynamic `keyword`
/// sub-field has `ignore_above: 256`).
const IGNORE_ABOVE: usize = 256;

impl IndexMeta {
    /// Parses the body of `PUT /{index}` (settings and mappings; both optional).
    pub fn from_create_body(body: &Value, uuid: String, creation_date: u64) -> ApiResult<Self> {
        let obj = match body {
            Value::Null => Map::new(),
            Value::Object(o) => o.clone(),
            _ => return Err(ApiError::parsing("the index body must be a JSON object")),
        };
        for key in obj.keys() {
            if !matches!(key.as_str(), "settings" | "mappings" | "aliases") {
                return Err(ApiError::parsing(format!(
                    "unknown key [{key}] for create index; use settings and mappings"
                )));
            }
        }
        let settings = flatten_settings(obj.get("settings").unwrap_or(&Value::Null))?;
        let mappings = normalise_mappings(obj.get("mappings").unwrap_or(&Value::Null))?;
        let mut meta = IndexMeta {
            uuid,
            creation_date,
            settings,
            mappings,
            sparse_layout: SparseLayout::PerField { main: None },
            fields: Vec::new(),
        };
        meta.derive_fields()?;
        meta.check_settings()?;
        Ok(meta)
    }

    /// Rebuilds [`IndexMeta::fields`] from the mappings (after loading from disk or merging).
    pub fn derive_fields(&mut self) -> ApiResult<()> {
        let mut fields = Vec::new();
        if let Some(props) = self.mappings.get("properties") {
            collect_fields("", props, &mut fields)?;
        }
        if self.sparse_layout == SparseLayout::Legacy {
            // An earlier release allowed one sparse field, kept in the main index.
            let main = fields
                .iter()
                .find(|f| f.ty == FieldType::Vector)
                .map(|f| f.path.clone());
            self.sparse_layout = SparseLayout::PerField { main };
        }
        for (ty, what) in [
            (
                FieldType::Text,
                "text fields [{a}] and [{b}] would share a BM25 index directory",
            ),
            (
                FieldType::Vector,
                "sparse fields [{a}] and [{b}] would share an index directory",
            ),
        ] {
            let mut dirs = std::collections::HashMap::new();
            for field in fields.iter().filter(|f| f.ty == ty) {
                let dir = crate::names::field_dir_name(&field.path);
                if let Some(other) = dirs.insert(dir, &field.path) {
                    return Err(ApiError::illegal_argument(format!(
                        "{} (a hash collision); rename one of them",
                        what.replace("{a}", other).replace("{b}", &field.path)
                    )));
                }
            }
        }
        self.fields = fields;
        Ok(())
    }

    fn check_settings(&self) -> ApiResult<()> {
        self.refresh_interval()?;
        // OpenSearch's bounds: 1..=1024 shards, any non-negative replica count.
        for (key, min, max) in [
            ("index.number_of_shards", 1, 1024),
            ("index.number_of_replicas", 0, u64::from(u32::MAX)),
        ] {
            if let Some(v) = self.settings.get(key) {
                let Some(n) = setting_u64(v) else {
                    return Err(ApiError::illegal_argument(format!(
                        "Failed to parse value [{}] for setting [{key}]: expected a non-negative integer",
                        display(v)
                    )));
                };
                if n < min {
                    return Err(ApiError::illegal_argument(format!(
                        "Failed to parse value [{n}] for setting [{key}] must be >= {min}"
                    )));
                }
                if n > max {
                    return Err(ApiError::illegal_argument(format!(
                        "Failed to parse value [{n}] for setting [{key}] must be <= {max}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Adds the fields of `PUT /{index}/_mapping`; a field that changes type is refused.
    pub fn merge_mapping(&mut self, body: &Value) -> ApiResult<()> {
        let new = normalise_mappings(body)?;
        let mut merged = self.mappings.clone();
        merge_properties(&mut merged, &new, "")?;
        let mut candidate = self.clone();
        candidate.mappings = merged;
        candidate.derive_fields()?;
        *self = candidate;
        Ok(())
    }

    /// Applies `PUT /{index}/_settings` (`{"index": {...}}` or flat keys); values are checked.
    /// `null` removes a setting.
    pub fn merge_settings(&mut self, body: &Value) -> ApiResult<()> {
        let body = body.get("settings").unwrap_or(body);
        let updates = flatten_settings(body)?;
        let mut candidate = self.clone();
        for (key, value) in updates {
            if matches!(
                key.as_str(),
                "index.number_of_shards" | "index.sparse" | "index.uuid" | "index.creation_date"
            ) {
                return Err(ApiError::illegal_argument(format!(
                    "final {key} setting [{key}], not updateable"
                )));
            }
            if value.is_null() {
                candidate.settings.remove(&key);
            } else {
                candidate.settings.insert(key, value);
            }
        }
        candidate.check_settings()?;
        *self = candidate;
        Ok(())
    }

    /// The mapped field at `path`, if any (sub-fields resolve to their parent's entry).
    pub fn field(&self, path: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.path == path)
    }

    /// The type of `path` including multi-fields.
    pub fn field_type(&self, path: &str) -> Option<FieldType> {
        self.fields.iter().find_map(|f| {
            if f.path == path {
                Some(f.ty)
            } else {
                f.subfields
                    .iter()
                    .find(|(p, _)| p == path)
                    .map(|(_, ty)| *ty)
            }
        })
    }

    /// Paths of the mapped `text` fields (each has its own BM25 index).
    pub fn text_fields(&self) -> impl Iterator<Item = &str> {
        self.fields
            .iter()
            .filter(|f| f.ty == FieldType::Text)
            .map(|f| f.path.as_str())
    }

    /// The mapped sparse fields (`rank_features`, `sparse_vector`).
    pub fn vector_fields(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|f| f.ty == FieldType::Vector)
    }

    /// The sparse field whose vectors are in the main index (an index of an earlier release).
    pub fn main_vector_field(&self) -> Option<&str> {
        match &self.sparse_layout {
            SparseLayout::PerField { main } => main.as_deref(),
            SparseLayout::Legacy => None,
        }
    }

    /// Whether `path` is a sparse field with its own index (not the main index's).
    pub fn has_own_sparse_index(&self, path: &str) -> bool {
        self.field_type(path) == Some(FieldType::Vector) && self.main_vector_field() != Some(path)
    }

    /// Paths of the sparse fields that have their own index.
    pub fn sparse_index_fields(&self) -> impl Iterator<Item = &str> {
        self.vector_fields()
            .map(|f| f.path.as_str())
            .filter(|p| self.main_vector_field() != Some(*p))
    }

    /// `index.default_pipeline` (`_none` means none).
    pub fn default_pipeline(&self) -> Option<String> {
        self.setting_str("index.default_pipeline")
            .filter(|p| p != "_none")
    }

    /// `index.search.default_pipeline` (`_none` means none).
    pub fn default_search_pipeline(&self) -> Option<String> {
        self.setting_str("index.search.default_pipeline")
            .filter(|p| p != "_none")
    }

    /// `index.refresh_interval`: `None` when refresh is disabled (`-1`); default 1 s.
    pub fn refresh_interval(&self) -> ApiResult<Option<Duration>> {
        match self.settings.get("index.refresh_interval") {
            None | Some(Value::Null) => Ok(Some(Duration::from_secs(1))),
            Some(v) => parse_time(&display(v)).map_err(|problem| {
                ApiError::illegal_argument(format!(
                    "failed to parse setting [index.refresh_interval] with value [{}]: {problem}",
                    display(v)
                ))
            }),
        }
    }

    fn setting_str(&self, key: &str) -> Option<String> {
        self.settings.get(key).map(display)
    }

    /// Settings as OpenSearch returns them: nested under `index`, values as strings.
    pub fn settings_view(&self, name: &str) -> Value {
        let mut root = Map::new();
        for (key, value) in &self.settings {
            insert_dotted(&mut root, key, Value::String(display(value)));
        }
        let index = root
            .entry("index")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(index) = index.as_object_mut() {
            index
                .entry("number_of_shards")
                .or_insert_with(|| "1".into());
            index
                .entry("number_of_replicas")
                .or_insert_with(|| "0".into());
            index.insert("uuid".into(), self.uuid.clone().into());
            index.insert("provided_name".into(), name.into());
            index.insert(
                "creation_date".into(),
                self.creation_date.to_string().into(),
            );
            index.insert(
                "version".into(),
                serde_json::json!({"created": "136407827"}),
            );
        }
        Value::Object(root)
    }

    /// Checks a document against the mapping and extracts its filter values and BM25 text.
    ///
    /// The BM25 text is the concatenation of every `text`-mapped field and every unmapped string
    /// (OpenSearch maps unmapped strings as `text`), in document order.
    pub fn analyze(&self, id: &str, source: &Value) -> ApiResult<Analyzed> {
        let Value::Object(obj) = source else {
            return Err(ApiError::mapper_parsing(format!(
                "failed to parse document with id '{id}': the source must be a JSON object"
            )));
        };
        let mut out = Analyzed::default();
        self.walk(id, "", obj, &mut out)?;
        Ok(out)
    }

    /// [`analyze`](Self::analyze) of a stored source (accepted when it was written): a source
    /// that is not JSON or no longer passes the mapping yields no values and no text.
    pub fn analyze_stored(&self, id: &str, source: &[u8]) -> Analyzed {
        let source: Value = serde_json::from_slice(source).unwrap_or(Value::Null);
        self.analyze(id, &source).unwrap_or_default()
    }

    fn walk(
        &self,
        id: &str,
        prefix: &str,
        obj: &Map<String, Value>,
        out: &mut Analyzed,
    ) -> ApiResult<()> {
        for (key, value) in obj {
            if prefix.is_empty() && METADATA_FIELDS.contains(&key.as_str()) {
                return Err(metadata_field_in_document(key));
            }
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            validate_field_name(&path).map_err(|e| in_document(e, id))?;
            let field = self.field(&path);
            match field.map(|f| f.ty) {
                Some(FieldType::Vector) => {
                    if !value.is_null() {
                        out.values.push((path.into(), FilterValue::Present));
                    }
                }
                Some(FieldType::Object) | None if value.is_object() => {
                    let inner = value.as_object().expect("checked is_object");
                    self.walk(id, &path, inner, out)?;
                }
                _ => {
                    let items: Vec<&Value> = match value {
                        Value::Array(items) => items.iter().collect(),
                        other => vec![other],
                    };
                    for item in items {
                        self.leaf(id, &path, field, item, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn leaf(
        &self,
        id: &str,
        path: &str,
        field: Option<&Field>,
        value: &Value,
        out: &mut Analyzed,
    ) -> ApiResult<()> {
        if value.is_null() {
            return Ok(());
        }
        let bad = |ty: &str| {
            ApiError::mapper_parsing(format!(
                "failed to parse field [{path}] of type [{ty}] in document with id '{id}'. Preview of field's value: '{}'",
                preview(value)
            ))
        };
        let Some(field) = field else {
            // Dynamic mapping: strings are text (+ a short keyword view), numbers and booleans keep
            // their value; objects inside arrays are kept in the source only.
            match value {
                Value::String(s) => {
                    out.push_text(s);
                    if s.len() <= IGNORE_ABOVE {
                        out.values
                            .push((path.into(), FilterValue::Str(s.as_str().into())));
                    }
                }
                Value::Number(n) => {
                    if let Some(x) = n.as_f64() {
                        out.values.push((path.into(), FilterValue::Num(x)));
                    }
                }
                Value::Bool(b) => out.values.push((path.into(), FilterValue::Bool(*b))),
                _ => {}
            }
            return Ok(());
        };
        let ty = field.type_name.as_str();
        let string_value = match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        match field.ty {
            FieldType::Text => {
                let s = string_value.clone().ok_or_else(|| bad(ty))?;
                let field_text = out.field_texts.entry(path.to_string()).or_default();
                if !field_text.is_empty() {
                    field_text.push('\n');
                }
                field_text.push_str(&s);
                out.values.push((path.into(), FilterValue::Present));
            }
            FieldType::Keyword => {
                let s = string_value.clone().ok_or_else(|| bad(ty))?;
                out.values.push((path.into(), FilterValue::Str(s.into())));
            }
            FieldType::Numeric => {
                let x = match value {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                }
                .filter(|x| x.is_finite())
                .ok_or_else(|| bad(ty))?;
                if let Some((min, max, article)) = integer_range(ty) {
                    if x < min || x > max {
                        return Err(ApiError::mapper_parsing(format!(
                            "failed to parse field [{path}] of type [{ty}] in document with id '{id}'. Preview of field's value: '{}': Value [{}] is out of range for {article} {ty}",
                            preview(value),
                            display(value)
                        )));
                    }
                }
                out.values.push((path.into(), FilterValue::Num(x)));
            }
            FieldType::Date => match value {
                Value::Number(n) => {
                    let x = n.as_f64().ok_or_else(|| bad(ty))?;
                    out.values.push((path.into(), FilterValue::Num(x)));
                }
                Value::String(s) => out.values.push((path.into(), FilterValue::Str(s.as_str().into()))),
                _ => return Err(bad(ty)),
            },
            FieldType::Boolean => {
                let b = match value {
                    Value::Bool(b) => *b,
                    Value::String(s) if s == "true" => true,
                    Value::String(s) if s == "false" || s.is_empty() => false,
                    _ => return Err(bad(ty)),
                };
                out.values.push((path.into(), FilterValue::Bool(b)));
            }
            FieldType::Object => return Err(ApiError::mapper_parsing(format!(
                "object mapping for [{path}] tried to parse field [{path}] as object, but found a concrete value (document id '{id}')"
            ))),
            FieldType::Vector => unreachable!("vector fields are handled by walk"),
        }
        for (sub, sub_ty) in &field.subfields {
            if let (FieldType::Keyword, Some(s)) = (sub_ty, &string_value) {
                if s.len() <= IGNORE_ABOVE {
                    out.values
                        .push((sub.as_str().into(), FilterValue::Str(s.as_str().into())));
                }
            }
        }
        Ok(())
    }
}

/// What [`IndexMeta::analyze`] extracts from a document.
#[derive(Debug, Default)]
pub struct Analyzed {
    /// Filterable values.
    pub values: DocValues,
    /// Unmapped strings (OpenSearch maps them as text); with the text fields, they make the
    /// index-wide BM25 text.
    pub unmapped_text: String,
    /// The text of each mapped `text` field (values of a multi-valued field joined), for the
    /// per-field BM25 of `match`.
    pub field_texts: std::collections::BTreeMap<String, String>,
}

impl Analyzed {
    fn push_text(&mut self, s: &str) {
        if !self.unmapped_text.is_empty() {
            self.unmapped_text.push('\n');
        }
        self.unmapped_text.push_str(s);
    }
}

fn collect_fields(prefix: &str, props: &Value, out: &mut Vec<Field>) -> ApiResult<()> {
    let Value::Object(props) = props else {
        return Err(ApiError::mapper_parsing(format!(
            "[properties] of [{}] must be an object",
            if prefix.is_empty() { "_doc" } else { prefix }
        )));
    };
    for (name, spec) in props {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        validate_field_name(&path)?;
        let Value::Object(spec) = spec else {
            return Err(ApiError::mapper_parsing(format!(
                "Expected map for property [fields] on field [{path}] but got a {}",
                kind_name(spec)
            )));
        };
        let type_name = match spec.get("type") {
            None if spec.contains_key("properties") => "object".to_string(),
            None => "object".to_string(),
            Some(Value::String(t)) => t.clone(),
            Some(other) => {
                return Err(ApiError::mapper_parsing(format!(
                    "type of field [{path}] must be a string, got {}",
                    kind_name(other)
                )))
            }
        };
        let ty = FieldType::parse(&type_name).ok_or_else(|| {
            ApiError::mapper_parsing(format!(
                "No handler for type [{type_name}] declared on field [{name}]"
            ))
        })?;
        if ty == FieldType::Object {
            if let Some(inner) = spec.get("properties") {
                collect_fields(&path, inner, out)?;
            }
        }
        let mut subfields = Vec::new();
        if let Some(Value::Object(fields)) = spec.get("fields") {
            for (sub, sub_spec) in fields {
                let sub_type = sub_spec
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("object");
                let sub_ty = FieldType::parse(sub_type).ok_or_else(|| {
                    ApiError::mapper_parsing(format!(
                        "No handler for type [{sub_type}] declared on field [{sub}]"
                    ))
                })?;
                let sub_path = format!("{path}.{sub}");
                validate_field_name(&sub_path)?;
                subfields.push((sub_path, sub_ty));
            }
        }
        out.push(Field {
            path,
            type_name,
            ty,
            subfields,
        });
    }
    Ok(())
}

fn normalise_mappings(mappings: &Value) -> ApiResult<Value> {
    match mappings {
        Value::Null => Ok(serde_json::json!({"properties": {}})),
        Value::Object(o) => {
            // Pre-7 typed mappings (`{"_doc": {"properties": ...}}`) are unwrapped.
            let o = match (o.len(), o.get("_doc")) {
                (1, Some(Value::Object(inner))) => inner.clone(),
                _ => o.clone(),
            };
            let mut out = o.clone();
            out.entry("properties")
                .or_insert_with(|| Value::Object(Map::new()));
            Ok(Value::Object(out))
        }
        other => Err(ApiError::mapper_parsing(format!(
            "mappings must be an object, got {}",
            kind_name(other)
        ))),
    }
}

fn merge_properties(into: &mut Value, new: &Value, prefix: &str) -> ApiResult<()> {
    let (Some(into_props), Some(new_props)) = (
        into.get_mut("properties").and_then(Value::as_object_mut),
        new.get("properties").and_then(Value::as_object),
    ) else {
        return Ok(());
    };
    for (name, spec) in new_props {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match into_props.get_mut(name) {
            None => {
                into_props.insert(name.clone(), spec.clone());
            }
            Some(existing) => {
                let old_type = existing
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("object");
                let new_type = spec.get("type").and_then(Value::as_str).unwrap_or("object");
                if old_type != new_type {
                    return Err(ApiError::illegal_argument(format!(
                        "mapper [{path}] cannot be changed from type [{old_type}] to [{new_type}]"
                    )));
                }
                if spec.get("properties").is_some() {
                    merge_properties(existing, spec, &path)?;
                }
            }
        }
    }
    Ok(())
}

/// Flattens `{"index": {"a": {"b": 1}}}`, `{"index.a.b": 1}` and `{"a.b": 1}` to `index.a.b`.
fn flatten_settings(settings: &Value) -> ApiResult<Map<String, Value>> {
    let mut out = Map::new();
    match settings {
        Value::Null => {}
        Value::Object(o) => flatten_into("", o, &mut out),
        other => {
            return Err(ApiError::illegal_argument(format!(
                "settings must be an object, got {}",
                kind_name(other)
            )))
        }
    }
    Ok(out
        .into_iter()
        .map(|(k, v)| {
            if k.starts_with("index.") {
                (k, v)
            } else {
                (format!("index.{k}"), v)
            }
        })
        .collect())
}

fn flatten_into(prefix: &str, obj: &Map<String, Value>, out: &mut Map<String, Value>) {
    for (k, v) in obj {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Object(inner) => flatten_into(&key, inner, out),
            other => {
                out.insert(key, other.clone());
            }
        }
    }
}

fn insert_dotted(root: &mut Map<String, Value>, key: &str, value: Value) {
    let mut parts = key.split('.').peekable();
    let mut node = root;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            node.insert(part.to_string(), value);
            return;
        }
        let child = node
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !child.is_object() {
            *child = Value::Object(Map::new());
        }
        node = child.as_object_mut().expect("made an object above");
    }
}

/// A setting value as text (`"1s"`, `true` → `"true"`).
pub fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn setting_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Parses an OpenSearch time value (`1s`, `500ms`, `2m`, `-1` = disabled).
pub fn parse_time(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text == "-1" {
        return Ok(None);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a time value like 1s, 500ms or -1"))?;
    let secs = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        "" if number == 0.0 => 0.0,
        _ => return Err(format!("unknown time unit in {text:?}; use ms, s, m or h")),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("{text:?} must be positive (or -1 to disable)"));
    }
    Ok(Some(Duration::from_secs_f64(secs)))
}

/// `(min, max, article)` of the integer mapping types (OpenSearch refuses values outside).
fn integer_range(type_name: &str) -> Option<(f64, f64, &'static str)> {
    Some(match type_name {
        "byte" => (i8::MIN as f64, i8::MAX as f64, "a"),
        "short" => (i16::MIN as f64, i16::MAX as f64, "a"),
        "integer" => (i32::MIN as f64, i32::MAX as f64, "an"),
        "long" => (i64::MIN as f64, i64::MAX as f64, "a"),
        "unsigned_long" => (0.0, u64::MAX as f64, "an"),
        _ => return None,
    })
}

/// Names the document in a field-name error found while parsing it.
fn in_document(e: ApiError, id: &str) -> ApiError {
    ApiError::mapper_parsing(format!(
        "failed to parse document with id '{id}': {}",
        e.reason
    ))
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn preview(v: &Value) -> String {
    let text = display(v);
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_type_is_mapper_parsing() {
        let err = IndexMeta::from_create_body(
            &json!({"mappings": {"properties": {"x": {"type": "banana"}}}}),
            "u".into(),
            0,
        )
        .unwrap_err();
        assert_eq!(err.kind, "mapper_parsing_exception");
        assert!(err.reason.contains("banana"));
    }

    #[test]
    fn settings_flatten_every_spelling() {
        let meta = IndexMeta::from_create_body(
            &json!({"settings": {"index": {"refresh_interval": "-1"}, "default_pipeline": "p", "index.sparse": true}}),
            "u".into(),
            0,
        )
        .unwrap();
        assert_eq!(meta.refresh_interval().unwrap(), None);
        assert_eq!(meta.default_pipeline().as_deref(), Some("p"));
        assert_eq!(meta.settings_view("i")["index"]["sparse"], "true");
    }

    #[test]
    fn analyze_checks_types_and_extracts_values() {
        let meta = IndexMeta::from_create_body(
            &json!({"mappings": {"properties": {
                "v": {"type": "rank_features"}, "t": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
                "n": {"type": "long"}, "m": {"properties": {"k": {"type": "keyword"}}}}}}),
            "u".into(),
            0,
        )
        .unwrap();
        let a = meta
            .analyze("1", &json!({"v": {"a": 1}, "t": "hello", "n": "7", "m": {"k": ["x", "y"]}, "u": "free"}))
            .unwrap();
        assert_eq!(a.unmapped_text, "free");
        assert_eq!(a.field_texts["t"], "hello");
        assert!(a.values.contains(&("n".into(), FilterValue::Num(7.0))));
        assert!(a
            .values
            .contains(&("m.k".into(), FilterValue::Str("y".into()))));
        assert!(a
            .values
            .contains(&("t.raw".into(), FilterValue::Str("hello".into()))));
        assert!(a.values.contains(&("v".into(), FilterValue::Present)));
        let err = meta.analyze("2", &json!({"n": "seven"})).unwrap_err();
        assert_eq!(err.kind, "mapper_parsing_exception");
        assert!(err.reason.contains("[n] of type [long]"));
    }
}
