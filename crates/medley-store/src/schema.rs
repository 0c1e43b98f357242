//! The tables' names and Arrow schemas, and the check that a table found on disk has the
//! columns medley reads, of the types it reads them as.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

use crate::StoreError;

pub const MEDIA_TABLE: &str = "media";
pub const FAILURES_TABLE: &str = "failures";
pub const RUNS_TABLE: &str = "runs";
pub const SEGMENTS_TABLE: &str = "segments";
pub const SID_CODEBOOKS_TABLE: &str = "sid_codebooks";
pub const SIDS_TABLE: &str = "sids";
/// Stored in each table's schema metadata (`medley.schema_version`); bumped on a change that
/// older tables cannot be migrated through in place. Nullable columns added later (`media`'s
/// `partial` and `declared_duration_s`, the SID tables' `pieces`, `content`, `pieces_model`)
/// are added to older tables when they are opened, and keep the version.
pub const SCHEMA_VERSION: &str = "1";

/// A table of a medley database, by name (`media`, `segments`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableName {
    Media,
    Segments,
    Failures,
    Runs,
    Sids,
    SidCodebooks,
}

impl TableName {
    /// Every table, in the order they are listed to users.
    pub const ALL: [TableName; 6] = [
        TableName::Media,
        TableName::Segments,
        TableName::Failures,
        TableName::Runs,
        TableName::Sids,
        TableName::SidCodebooks,
    ];
    /// The names of `ALL`, in the same order.
    pub const NAMES: [&'static str; 6] =
        [MEDIA_TABLE, SEGMENTS_TABLE, FAILURES_TABLE, RUNS_TABLE, SIDS_TABLE, SID_CODEBOOKS_TABLE];

    pub const fn name(self) -> &'static str {
        match self {
            TableName::Media => MEDIA_TABLE,
            TableName::Segments => SEGMENTS_TABLE,
            TableName::Failures => FAILURES_TABLE,
            TableName::Runs => RUNS_TABLE,
            TableName::Sids => SIDS_TABLE,
            TableName::SidCodebooks => SID_CODEBOOKS_TABLE,
        }
    }

    /// Tables every database has (created on open); the others are written by a command.
    pub const fn always_present(self) -> bool {
        !matches!(self, TableName::Sids | TableName::SidCodebooks)
    }

    /// What creates a table that is not always present, for the error when it is absent.
    pub(crate) const fn created_by(self) -> &'static str {
        match self {
            TableName::Sids | TableName::SidCodebooks => " (it is written by `medley sid train`)",
            _ => "",
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of medley's tables.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no table `{0}` in medley databases; tables: {names}", names = TableName::NAMES.join(", "))]
pub struct UnknownTable(pub String);

impl std::str::FromStr for TableName {
    type Err = UnknownTable;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TableName::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| UnknownTable(s.to_string()))
    }
}

/// Widths of the vector columns; they come from the models in use, and a table written with
/// other widths is refused rather than mixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorDims {
    pub visual: usize,
    pub audio: usize,
    pub bridge: usize,
    pub music: usize,
    pub text: usize,
    /// The `clip` column, when the pipeline has an image-text model (CLIP, SigLIP).
    pub clip: Option<ClipSpace>,
    /// The `clap` column, when the pipeline has an audio-text model (CLAP).
    pub clap: Option<ClipSpace>,
}

/// A dual encoder's space: the `clip` column of `media` (an image-text model) or its `clap`
/// column (an audio-text model), as wide as the model's embeddings, with the model's id in the
/// field's metadata (`medley.model`), so a text query is embedded by the same model's text
/// tower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipSpace {
    pub width: usize,
    pub model: String,
}

/// The column frames embedded by an image-text model's vision tower go to (mean per item).
pub const CLIP_COLUMN: &str = "clip";
/// The column the soundtrack embedded by an audio-text model's audio tower goes to (mean per
/// item).
pub const CLAP_COLUMN: &str = "clap";
/// The `clip` field's metadata key naming the model.
pub const MODEL_KEY: &str = "medley.model";

/// The `column` field (`clip` or `clap`) of `space`.
pub(crate) fn space_field(column: &str, space: &ClipSpace) -> Field {
    vector(column, space.width).with_metadata([(MODEL_KEY.to_string(), space.model.clone())].into())
}

/// The space of a `media` table's `column` (`clip` or `clap`): its width and model, if it has
/// the column.
pub(crate) fn space_of(schema: &arrow_schema::Schema, column: &str) -> Option<ClipSpace> {
    let field = schema.field_with_name(column).ok()?;
    let width = vector_width(schema, column)?;
    let model = field.metadata().get(MODEL_KEY).cloned().unwrap_or_default();
    Some(ClipSpace { width, model })
}

/// The vector columns of `media` (and `segments`), in schema order.
pub const VECTOR_COLUMNS: [&str; 5] = ["visual", "audio", "music", "text", "bridge"];

/// The text-space columns added with sound events and on-screen text, all as wide as `bridge`
/// (the text model's space): `semantic` fuses every bridge, the transcript, the on-screen text
/// and captions into one vector per item (what text search ranks by); the others keep each
/// bridge for researchers: `sound_bridge` (sound events), `music_bridge` (music tags), `ocr`
/// (the on-screen text embedded). `segments` has `semantic`, `sound_bridge` and `caption`.
pub const TEXT_SPACE_COLUMNS: [&str; 4] = ["semantic", "sound_bridge", "music_bridge", "ocr"];

/// The column text search ranks by.
pub const SEARCH_COLUMN: &str = "semantic";

/// The column text search ranked by before `semantic` existed: the labels seen, bridged into
/// the text space. Tables indexed before then are still searched by it.
pub const LEGACY_SEARCH_COLUMN: &str = "bridge";

/// The vector columns' fields, in schema order.
pub(crate) fn vector_fields(d: &VectorDims) -> [Field; 5] {
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

/// A label list that older rows may lack (read as empty).
pub(crate) fn nullable_label_list(name: &str) -> Field {
    Field::new(name, DataType::List(Arc::new(Field::new("item", DataType::Struct(label_struct()), true))), true)
}

pub(crate) fn utc_micros(name: &str) -> Field {
    Field::new(name, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false)
}

pub(crate) fn with_version(fields: Vec<Field>) -> SchemaRef {
    let meta = [("medley.schema_version".to_string(), SCHEMA_VERSION.to_string())].into_iter().collect();
    Arc::new(Schema::new_with_metadata(fields, meta))
}

pub(crate) fn media_schema(d: &VectorDims) -> SchemaRef {
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
    // Last, in the order migration appends them to older tables: a merge-insert then meets
    // the same column order in fresh and migrated tables.
    fields.extend(ADDED_MEDIA_COLUMNS.map(|(name, data_type, nullable, _)| Field::new(name, data_type, nullable)));
    fields.extend(added_null_media_fields(d));
    with_version(fields)
}

/// The `media` columns added with the text space, after `ADDED_MEDIA_COLUMNS`: all nullable,
/// so older tables get them as nulls (metadata only in Lance).
pub(crate) fn added_null_media_fields(d: &VectorDims) -> Vec<Field> {
    let mut fields = vec![nullable_label_list("sound_tags"), Field::new("ocr_text", DataType::Utf8, true)];
    fields.extend(TEXT_SPACE_COLUMNS.map(|c| vector(c, d.bridge)));
    // Last: a table gets them when a pipeline with such a model first writes to it.
    fields.extend(d.clip.as_ref().map(|s| space_field(CLIP_COLUMN, s)));
    fields.extend(d.clap.as_ref().map(|s| space_field(CLAP_COLUMN, s)));
    fields
}

/// The `segments` columns added with the text space, last in its schema.
pub(crate) fn added_null_segment_fields(d: &VectorDims) -> Vec<Field> {
    let mut fields = vec![
        nullable_label_list("sound_tags"),
        Field::new("ocr_text", DataType::Utf8, true),
        vector("semantic", d.bridge),
        vector("sound_bridge", d.bridge),
        // What a captioner says of the segment's middle frame (null without a captioner).
        Field::new("caption", DataType::Utf8, true),
    ];
    fields.extend(d.clip.as_ref().map(|s| space_field(CLIP_COLUMN, s)));
    fields.extend(d.clap.as_ref().map(|s| space_field(CLAP_COLUMN, s)));
    fields
}

/// The `media` columns added after version 1 was first written: name, type, nullable, and the
/// SQL expression that fills them in older tables' rows (a table lacking them gets them when
/// opened for writing): not known to be partial; no declared duration recorded.
pub(crate) const ADDED_MEDIA_COLUMNS: [(&str, DataType, bool, &str); 2] = [
    ("partial", DataType::Boolean, false, "false"),
    ("declared_duration_s", DataType::Float64, true, "CAST(NULL AS DOUBLE)"),
];

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
    with_version(
        vec![
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
        ]
        .into_iter()
        .chain(added_null_run_fields())
        .collect(),
    )
}

/// The `runs` columns added after the first version (nullable: older runs did not record them).
pub(crate) fn added_null_run_fields() -> Vec<Field> {
    vec![Field::new("device", DataType::Utf8, true), Field::new("hwaccel", DataType::Utf8, true)]
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

/// The type of a column as users read it in docs/schema.md (`utf8`, `list<int32>`,
/// `fixed_size_list<float32>[384]`), for errors about columns of another type.
pub(crate) fn describe(t: &DataType) -> String {
    match t {
        DataType::Utf8 => "utf8".into(),
        DataType::LargeUtf8 => "large_utf8".into(),
        DataType::Boolean => "bool".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::UInt32 => "uint32".into(),
        DataType::UInt64 => "uint64".into(),
        DataType::Float32 => "float32".into(),
        DataType::Float64 => "float64".into(),
        DataType::Timestamp(unit, tz) => {
            let unit = match unit {
                TimeUnit::Second => "s",
                TimeUnit::Millisecond => "ms",
                TimeUnit::Microsecond => "us",
                TimeUnit::Nanosecond => "ns",
            };
            match tz {
                Some(tz) => format!("timestamp[{unit}, {tz}]"),
                None => format!("timestamp[{unit}]"),
            }
        }
        DataType::List(item) => format!("list<{}>", describe(item.data_type())),
        DataType::LargeList(item) => format!("large_list<{}>", describe(item.data_type())),
        DataType::FixedSizeList(item, n) => format!("fixed_size_list<{}>[{n}]", describe(item.data_type())),
        DataType::Struct(fields) => {
            let fields: Vec<String> =
                fields.iter().map(|f| format!("{}: {}", f.name(), describe(f.data_type()))).collect();
            format!("struct<{}>", fields.join(", "))
        }
        other => other.to_string().to_lowercase(),
    }
}

/// Whether a column of type `found` reads as `expected`: the same types, struct fields by the
/// same names; nullability and list item names do not matter (nulls are caught when read).
pub(crate) fn same_type(found: &DataType, expected: &DataType) -> bool {
    match (found, expected) {
        (DataType::List(a), DataType::List(b)) => same_type(a.data_type(), b.data_type()),
        (DataType::FixedSizeList(a, n), DataType::FixedSizeList(b, m)) => {
            n == m && same_type(a.data_type(), b.data_type())
        }
        (DataType::Struct(a), DataType::Struct(b)) => {
            a.len() == b.len()
                && a.iter().zip(b).all(|(a, b)| a.name() == b.name() && same_type(a.data_type(), b.data_type()))
        }
        _ => found == expected,
    }
}

/// Check that table `table` (found with schema `found`) has every column of `expected` with
/// its type; `optional` columns may be absent (added by migration, or only read when there).
pub(crate) fn check_columns(
    uri: &str,
    table: &str,
    found: &Schema,
    expected: &Schema,
    optional: &[&str],
) -> Result<(), StoreError> {
    for field in expected.fields() {
        let name = field.name();
        match found.field_with_name(name) {
            Err(_) if optional.contains(&name.as_str()) => {}
            Err(_) => {
                return Err(StoreError::MissingColumn { uri: uri.into(), table: table.into(), column: name.clone() });
            }
            Ok(f) if !same_type(f.data_type(), field.data_type()) => {
                return Err(StoreError::Column {
                    uri: uri.into(),
                    table: table.into(),
                    column: name.clone(),
                    expected: describe(field.data_type()),
                    found: describe(f.data_type()),
                });
            }
            Ok(_) => {}
        }
    }
    Ok(())
}
