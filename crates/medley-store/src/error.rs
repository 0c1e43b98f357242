use std::path::PathBuf;

use arrow_schema::ArrowError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {uri}: {source}")]
    Lance { uri: String, source: lancedb::Error },
    #[error(
        "database {uri}: table `{table}` was written with {found}, this run needs {expected}; use another --db or the same models"
    )]
    SchemaMismatch { uri: String, table: String, found: String, expected: String },
    #[error(
        "database {uri}: table `{table}` has schema version {found}, this medley writes version {expected}; open it with a matching medley or index into a new --db"
    )]
    SchemaVersion { uri: String, table: String, found: String, expected: String },
    #[error(
        "database {uri}: table `{table}` has no column `{column}`; it was written by another tool or schema version, index into a new --db"
    )]
    MissingColumn { uri: String, table: String, column: String },
    #[error(
        "database {uri}: column `{column}` of table `{table}` is {found}, medley reads it as {expected}; it was written by another tool or schema version, index into a new --db"
    )]
    Column { uri: String, table: String, column: String, expected: String, found: String },
    #[error(
        "database {uri}: column `{column}` of table `{table}` holds a null where medley always writes a value; it was written by another tool"
    )]
    Null { uri: String, table: String, column: String },
    #[error("database {uri} has no table `{table}`{hint}; its tables: {found}")]
    MissingTable { uri: String, table: String, hint: &'static str, found: String },
    #[error("database {uri}: {message}")]
    Query { uri: String, message: String },
    #[error("building rows: {0}")]
    Arrow(#[from] ArrowError),
    #[error("database {uri}: {path}: {source}")]
    Io { uri: String, path: PathBuf, source: std::io::Error },
    #[error("exporting to {path}: {source}")]
    Parquet { path: PathBuf, source: parquet::errors::ParquetError },
}

impl StoreError {
    /// A commit that lost a race with another writer's incompatible commit (for example a
    /// concurrent creation of the same table, committed as an empty overwrite). Nothing of it
    /// was written; medley's writes are keyed merges and appends, so retrying is safe.
    pub fn is_commit_race(&self) -> bool {
        match self {
            StoreError::Lance { source: lancedb::Error::Lance { .. }, .. } => {
                let message = self.to_string();
                message.contains("Incompatible transaction") || message.contains("ommit conflict")
            }
            _ => false,
        }
    }

    /// The database is not one this medley can use as it is (written by another tool, schema
    /// version or models, or lacking a table the command needs): the user's to fix, not a
    /// failure of the run.
    pub fn is_bad_database(&self) -> bool {
        matches!(
            self,
            StoreError::SchemaMismatch { .. }
                | StoreError::SchemaVersion { .. }
                | StoreError::MissingColumn { .. }
                | StoreError::Column { .. }
                | StoreError::Null { .. }
                | StoreError::MissingTable { .. }
        )
    }
}
