use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

pub const MEDIA_TABLE: &str = "media";
pub const FAILURES_TABLE: &str = "failures";
pub const RUNS_TABLE: &str = "runs";
/// Stored in each table's schema metadata (`medley.schema_version`); bumped on any change.
pub const SCHEMA_VERSION: &str = "1";

/// Widths of the vector columns; they come from the models in use, and a table written with
/// other widths is refused rather than mixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorDims {
    pub visual: usize,
    pub audio: usize,
    pub bridge: usize,
    pub music: usize,
    pub text: usize,
}

/// The vector columns of `media` (and `segments`), in schema order.
pub const VECTOR_COLUMNS: [&str; 5] = ["visual", "audio", "music", "text", "bridge"];

/// The vector columns' fields, in schema order.
pub(crate) fn vector_fields(d: VectorDims) -> [Field; 5] {
    let widths = [d.visual, d.audio, d.music, d.text, d.bridge];
    std::array::from_fn(|i| vector(VECTOR_COLUMNS[i], widths[i]))
}

pub(crate) fn vector(name: &str, dim: usize) -> Field {
    Field::new(name, DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), dim as i32), true)
}

pub(crate) fn label_struct() -> Fields {
    Fields::from(vec![Field::new("label", DataType::Utf8, false), Field::new("score", DataType::Float32, false)])
}

pub(crate) fn label_list(name: &str) -> Field {
    Field::new(name, DataType::List(Arc::new(Field::new("item", DataType::Struct(label_struct()), true))), false)
}

pub(crate) fn utc_micros(name: &str) -> Field {
    Field::new(name, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false)
}

pub(crate) fn with_version(fields: Vec<Field>) -> SchemaRef {
    let meta = [("medley.schema_version".to_string(), SCHEMA_VERSION.to_string())].into_iter().collect();
    Arc::new(Schema::new_with_metadata(fields, meta))
}

pub(crate) fn media_schema(d: VectorDims) -> SchemaRef {
    let mut fields = vec![
        Field::new("content_hash", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("file_name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("container", DataType::Utf8, false),
        Field::new("size_bytes", DataType::UInt64, false),
        Field::new("duration_s", DataType::Float64, true),
        Field::new("has_video", DataType::Boolean, false),
        Field::new("has_audio", DataType::Boolean, false),
        Field::new("video_codec", DataType::Utf8, true),
        Field::new("width", DataType::UInt32, true),
        Field::new("height", DataType::UInt32, true),
        Field::new("fps", DataType::Float64, true),
        Field::new("rotation", DataType::UInt32, true),
        Field::new("audio_codec", DataType::Utf8, true),
        Field::new("sample_rate", DataType::UInt32, true),
        Field::new("channels", DataType::UInt32, true),
        Field::new("frames_sampled", DataType::UInt32, false),
        Field::new("audio_windows", DataType::UInt32, false),
    ];
    fields.extend(vector_fields(d));
    fields.extend([
        label_list("labels"),
        Field::new("label_text", DataType::Utf8, false),
        label_list("music_tags"),
        Field::new("transcript", DataType::Utf8, true),
        Field::new("language", DataType::Utf8, true),
        Field::new("description", DataType::Utf8, false),
        Field::new("models", DataType::Utf8, false),
        utc_micros("indexed_at"),
    ]);
    with_version(fields)
}

pub(crate) fn failures_schema() -> SchemaRef {
    with_version(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("content_hash", DataType::Utf8, true),
        Field::new("stage", DataType::Utf8, false),
        Field::new("error_kind", DataType::Utf8, false),
        Field::new("message", DataType::Utf8, false),
        utc_micros("failed_at"),
    ])
}

pub(crate) fn runs_schema() -> SchemaRef {
    with_version(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("command", DataType::Utf8, false),
        Field::new("medley_version", DataType::Utf8, false),
        Field::new("models", DataType::Utf8, false),
        Field::new("shard", DataType::Utf8, true),
        Field::new("files", DataType::UInt64, false),
        Field::new("indexed", DataType::UInt64, false),
        Field::new("already_indexed", DataType::UInt64, false),
        Field::new("skipped", DataType::UInt64, false),
        Field::new("failed", DataType::UInt64, false),
        Field::new("interrupted", DataType::Boolean, false),
        Field::new("media_seconds", DataType::Float64, false),
        Field::new("wall_seconds", DataType::Float64, false),
        utc_micros("started_at"),
        utc_micros("finished_at"),
    ])
}

/// The schema version a table was written with (`None` for tables not written by medley).
pub(crate) fn version_of(schema: &arrow_schema::Schema) -> Option<&str> {
    schema.metadata().get("medley.schema_version").map(String::as_str)
}

/// Width of a fixed-size-list vector column, if the schema has one by that name.
pub(crate) fn vector_width(schema: &arrow_schema::Schema, name: &str) -> Option<usize> {
    match schema.field_with_name(name).map(|f| f.data_type().clone()) {
        Ok(DataType::FixedSizeList(_, n)) => Some(n as usize),
        _ => None,
    }
}
