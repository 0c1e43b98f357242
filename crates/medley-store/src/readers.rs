//! Reading Arrow columns out of query results with typed errors: a table written by another
//! tool or version (a column missing, of another type, or null where medley always writes a
//! value) is a `StoreError` naming the database, table and column, never a panic.

use arrow_array::{
    Array, ArrowPrimitiveType, FixedSizeListArray, Float32Array, Float64Array, Int32Array, ListArray, PrimitiveArray,
    RecordBatch, StringArray, StructArray, TimestampMicrosecondArray, UInt32Array,
};
use arrow_schema::DataType;

use crate::StoreError;
use crate::rows::{Label, SearchHit};
use crate::schema::describe;
use crate::segments::Span;

/// Where columns are read from, for the errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub(crate) uri: &'a str,
    pub(crate) table: &'a str,
}

impl<'a> Source<'a> {
    pub(crate) fn new(uri: &'a str, table: &'a str) -> Self {
        Self { uri, table }
    }

    /// The columns of one batch of a query's results.
    pub(crate) fn batch<'b>(self, batch: &'b RecordBatch) -> Reader<'a, 'b> {
        Reader { source: self, batch }
    }

    fn missing(self, column: &str) -> StoreError {
        StoreError::MissingColumn { uri: self.uri.into(), table: self.table.into(), column: column.into() }
    }

    fn wrong(self, column: &str, expected: &str, found: &DataType) -> StoreError {
        StoreError::Column {
            uri: self.uri.into(),
            table: self.table.into(),
            column: column.into(),
            expected: expected.into(),
            found: describe(found),
        }
    }

    fn null(self, column: &str) -> StoreError {
        StoreError::Null { uri: self.uri.into(), table: self.table.into(), column: column.into() }
    }
}

/// One record batch, its columns read by name.
pub(crate) struct Reader<'a, 'b> {
    source: Source<'a>,
    batch: &'b RecordBatch,
}

impl<'a, 'b> Reader<'a, 'b> {
    pub(crate) fn rows(&self) -> std::ops::Range<usize> {
        0..self.batch.num_rows()
    }

    /// Column `name` as an array of type `A`; `expected` names that type for the error.
    pub(crate) fn column<A: Array + 'static>(
        &self,
        name: &str,
        expected: &str,
    ) -> Result<Column<'a, 'b, A>, StoreError> {
        self.optional(name, expected)?.ok_or_else(|| self.source.missing(name))
    }

    /// Like `column`, but `None` when the batch has no such column.
    pub(crate) fn optional<A: Array + 'static>(
        &self,
        name: &str,
        expected: &str,
    ) -> Result<Option<Column<'a, 'b, A>>, StoreError> {
        let Some(array) = self.batch.column_by_name(name) else { return Ok(None) };
        let typed = array.as_any().downcast_ref::<A>();
        let typed = typed.ok_or_else(|| self.source.wrong(name, expected, array.data_type()))?;
        Ok(Some(Column { source: self.source, name: name.to_string(), array: typed }))
    }

    pub(crate) fn strings(&self, name: &str) -> Result<Column<'a, 'b, StringArray>, StoreError> {
        self.column(name, "utf8")
    }

    pub(crate) fn f32s(&self, name: &str) -> Result<Column<'a, 'b, Float32Array>, StoreError> {
        self.column(name, "float32")
    }

    pub(crate) fn f64s(&self, name: &str) -> Result<Column<'a, 'b, Float64Array>, StoreError> {
        self.column(name, "float64")
    }

    pub(crate) fn u32s(&self, name: &str) -> Result<Column<'a, 'b, UInt32Array>, StoreError> {
        self.column(name, "uint32")
    }

    pub(crate) fn timestamps(&self, name: &str) -> Result<Column<'a, 'b, TimestampMicrosecondArray>, StoreError> {
        self.column(name, "timestamp[us, UTC]")
    }

    /// A list column; `expected` is its type as documented (`list<utf8>`).
    pub(crate) fn lists(&self, name: &str, expected: &str) -> Result<Column<'a, 'b, ListArray>, StoreError> {
        self.column(name, expected)
    }

    pub(crate) fn vectors(&self, name: &str) -> Result<Column<'a, 'b, FixedSizeListArray>, StoreError> {
        self.column(name, "fixed_size_list<float32>[N]")
    }
}

/// A column of a batch, typed, that knows its name for the errors.
pub(crate) struct Column<'a, 'b, A> {
    source: Source<'a>,
    name: String,
    array: &'b A,
}

impl<A: Array> Column<'_, '_, A> {
    fn null(&self) -> StoreError {
        self.source.null(&self.name)
    }

    fn wrong(&self, expected: &str) -> StoreError {
        self.source.wrong(&self.name, expected, self.array.data_type())
    }
}

impl<'b> Column<'_, 'b, StringArray> {
    /// The string in row `i` of a column medley always fills.
    pub(crate) fn str(&self, i: usize) -> Result<&'b str, StoreError> {
        self.opt(i).ok_or_else(|| self.null())
    }

    pub(crate) fn opt(&self, i: usize) -> Option<&'b str> {
        (!self.array.is_null(i)).then(|| self.array.value(i))
    }
}

impl<T: ArrowPrimitiveType> Column<'_, '_, PrimitiveArray<T>> {
    /// The value in row `i` of a column medley always fills.
    pub(crate) fn value(&self, i: usize) -> Result<T::Native, StoreError> {
        self.opt(i).ok_or_else(|| self.null())
    }

    pub(crate) fn opt(&self, i: usize) -> Option<T::Native> {
        (!self.array.is_null(i)).then(|| self.array.value(i))
    }
}

impl Column<'_, '_, FixedSizeListArray> {
    /// The vector in row `i` (`None` when the item has none).
    pub(crate) fn vector(&self, i: usize) -> Result<Option<Vec<f32>>, StoreError> {
        if self.array.is_null(i) {
            return Ok(None);
        }
        let values = self.array.value(i);
        let floats =
            values.as_any().downcast_ref::<Float32Array>().ok_or_else(|| self.wrong("fixed_size_list<float32>[N]"))?;
        Ok(Some(floats.values().to_vec()))
    }
}

impl Column<'_, '_, ListArray> {
    /// The strings in row `i` (none for a null list).
    pub(crate) fn strings(&self, i: usize) -> Result<Vec<String>, StoreError> {
        if self.array.is_null(i) {
            return Ok(Vec::new());
        }
        let values = self.array.value(i);
        let s = values.as_any().downcast_ref::<StringArray>().ok_or_else(|| self.wrong("list<utf8>"))?;
        (0..s.len()).map(|j| if s.is_null(j) { Err(self.null()) } else { Ok(s.value(j).to_string()) }).collect()
    }

    /// The integers in row `i` (none for a null list).
    pub(crate) fn i32s(&self, i: usize) -> Result<Vec<i32>, StoreError> {
        if self.array.is_null(i) {
            return Ok(Vec::new());
        }
        let values = self.array.value(i);
        let v = values.as_any().downcast_ref::<Int32Array>().ok_or_else(|| self.wrong("list<int32>"))?;
        if v.null_count() > 0 {
            return Err(self.null());
        }
        Ok(v.values().to_vec())
    }

    /// The labels in row `i`: structs of `label` (utf8) and `score` (float32).
    pub(crate) fn labels(&self, i: usize) -> Result<Vec<Label>, StoreError> {
        const EXPECTED: &str = LABELS_TYPE;
        if self.array.is_null(i) {
            return Ok(Vec::new());
        }
        let values = self.array.value(i);
        let s = values.as_any().downcast_ref::<StructArray>().ok_or_else(|| self.wrong(EXPECTED))?;
        let field = |name: &str| s.column_by_name(name).ok_or_else(|| self.wrong(EXPECTED));
        let (names, scores) = (field("label")?, field("score")?);
        let names = names.as_any().downcast_ref::<StringArray>().ok_or_else(|| self.wrong(EXPECTED))?;
        let scores = scores.as_any().downcast_ref::<Float32Array>().ok_or_else(|| self.wrong(EXPECTED))?;
        (0..s.len())
            .map(|j| {
                if s.is_null(j) || names.is_null(j) || scores.is_null(j) {
                    return Err(self.null());
                }
                Ok(Label { label: names.value(j).into(), score: scores.value(j) })
            })
            .collect()
    }
}

/// The type of a labels column (`labels`, `sound_tags`, `music_tags`), as errors name it.
pub(crate) const LABELS_TYPE: &str = "list<struct<label: utf8, score: float32>>";

/// Search results from batches holding the hit columns, a float score column (`_distance` or
/// `_score`, mapped to the hit's score by `score`) and, for segments, the span columns.
pub(crate) fn read_hits(
    source: Source<'_>,
    batches: &[RecordBatch],
    score_column: Option<&str>,
    score: impl Fn(f32) -> f32,
) -> Result<Vec<SearchHit>, StoreError> {
    let mut hits = Vec::new();
    for batch in batches {
        let b = source.batch(batch);
        let (hash, path, kind) = (b.strings("content_hash")?, b.strings("path")?, b.strings("kind")?);
        let duration = b.f64s("duration_s")?;
        let scores = score_column.map(|c| b.f32s(c)).transpose()?;
        let labels = b.lists("labels", LABELS_TYPE)?;
        let segment = b.optional::<UInt32Array>("segment", "uint32")?;
        let start = b.optional::<Float64Array>("start_s", "float64")?;
        let end = b.optional::<Float64Array>("end_s", "float64")?;
        let caption = b.optional::<StringArray>("caption", "utf8")?;
        for i in b.rows() {
            let span = match (&segment, &start, &end) {
                (Some(s), Some(a), Some(e)) => {
                    Some(Span { segment: s.value(i)?, start_s: a.value(i)?, end_s: e.value(i)? })
                }
                _ => None,
            };
            hits.push(SearchHit {
                content_hash: hash.str(i)?.into(),
                path: path.str(i)?.into(),
                kind: kind.str(i)?.into(),
                duration_s: duration.opt(i),
                score: match &scores {
                    Some(s) => score(s.value(i)?),
                    None => 0.0,
                },
                labels: labels.labels(i)?,
                span,
                caption: caption.as_ref().and_then(|c| c.opt(i)).map(str::to_string),
            });
        }
    }
    Ok(hits)
}
