use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, ListArray, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray, UInt32Array, UInt64Array,
    builder::{FixedSizeListBuilder, Float32Builder},
    new_null_array,
};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, Field, SchemaRef};
use serde::Serialize;

use crate::schema::label_struct;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Label {
    pub label: String,
    pub score: f32,
}

/// One indexed item: a row of the `media` table.
#[derive(Debug, Clone, Default)]
pub struct MediaRow {
    pub content_hash: String,
    pub path: String,
    pub file_name: String,
    pub kind: String,
    pub container: String,
    pub size_bytes: u64,
    /// Seconds decoded (for a partial file, less than its header declares).
    pub duration_s: Option<f64>,
    /// Decoding stopped before the duration the container's header declares (a truncated
    /// file): the row describes what was decoded.
    pub partial: bool,
    /// The duration the container's header declares, in seconds, when it declares one.
    pub declared_duration_s: Option<f64>,
    pub video_codec: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<f64>,
    pub rotation: Option<u32>,
    pub audio_codec: Option<String>,
    pub sample_rate: Option<u32>,
    pub channels: Option<u32>,
    pub frames_sampled: u32,
    pub audio_windows: u32,
    pub visual: Option<Vec<f32>>,
    pub audio: Option<Vec<f32>>,
    pub music: Option<Vec<f32>>,
    /// The transcript's embedding in the text space.
    pub text: Option<Vec<f32>>,
    pub bridge: Option<Vec<f32>>,
    pub labels: Vec<Label>,
    pub music_tags: Vec<Label>,
    /// Sound events (AudioSet classes) heard, best first.
    pub sound_tags: Vec<Label>,
    /// Text read on screen (or in the picture), lines joined by newlines.
    pub ocr_text: Option<String>,
    /// The item in the text space, fused from every bridge, the transcript, the on-screen text
    /// and the caption: what text search ranks by.
    pub semantic: Option<Vec<f32>>,
    /// Sound events into the text space.
    pub sound_bridge: Option<Vec<f32>>,
    /// Music tags into the text space.
    pub music_bridge: Option<Vec<f32>>,
    /// The on-screen text embedded by the text model.
    pub ocr: Option<Vec<f32>>,
    /// The mean of the frames' embeddings by an image-text model's vision tower (`clip`
    /// column), when the pipeline has one.
    pub clip: Option<Vec<f32>>,
    /// The mean of the soundtrack's windows by an audio-text model's audio tower (`clap`
    /// column), when the pipeline has one and the item has sound.
    pub clap: Option<Vec<f32>>,
    pub transcript: Option<String>,
    pub language: Option<String>,
    pub description: String,
    pub models: String,
    pub indexed_at_us: i64,
}

/// A file that could not be indexed: a row of the `failures` table.
#[derive(Debug, Clone)]
pub struct FailureRow {
    pub path: String,
    pub content_hash: Option<String>,
    pub stage: String,
    pub error_kind: String,
    pub message: String,
    pub failed_at_us: i64,
}

/// What one `medley index` run did: a row of the `runs` table.
#[derive(Debug, Clone, Default)]
pub struct RunRow {
    pub run_id: String,
    pub command: String,
    pub medley_version: String,
    pub models: String,
    pub shard: Option<String>,
    pub files: u64,
    pub indexed: u64,
    pub already_indexed: u64,
    pub skipped: u64,
    pub failed: u64,
    pub interrupted: bool,
    pub media_seconds: f64,
    pub wall_seconds: f64,
    pub started_at_us: i64,
    pub finished_at_us: i64,
    /// Where the models ran (`cpu`, `cuda`) and how video was decoded (`none`, `cuda`).
    pub device: Option<String>,
    pub hwaccel: Option<String>,
}

/// One result of a vector search.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    pub content_hash: String,
    pub path: String,
    pub kind: String,
    pub duration_s: Option<f64>,
    /// Cosine similarity to the query (1 is identical).
    pub score: f32,
    pub labels: Vec<Label>,
    /// For a segment search: which shot or window of the item, and its time range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span: Option<crate::Span>,
    /// For a segment search: what the captioner said of the segment's middle frame, when the
    /// pipeline has a captioner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
}

pub(crate) fn strings<'a>(v: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v))
}

pub(crate) fn opt_strings<'a>(v: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(v))
}

pub(crate) fn vectors<'a>(v: impl Iterator<Item = Option<&'a Vec<f32>>>, dim: usize) -> Result<ArrayRef, ArrowError> {
    let mut b = FixedSizeListBuilder::new(Float32Builder::new(), dim as i32);
    for item in v {
        match item {
            Some(x) if x.len() == dim => {
                b.values().append_slice(x);
                b.append(true);
            }
            Some(x) => {
                return Err(ArrowError::InvalidArgumentError(format!(
                    "vector of {} values for a {dim}-wide column",
                    x.len()
                )));
            }
            None => {
                b.values().append_slice(&vec![0.0; dim]);
                b.append(false);
            }
        }
    }
    Ok(Arc::new(b.finish()))
}

pub(crate) fn label_lists<'a>(rows: impl Iterator<Item = &'a [Label]>) -> Result<ArrayRef, ArrowError> {
    let mut offsets = vec![0i32];
    let (mut names, mut scores) = (Vec::new(), Vec::new());
    for labels in rows {
        for l in labels {
            names.push(l.label.as_str());
            scores.push(l.score);
        }
        offsets.push(names.len() as i32);
    }
    let values = StructArray::try_new(
        label_struct(),
        vec![Arc::new(StringArray::from(names)) as ArrayRef, Arc::new(Float32Array::from(scores))],
        None,
    )?;
    let field = Arc::new(Field::new("item", arrow_schema::DataType::Struct(label_struct()), true));
    Ok(Arc::new(ListArray::try_new(field, OffsetBuffer::new(ScalarBuffer::from(offsets)), Arc::new(values), None)?))
}

pub(crate) fn media_batch(
    schema: SchemaRef,
    rows: &[MediaRow],
    dims: &crate::VectorDims,
) -> Result<RecordBatch, ArrowError> {
    let utc = |v: Vec<i64>| Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC")) as ArrayRef;
    let columns: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|r| r.content_hash.as_str())),
        strings(rows.iter().map(|r| r.path.as_str())),
        strings(rows.iter().map(|r| r.file_name.as_str())),
        strings(rows.iter().map(|r| r.kind.as_str())),
        strings(rows.iter().map(|r| r.container.as_str())),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.size_bytes))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.duration_s))),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.video_codec.is_some())))),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.audio_codec.is_some())))),
        opt_strings(rows.iter().map(|r| r.video_codec.as_deref())),
        Arc::new(UInt32Array::from_iter(rows.iter().map(|r| r.width))),
        Arc::new(UInt32Array::from_iter(rows.iter().map(|r| r.height))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.fps))),
        Arc::new(UInt32Array::from_iter(rows.iter().map(|r| r.rotation))),
        opt_strings(rows.iter().map(|r| r.audio_codec.as_deref())),
        Arc::new(UInt32Array::from_iter(rows.iter().map(|r| r.sample_rate))),
        Arc::new(UInt32Array::from_iter(rows.iter().map(|r| r.channels))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.frames_sampled))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.audio_windows))),
        vectors(rows.iter().map(|r| r.visual.as_ref()), dims.visual)?,
        vectors(rows.iter().map(|r| r.audio.as_ref()), dims.audio)?,
        vectors(rows.iter().map(|r| r.music.as_ref()), dims.music)?,
        vectors(rows.iter().map(|r| r.text.as_ref()), dims.text)?,
        vectors(rows.iter().map(|r| r.bridge.as_ref()), dims.bridge)?,
        label_lists(rows.iter().map(|r| r.labels.as_slice()))?,
        Arc::new(StringArray::from_iter_values(rows.iter().map(MediaRow::label_text))),
        label_lists(rows.iter().map(|r| r.music_tags.as_slice()))?,
        opt_strings(rows.iter().map(|r| r.transcript.as_deref())),
        opt_strings(rows.iter().map(|r| r.language.as_deref())),
        strings(rows.iter().map(|r| r.description.as_str())),
        strings(rows.iter().map(|r| r.models.as_str())),
        utc(rows.iter().map(|r| r.indexed_at_us).collect()),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.partial)))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.declared_duration_s))),
        label_lists(rows.iter().map(|r| r.sound_tags.as_slice()))?,
        opt_strings(rows.iter().map(|r| r.ocr_text.as_deref())),
        vectors(rows.iter().map(|r| r.semantic.as_ref()), dims.bridge)?,
        vectors(rows.iter().map(|r| r.sound_bridge.as_ref()), dims.bridge)?,
        vectors(rows.iter().map(|r| r.music_bridge.as_ref()), dims.bridge)?,
        vectors(rows.iter().map(|r| r.ocr.as_ref()), dims.bridge)?,
    ];
    let mut columns = columns;
    if let Some(clip) = &dims.clip {
        columns.push(vectors(rows.iter().map(|r| r.clip.as_ref()), clip.width)?);
    }
    if let Some(clap) = &dims.clap {
        columns.push(vectors(rows.iter().map(|r| r.clap.as_ref()), clap.width)?);
    }
    RecordBatch::try_new(schema, columns)
}

impl MediaRow {
    /// A vector column by name (`visual`, `audio`, `music`, `text`, `bridge`, and the
    /// text-space columns `semantic`, `sound_bridge`, `music_bridge`, `ocr`).
    pub fn vector(&self, column: &str) -> Option<&[f32]> {
        match column {
            "visual" => self.visual.as_deref(),
            "audio" => self.audio.as_deref(),
            "music" => self.music.as_deref(),
            "text" => self.text.as_deref(),
            "bridge" => self.bridge.as_deref(),
            "semantic" => self.semantic.as_deref(),
            "sound_bridge" => self.sound_bridge.as_deref(),
            "music_bridge" => self.music_bridge.as_deref(),
            "ocr" => self.ocr.as_deref(),
            "clip" => self.clip.as_deref(),
            "clap" => self.clap.as_deref(),
            _ => None,
        }
    }

    /// The labels as one searchable string (`"Egyptian cat, tabby, ..."`), for full-text search.
    pub fn label_text(&self) -> String {
        self.labels.iter().map(|l| l.label.as_str()).collect::<Vec<_>>().join(", ")
    }
}

pub(crate) fn run_batch(schema: SchemaRef, r: &RunRow) -> Result<RecordBatch, ArrowError> {
    let utc = |v: i64| Arc::new(TimestampMicrosecondArray::from(vec![v]).with_timezone("UTC")) as ArrayRef;
    let u = |v: u64| Arc::new(UInt64Array::from(vec![v])) as ArrayRef;
    let columns: Vec<ArrayRef> = vec![
        strings([r.run_id.as_str()].into_iter()),
        strings([r.command.as_str()].into_iter()),
        strings([r.medley_version.as_str()].into_iter()),
        strings([r.models.as_str()].into_iter()),
        opt_strings([r.shard.as_deref()].into_iter()),
        u(r.files),
        u(r.indexed),
        u(r.already_indexed),
        u(r.skipped),
        u(r.failed),
        Arc::new(BooleanArray::from(vec![r.interrupted])),
        Arc::new(Float64Array::from(vec![r.media_seconds])),
        Arc::new(Float64Array::from(vec![r.wall_seconds])),
        utc(r.started_at_us),
        utc(r.finished_at_us),
        opt_strings([r.device.as_deref()].into_iter()),
        opt_strings([r.hwaccel.as_deref()].into_iter()),
    ];
    RecordBatch::try_new(schema, columns)
}

pub(crate) fn failure_batch(schema: SchemaRef, rows: &[FailureRow]) -> Result<RecordBatch, ArrowError> {
    let columns: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|r| r.path.as_str())),
        opt_strings(rows.iter().map(|r| r.content_hash.as_deref())),
        strings(rows.iter().map(|r| r.stage.as_str())),
        strings(rows.iter().map(|r| r.error_kind.as_str())),
        strings(rows.iter().map(|r| r.message.as_str())),
        Arc::new(
            TimestampMicrosecondArray::from(rows.iter().map(|r| r.failed_at_us).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ),
    ];
    RecordBatch::try_new(schema, columns)
}

/// `batch` with the columns of `schema`, in its order, matched by name (a column the batch
/// lacks is nulls): a table migrated from an older version has its added columns last, in the
/// order they were added, which need not be the order a fresh table has.
pub(crate) fn conform(batch: &RecordBatch, schema: SchemaRef) -> Result<RecordBatch, ArrowError> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            batch.column_by_name(f.name()).cloned().unwrap_or_else(|| new_null_array(f.data_type(), batch.num_rows()))
        })
        .collect();
    RecordBatch::try_new(schema, columns)
}
