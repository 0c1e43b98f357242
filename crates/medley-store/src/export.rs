//! Export of any table to Parquet, for training pipelines and tools that do not read Lance.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, FixedSizeListArray, ListArray, RecordBatch};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::TryStreamExt;
use lancedb::Table;
use lancedb::query::ExecutableQuery;

use crate::StoreError;
use crate::open::Store;
use crate::schema::TableName;

impl Store {
    /// A table by name. `sids` and `sid_codebooks` exist once `medley sid train` wrote them;
    /// asking for one before is an error that says so.
    pub(crate) async fn table(&self, name: TableName) -> Result<Table, StoreError> {
        match name {
            TableName::Media => return Ok(self.media.clone()),
            TableName::Segments => return Ok(self.segments.clone()),
            TableName::Failures => return Ok(self.failures.clone()),
            TableName::Runs => return Ok(self.runs.clone()),
            TableName::Sids | TableName::SidCodebooks => {}
        }
        let names = self.table_names().await?;
        if !names.iter().any(|n| n == name.name()) {
            return Err(StoreError::MissingTable {
                uri: self.uri.clone(),
                table: name.name().into(),
                hint: name.created_by(),
                found: names.join(", "),
            });
        }
        self.conn.open_table(name.name()).execute().await.map_err(|e| self.lance(e))
    }

    /// All rows of a table as Arrow record batches, with its schema.
    pub async fn scan(&self, name: TableName) -> Result<(SchemaRef, Vec<RecordBatch>), StoreError> {
        let table = self.table(name).await?;
        let schema = table.schema().await.map_err(|e| self.lance(e))?;
        let batches = self.collect(table.query(), Self::lance).await?;
        Ok((schema, batches))
    }

    /// Write every row of a table to a Parquet file at `out`, batch by batch; returns the
    /// number of rows. Written to `out` with `.partial` appended and renamed when complete,
    /// so a reader never sees half a file. Vector columns become variable-length lists
    /// (Parquet has no fixed-size list); the schema metadata (`medley.schema_version`) and the fields' (`clip`'s
    /// `medley.model`) are kept.
    pub async fn export_parquet(&self, name: TableName, out: &Path) -> Result<usize, StoreError> {
        let table = self.table(name).await?;
        let schema = parquet_schema(&*table.schema().await.map_err(|e| self.lance(e))?);
        let mut tmp = out.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = Path::new(&tmp);
        let written = self.write_parquet(&table, &schema, tmp).await;
        let renamed = written.and_then(|rows| {
            std::fs::rename(tmp, out).map_err(|source| StoreError::Io {
                uri: self.uri.clone(),
                path: out.into(),
                source,
            })?;
            Ok(rows)
        });
        if renamed.is_err() {
            // Best effort: the error that matters is the one returned.
            let _ = std::fs::remove_file(tmp);
        }
        renamed
    }

    async fn write_parquet(&self, table: &Table, schema: &SchemaRef, path: &Path) -> Result<usize, StoreError> {
        let io = |source| StoreError::Io { uri: self.uri.clone(), path: path.into(), source };
        let parquet = |source| StoreError::Parquet { path: path.into(), source };
        let file = std::fs::File::create(path).map_err(io)?;
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None).map_err(parquet)?;
        let mut stream = table.query().execute().await.map_err(|e| self.lance(e))?;
        let mut rows = 0;
        while let Some(batch) = stream.try_next().await.map_err(|e| self.lance(e))? {
            let batch = parquet_batch(schema, &batch)?;
            rows += batch.num_rows();
            writer.write(&batch).map_err(parquet)?;
        }
        writer.close().map_err(parquet)?;
        Ok(rows)
    }
}

/// Vector columns go to Parquet as variable-length lists: Parquet has no fixed-size list, and
/// readers (pyarrow) reject a null fixed-size list written with no values.
fn parquet_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::FixedSizeList(item, _) => {
                Field::new(f.name(), DataType::List(item.clone()), f.is_nullable()).with_metadata(f.metadata().clone())
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// A batch with its fixed-size-list columns as lists, matching `parquet_schema`.
fn parquet_batch(schema: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch, StoreError> {
    let columns = batch
        .columns()
        .iter()
        .map(|c| match (c.as_any().downcast_ref::<FixedSizeListArray>(), c.data_type()) {
            (Some(fixed), DataType::FixedSizeList(item, n)) => {
                let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(*n as usize, fixed.len()));
                let list = ListArray::try_new(item.clone(), offsets, fixed.values().clone(), fixed.nulls().cloned())?;
                Ok(Arc::new(list) as ArrayRef)
            }
            _ => Ok(c.clone()),
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
