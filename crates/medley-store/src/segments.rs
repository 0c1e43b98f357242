//! The `segments` table: one row per shot or time window of an item, with the same kinds of
//! vectors and text as `media`, so a search can return the moment in a video, not just the file.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{ArrowError, DataType, Field, SchemaRef};
use serde::Serialize;

use crate::rows::{Label, label_lists, opt_strings, strings, vectors};
use crate::schema::{VectorDims, added_null_segment_fields, label_list, vector_fields, with_version};

/// One shot or window of an item: a row of the `segments` table.
#[derive(Debug, Clone, Default)]
pub struct SegmentRow {
    /// Position of the segment in its item, from 0, in time order.
    pub segment: u32,
    pub start_s: f64,
    pub end_s: f64,
    pub frames_sampled: u32,
    pub visual: Option<Vec<f32>>,
    pub audio: Option<Vec<f32>>,
    pub music: Option<Vec<f32>>,
    pub text: Option<Vec<f32>>,
    pub bridge: Option<Vec<f32>>,
    pub labels: Vec<Label>,
    /// Sound events heard in the segment, best first.
    pub sound_tags: Vec<Label>,
    /// Text read on screen in the segment.
    pub ocr_text: Option<String>,
    /// The segment in the text space, fused from every bridge and text (see `media.semantic`).
    pub semantic: Option<Vec<f32>>,
    /// Sound events into the text space.
    pub sound_bridge: Option<Vec<f32>>,
    /// What was said in the segment (the speech-recognition segments whose middle falls in it).
    pub transcript: Option<String>,
    /// The captioner's words for the segment's middle frame, when the pipeline has one.
    pub caption: Option<String>,
    /// The mean of its frames in the image-text space (`clip`), when the pipeline has a model.
    pub clip: Option<Vec<f32>>,
    /// The unit mean of its sound windows in the audio-text space (`clap`), when the pipeline
    /// has such a model.
    pub clap: Option<Vec<f32>>,
}

/// Every segment of one item, written together: a re-index replaces the item's segments.
#[derive(Debug, Clone, Default)]
pub struct ItemSegments {
    pub content_hash: String,
    pub path: String,
    pub kind: String,
    pub models: String,
    pub segments: Vec<SegmentRow>,
}

/// Where in an item a search hit is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Span {
    pub segment: u32,
    pub start_s: f64,
    pub end_s: f64,
}

pub(crate) fn segments_schema(d: &VectorDims) -> SchemaRef {
    let mut fields = vec![
        Field::new("segment_id", DataType::Utf8, false),
        Field::new("content_hash", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("segment", DataType::UInt32, false),
        Field::new("start_s", DataType::Float64, false),
        Field::new("end_s", DataType::Float64, false),
        Field::new("duration_s", DataType::Float64, true),
        Field::new("frames_sampled", DataType::UInt32, false),
    ];
    fields.extend(vector_fields(d));
    fields.extend([
        label_list("labels"),
        Field::new("label_text", DataType::Utf8, false),
        Field::new("transcript", DataType::Utf8, true),
        Field::new("models", DataType::Utf8, false),
    ]);
    fields.extend(added_null_segment_fields(d));
    with_version(fields)
}

pub(crate) fn segments_batch(
    schema: SchemaRef,
    items: &[ItemSegments],
    dims: &VectorDims,
) -> Result<RecordBatch, ArrowError> {
    let rows: Vec<(&ItemSegments, &SegmentRow)> =
        items.iter().flat_map(|i| i.segments.iter().map(move |s| (i, s))).collect();
    let ids: Vec<String> = rows.iter().map(|(i, s)| segment_id(&i.content_hash, s.segment)).collect();
    let columns: Vec<ArrayRef> = vec![
        strings(ids.iter().map(String::as_str)),
        strings(rows.iter().map(|(i, _)| i.content_hash.as_str())),
        strings(rows.iter().map(|(i, _)| i.path.as_str())),
        strings(rows.iter().map(|(i, _)| i.kind.as_str())),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|(_, s)| s.segment))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|(_, s)| s.start_s))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|(_, s)| s.end_s))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|(_, s)| s.end_s - s.start_s))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|(_, s)| s.frames_sampled))),
        vectors(rows.iter().map(|(_, s)| s.visual.as_ref()), dims.visual)?,
        vectors(rows.iter().map(|(_, s)| s.audio.as_ref()), dims.audio)?,
        vectors(rows.iter().map(|(_, s)| s.music.as_ref()), dims.music)?,
        vectors(rows.iter().map(|(_, s)| s.text.as_ref()), dims.text)?,
        vectors(rows.iter().map(|(_, s)| s.bridge.as_ref()), dims.bridge)?,
        label_lists(rows.iter().map(|(_, s)| s.labels.as_slice()))?,
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(_, s)| s.labels.iter().map(|l| l.label.as_str()).collect::<Vec<_>>().join(", ")),
        )),
        opt_strings(rows.iter().map(|(_, s)| s.transcript.as_deref())),
        strings(rows.iter().map(|(i, _)| i.models.as_str())),
        label_lists(rows.iter().map(|(_, s)| s.sound_tags.as_slice()))?,
        opt_strings(rows.iter().map(|(_, s)| s.ocr_text.as_deref())),
        vectors(rows.iter().map(|(_, s)| s.semantic.as_ref()), dims.bridge)?,
        vectors(rows.iter().map(|(_, s)| s.sound_bridge.as_ref()), dims.bridge)?,
        opt_strings(rows.iter().map(|(_, s)| s.caption.as_deref())),
    ];
    let mut columns = columns;
    if let Some(clip) = &dims.clip {
        columns.push(vectors(rows.iter().map(|(_, s)| s.clip.as_ref()), clip.width)?);
    }
    if let Some(clap) = &dims.clap {
        columns.push(vectors(rows.iter().map(|(_, s)| s.clap.as_ref()), clap.width)?);
    }
    RecordBatch::try_new(schema, columns)
}

/// The key of a segment row: unique, and the same on every re-index of the item.
fn segment_id(content_hash: &str, segment: u32) -> String {
    format!("{content_hash}:{segment}")
}
