//! Opening a database: connecting, creating the tables on first use, and refusing (or
//! migrating) tables this medley cannot use as they are, before any work starts.

use arrow_array::RecordBatch;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::TryStreamExt;
use lancedb::database::CreateTableMode;
use lancedb::query::ExecutableQuery;
use lancedb::table::NewColumnTransform;
use lancedb::{Connection, Table};

use crate::StoreError;
use crate::schema::{
    ADDED_MEDIA_COLUMNS, CLAP_COLUMN, CLIP_COLUMN, ClipSpace, FAILURES_TABLE, MEDIA_TABLE, RUNS_TABLE, SCHEMA_VERSION,
    SEGMENTS_TABLE, TEXT_SPACE_COLUMNS, VECTOR_COLUMNS, VectorDims, added_null_media_fields, added_null_run_fields,
    added_null_segment_fields, check_columns, describe, failures_schema, media_schema, runs_schema, space_of,
    vector_width, version_of,
};
use crate::segments::segments_schema;

/// An open medley database (a LanceDB directory or object-store URI).
pub struct Store {
    /// As the user gave it (errors name it so).
    pub(crate) uri: String,
    pub(crate) conn: Connection,
    pub(crate) media: Table,
    pub(crate) failures: Table,
    pub(crate) runs: Table,
    pub(crate) segments: Table,
    pub(crate) dims: VectorDims,
    /// Vector columns kept in memory for searches (none unless asked for).
    pub(crate) memory: Arc<crate::memory::Memory>,
}

impl Store {
    /// Open the database at `uri` for writing, creating the tables on first use. A `media`
    /// table whose vector widths differ from `dims` is refused: mixing models would make
    /// vectors meaningless. A `media` table written before `partial` and
    /// `declared_duration_s` existed gets them (older rows: not partial, no declared duration).
    pub async fn open(uri: &str, dims: VectorDims) -> Result<Self, StoreError> {
        let conn = connect(uri).await?;
        let lance = |source| StoreError::Lance { uri: uri.to_string(), source };
        let media = open_or_create(&conn, MEDIA_TABLE, media_schema(&dims)).await.map_err(lance)?;
        let dims = with_table_spaces(uri, dims, &*media.schema().await.map_err(lance)?)?;
        let store = Self::assemble(uri, conn, media, dims).await?;
        store.check_media_widths().await?;
        // Checked before migrating, so a foreign table is refused untouched.
        store.check_columns(&added_media_names()).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Open an existing database for reading, taking the vector widths from its `media` table.
    /// Nothing is migrated: columns added by later versions are read when they are there.
    pub async fn open_existing(uri: &str) -> Result<Self, StoreError> {
        let conn = connect(uri).await?;
        let lance = |source| StoreError::Lance { uri: uri.to_string(), source };
        let media = conn.open_table(MEDIA_TABLE).execute().await.map_err(lance)?;
        let schema = media.schema().await.map_err(lance)?;
        let dims = dims_of(uri, &schema)?;
        let store = Self::assemble(uri, conn, media, dims).await?;
        store.check_columns(&added_media_names()).await?;
        Ok(store)
    }

    /// The tables besides `media` (created on first use), and the schema-version check.
    async fn assemble(uri: &str, conn: Connection, media: Table, dims: VectorDims) -> Result<Self, StoreError> {
        let lance = |source| StoreError::Lance { uri: uri.to_string(), source };
        let failures = open_or_create(&conn, FAILURES_TABLE, failures_schema()).await.map_err(lance)?;
        let runs = open_or_create(&conn, RUNS_TABLE, runs_schema()).await.map_err(lance)?;
        let segments = open_or_create(&conn, SEGMENTS_TABLE, segments_schema(&dims)).await.map_err(lance)?;
        let store =
            Self { uri: uri.to_string(), conn, media, failures, runs, segments, dims, memory: Default::default() };
        store.check_versions().await?;
        Ok(store)
    }

    /// Refuse tables written with another schema version (there is one version so far; a
    /// later one adds its migration here).
    async fn check_versions(&self) -> Result<(), StoreError> {
        for (name, table) in self.tables() {
            let schema = table.schema().await.map_err(|e| self.lance(e))?;
            let found = version_of(&schema).unwrap_or("none");
            if found != SCHEMA_VERSION {
                return Err(StoreError::SchemaVersion {
                    uri: self.uri.clone(),
                    table: name.into(),
                    found: found.into(),
                    expected: SCHEMA_VERSION.into(),
                });
            }
        }
        Ok(())
    }

    /// Refuse tables lacking a column medley reads or writes, or holding one of another type
    /// (a table another tool wrote with medley's version tag); `optional` columns may be absent.
    async fn check_columns(&self, optional: &[&str]) -> Result<(), StoreError> {
        let expected = [media_schema(&self.dims), segments_schema(&self.dims), failures_schema(), runs_schema()];
        for ((name, table), expected) in self.tables().into_iter().zip(expected) {
            let found = table.schema().await.map_err(|e| self.lance(e))?;
            check_columns(&self.uri, name, &found, &expected, optional)?;
        }
        Ok(())
    }

    /// Refuse a `media` table whose vector columns are not those of `dims` (other models).
    async fn check_media_widths(&self) -> Result<(), StoreError> {
        let found = self.media.schema().await.map_err(|e| self.lance(e))?;
        // A vector column of another type is named as such, not as a width mismatch.
        dims_of(&self.uri, &found)?;
        let expected = media_schema(&self.dims);
        let describe = |s: &SchemaRef| {
            VECTOR_COLUMNS
                .iter()
                .map(|c| vector_width(s, c).map_or_else(|| format!("{c}[missing]"), |n| format!("{c}[{n}]")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (f, e) = (describe(&found), describe(&expected));
        if f != e {
            return Err(StoreError::SchemaMismatch {
                uri: self.uri.clone(),
                table: MEDIA_TABLE.into(),
                found: f,
                expected: e,
            });
        }
        Ok(())
    }

    /// Add the columns later versions introduced to tables written without them: on `media`,
    /// `partial` (written as false) and `declared_duration_s`, then the text-space columns; on
    /// `segments`, its text-space columns. Nulls are metadata only in Lance. Another process
    /// migrating at the same time is fine: what counts is that the columns are there afterwards.
    async fn migrate(&self) -> Result<(), StoreError> {
        let found = self.media.schema().await.map_err(|e| self.lance(e))?;
        let missing: Vec<(String, String)> = ADDED_MEDIA_COLUMNS
            .iter()
            .filter(|(name, ..)| found.field_with_name(name).is_err())
            .map(|(name, _, _, sql)| (name.to_string(), sql.to_string()))
            .collect();
        if !missing.is_empty() {
            let names: Vec<String> = missing.iter().map(|(n, _)| n.clone()).collect();
            let added = self.media.add_columns().transform(NewColumnTransform::SqlExpressions(missing)).execute().await;
            self.settle(&self.media, added.map(|_| ()), &names).await?;
        }
        self.add_null_columns(&self.media, added_null_media_fields(&self.dims)).await?;
        self.add_null_columns(&self.segments, added_null_segment_fields(&self.dims)).await?;
        self.add_null_columns(&self.runs, added_null_run_fields()).await
    }

    /// Add the `fields` that `table` lacks, as nulls.
    async fn add_null_columns(&self, table: &Table, fields: Vec<Field>) -> Result<(), StoreError> {
        let found = table.schema().await.map_err(|e| self.lance(e))?;
        let missing: Vec<Field> = fields.into_iter().filter(|f| found.field_with_name(f.name()).is_err()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = missing.iter().map(|f| f.name().clone()).collect();
        let added =
            table.add_columns().transform(NewColumnTransform::AllNulls(Arc::new(Schema::new(missing)))).execute().await;
        self.settle(table, added.map(|_| ()), &names).await
    }

    /// After adding `names` to `table`: an error is only one when the columns are still not
    /// there (another process may have added them first).
    async fn settle(&self, table: &Table, added: lancedb::Result<()>, names: &[String]) -> Result<(), StoreError> {
        if let Err(e) = added {
            table.checkout_latest().await.map_err(|e| self.lance(e))?;
            let now = table.schema().await.map_err(|e| self.lance(e))?;
            if names.iter().any(|name| now.field_with_name(name).is_err()) {
                return Err(self.lance(e));
            }
        }
        Ok(())
    }

    /// Run a query and gather its batches, mapping errors with `err`.
    pub(crate) async fn collect(
        &self,
        query: impl ExecutableQuery,
        err: fn(&Self, lancedb::Error) -> StoreError,
    ) -> Result<Vec<RecordBatch>, StoreError> {
        let stream = query.execute().await.map_err(|e| err(self, e))?;
        stream.try_collect().await.map_err(|e| err(self, e))
    }

    pub(crate) fn lance(&self, source: lancedb::Error) -> StoreError {
        StoreError::Lance { uri: self.uri.clone(), source }
    }

    /// Errors of user-supplied queries (a bad `--where`) are reported as query errors.
    pub(crate) fn query_err(&self, source: lancedb::Error) -> StoreError {
        StoreError::Query { uri: self.uri.clone(), message: source.to_string() }
    }

    /// Move every table to its latest version, after another process committed (a write
    /// built on an older version can conflict with it); columns kept in memory follow.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        for (_, table) in self.tables() {
            table.checkout_latest().await.map_err(|e| self.lance(e))?;
        }
        if let Err(e) = self.load_memory().await {
            // Searches go to the tables (fresh) rather than to a copy of an older version.
            self.memory.forget();
            return Err(e);
        }
        Ok(())
    }

    /// The tables every database has, by name.
    pub(crate) fn tables(&self) -> [(&'static str, &Table); 4] {
        [
            (MEDIA_TABLE, &self.media),
            (SEGMENTS_TABLE, &self.segments),
            (FAILURES_TABLE, &self.failures),
            (RUNS_TABLE, &self.runs),
        ]
    }

    /// Names of the tables in the database, for errors about one that is not there.
    pub(crate) async fn table_names(&self) -> Result<Vec<String>, StoreError> {
        self.conn.table_names().execute().await.map_err(|e| self.lance(e))
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub fn dims(&self) -> &VectorDims {
        &self.dims
    }

    /// The image-text space of the `media` table (its `clip` column's width and model), if any.
    pub fn clip_space(&self) -> Option<&ClipSpace> {
        self.dims.clip.as_ref()
    }

    /// The audio-text space of the `media` table (its `clap` column's width and model), if any.
    pub fn clap_space(&self) -> Option<&ClipSpace> {
        self.dims.clap.as_ref()
    }
}

/// The names of the columns migration adds (to `media` or `segments`); tables may lack them.
fn added_media_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = ADDED_MEDIA_COLUMNS.map(|(name, ..)| name).to_vec();
    names.extend(["sound_tags", "ocr_text"]);
    names.extend(TEXT_SPACE_COLUMNS);
    names.extend(["device", "hwaccel", "caption", CLIP_COLUMN, CLAP_COLUMN]);
    names
}

/// Connect to `uri`. A URI without `scheme://` is a local directory, made absolute first:
/// lancedb takes any URI starting with `db` for LanceDB Cloud, so a relative `db` or `dbs/x`
/// would otherwise fail.
async fn connect(uri: &str) -> Result<Connection, StoreError> {
    let target = if has_scheme(uri) {
        uri.to_string()
    } else {
        let path =
            std::path::absolute(uri).map_err(|source| StoreError::Io { uri: uri.into(), path: uri.into(), source })?;
        path.to_string_lossy().into_owned()
    };
    lancedb::connect(&target).execute().await.map_err(|source| StoreError::Lance { uri: uri.to_string(), source })
}

/// `s3://...`, `file://...`, `memory://`: a scheme of letters, digits, `+`, `-`, `.`.
fn has_scheme(uri: &str) -> bool {
    uri.split_once("://").is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    })
}

/// The vector widths of an existing `media` table; a vector column of another type is refused
/// (a missing one reads as width 0, which the column check then names).
fn dims_of(uri: &str, schema: &Schema) -> Result<VectorDims, StoreError> {
    for column in VECTOR_COLUMNS {
        if let Ok(field) = schema.field_with_name(column) {
            let is_vector =
                matches!(field.data_type(), DataType::FixedSizeList(item, _) if item.data_type() == &DataType::Float32);
            if !is_vector {
                return Err(StoreError::Column {
                    uri: uri.into(),
                    table: MEDIA_TABLE.into(),
                    column: column.into(),
                    expected: "fixed_size_list<float32>[N]".into(),
                    found: describe(field.data_type()),
                });
            }
        }
    }
    let width = |name: &str| vector_width(schema, name).unwrap_or(0);
    Ok(VectorDims {
        visual: width("visual"),
        audio: width("audio"),
        bridge: width("bridge"),
        music: width("music"),
        text: width("text"),
        clip: space_of(schema, CLIP_COLUMN),
        clap: space_of(schema, CLAP_COLUMN),
    })
}

/// `dims` with the `clip` and `clap` columns the `media` table already has: a pipeline without
/// such a model writes nulls to them; one with another model (or width) is refused, as vectors
/// of two spaces in one column would be meaningless.
fn with_table_spaces(uri: &str, mut dims: VectorDims, schema: &Schema) -> Result<VectorDims, StoreError> {
    for (column, space) in [(CLIP_COLUMN, &mut dims.clip), (CLAP_COLUMN, &mut dims.clap)] {
        match (space_of(schema, column), &*space) {
            (Some(found), None) => *space = Some(found),
            (Some(found), Some(wanted)) if &found != wanted => {
                return Err(StoreError::SchemaMismatch {
                    uri: uri.into(),
                    table: MEDIA_TABLE.into(),
                    found: format!("{column}[{}] from {}", found.width, found.model),
                    expected: format!("{column}[{}] from {}", wanted.width, wanted.model),
                });
            }
            _ => {}
        }
    }
    Ok(dims)
}

/// Open a table, creating it empty when it does not exist. Opening first keeps the usual case
/// free of writes: two processes creating the same table at once can both commit the
/// creation, the second as an (empty) overwrite, which `StoreError::is_commit_race` covers.
pub(crate) async fn open_or_create(conn: &Connection, name: &str, schema: SchemaRef) -> lancedb::Result<Table> {
    match conn.open_table(name).execute().await {
        Err(lancedb::Error::TableNotFound { .. }) => {
            conn.create_empty_table(name, schema).mode(CreateTableMode::exist_ok(|r| r)).execute().await
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::has_scheme;

    #[test]
    fn only_scheme_uris_are_left_to_lancedb() {
        for uri in ["s3://bucket/db", "file:///tmp/db", "memory://", "gs+x.y-z://a"] {
            assert!(has_scheme(uri), "{uri}");
        }
        for uri in ["db", "./x/db", "/abs/db", "dbs/x", "weird/a://b", "://x", "1s3://x"] {
            assert!(!has_scheme(uri), "{uri}");
        }
    }
}
