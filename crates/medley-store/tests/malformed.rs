//! Databases medley did not write as it reads them: a table rewritten by another tool with a
//! column of another type, a column missing, nulls where medley always writes a value, an
//! older schema, another schema version. Every table's reader answers with a typed error
//! naming the table and the column (never a panic); an older `media` table is migrated.
//!
//! Each test starts from a database medley wrote (every table, a few rows each) and rewrites
//! one table through LanceDB directly, as another tool would.

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{Float32Builder, ListBuilder, StringBuilder, StructBuilder};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, RecordBatch, StringArray, UInt32Array,
};
use arrow_schema::{DataType, Field, Fields, Schema};
use futures::TryStreamExt;
use lancedb::database::CreateTableMode;
use lancedb::query::ExecutableQuery;
use medley_store::{
    CodebookRow, FAILURES_TABLE, FailureRow, ItemSegments, Label, MEDIA_TABLE, MediaRow, RUNS_TABLE, RunRow,
    SEGMENTS_TABLE, SID_CODEBOOKS_TABLE, SIDS_TABLE, SegmentRow, SidRow, Store, StoreError, TableName, VectorDims,
};

const DIMS: VectorDims = VectorDims { visual: 4, audio: 4, bridge: 4, music: 4, text: 4, clip: None, clap: None };
const VERSION: &str = "v1";

fn item(hash: &str) -> MediaRow {
    MediaRow {
        content_hash: hash.into(),
        path: format!("/media/{hash}.mp4"),
        file_name: format!("{hash}.mp4"),
        kind: "video".into(),
        container: "mp4".into(),
        duration_s: Some(4.0),
        visual: Some(vec![1.0, 0.0, 0.0, 0.0]),
        bridge: Some(vec![0.0, 1.0, 0.0, 0.0]),
        labels: vec![Label { label: "tabby".into(), score: 0.9 }],
        description: "a tabby".into(),
        models: "test:m".into(),
        ..Default::default()
    }
}

struct Db {
    _dir: tempfile::TempDir,
    uri: String,
}

/// A database as medley writes it: two items with a segment each, a failure, a run, a
/// codebook and Semantic IDs (each table written in one commit: one batch to rewrite).
async fn medley_db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().join("db").to_string_lossy().into_owned();
    let store = Store::open(&uri, DIMS).await.unwrap();
    store.upsert_media(&[item("aa1111"), item("bb2222")]).await.unwrap();
    let segments = |hash: &str| ItemSegments {
        content_hash: hash.into(),
        path: format!("/media/{hash}.mp4"),
        kind: "video".into(),
        models: "test:m".into(),
        segments: vec![SegmentRow {
            segment: 0,
            end_s: 4.0,
            visual: Some(vec![1.0, 0.0, 0.0, 0.0]),
            labels: vec![Label { label: "tabby".into(), score: 0.9 }],
            ..Default::default()
        }],
    };
    store.upsert_segments(&[segments("aa1111"), segments("bb2222")]).await.unwrap();
    store
        .record_failures(&[FailureRow {
            path: "/media/broken.mp4".into(),
            content_hash: None,
            stage: "probe".into(),
            error_kind: "corrupt".into(),
            message: "moov atom not found".into(),
            failed_at_us: 1,
        }])
        .await
        .unwrap();
    store
        .record_run(&RunRow { run_id: "r1".into(), command: "medley index".into(), ..Default::default() })
        .await
        .unwrap();
    store
        .save_codebook(&CodebookRow {
            version: VERSION.into(),
            levels: 1,
            codes: 2,
            dim: 2,
            report_json: "{}".into(),
            codebook_json: "{}".into(),
            fusion_json: "{}".into(),
            pieces_json: None,
            created_at_us: 5,
        })
        .await
        .unwrap();
    let sid = |hash: &str, suffix: u32| SidRow {
        content_hash: hash.into(),
        codebook_version: VERSION.into(),
        codes: vec![1],
        suffix,
        sid: format!("1-{suffix}"),
        ngrams: vec!["l1:1".into()],
        pieces: vec![],
        content: Some(vec![0.6, 0.8]),
    };
    store.save_sids(&[sid("aa1111", 0), sid("bb2222", 1)]).await.unwrap();
    Db { _dir: dir, uri }
}

/// One change another tool made to a table's columns.
enum Edit {
    /// Column `name` replaced by a column of another type or nullability (same position).
    Replace(&'static str, Field, ArrayRef),
    Drop(&'static str),
    /// The schema metadata's `medley.schema_version` (`None`: no metadata at all).
    Version(Option<&'static str>),
}

/// Rewrite table `name` with `edits` applied, as an overwrite of the whole table.
async fn rewrite(uri: &str, name: &str, edits: Vec<Edit>) {
    let conn = lancedb::connect(uri).execute().await.unwrap();
    let table = conn.open_table(name).execute().await.unwrap();
    let schema = table.schema().await.unwrap();
    let batches: Vec<RecordBatch> = table.query().execute().await.unwrap().try_collect().await.unwrap();
    assert_eq!(batches.len(), 1, "{name} was written in one commit");
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns: Vec<ArrayRef> = batches[0].columns().to_vec();
    let mut metadata = schema.metadata().clone();
    for edit in edits {
        match edit {
            Edit::Replace(column, field, array) => {
                let i = fields.iter().position(|f| f.name() == column).unwrap();
                (fields[i], columns[i]) = (field, array);
            }
            Edit::Drop(column) => {
                let i = fields.iter().position(|f| f.name() == column).unwrap();
                fields.remove(i);
                columns.remove(i);
            }
            Edit::Version(Some(v)) => {
                metadata.insert("medley.schema_version".into(), v.into());
            }
            Edit::Version(None) => metadata.clear(),
        }
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new_with_metadata(fields, metadata)), columns).unwrap();
    conn.create_table(name, batch).mode(CreateTableMode::Overwrite).execute().await.unwrap();
}

/// A utf8 column of two rows, the second null.
fn null_second_string(name: &'static str) -> Edit {
    Edit::Replace(name, Field::new(name, DataType::Utf8, true), Arc::new(StringArray::from(vec![Some("x"), None])))
}

/// An int64 column of `rows` rows where medley writes another type.
fn int64(name: &'static str, rows: i64) -> Edit {
    Edit::Replace(name, Field::new(name, DataType::Int64, false), Arc::new(Int64Array::from_iter_values(0..rows)))
}

/// The error is a typed refusal naming `table` and `column`, and says so in its message.
#[track_caller]
fn assert_names<T>(result: Result<T, StoreError>, table: &str, column: &str) {
    let Err(err) = result else { panic!("a malformed `{table}` table was accepted") };
    let (t, c) = match &err {
        StoreError::Column { table, column, .. }
        | StoreError::MissingColumn { table, column, .. }
        | StoreError::Null { table, column, .. } => (table.as_str(), column.as_str()),
        other => panic!("not a column error: {other:?}"),
    };
    assert_eq!((t, c), (table, column), "{err}");
    assert!(err.is_bad_database(), "{err}");
    let message = err.to_string();
    assert!(message.contains(&format!("`{column}`")) && message.contains(&format!("`{table}`")), "{message}");
}

/// Both ways of opening refuse the database, naming `table` and `column`.
async fn assert_refused(uri: &str, table: &str, column: &str) {
    assert_names(Store::open_existing(uri).await, table, column);
    assert_names(Store::open(uri, DIMS).await, table, column);
}

#[tokio::test]
async fn a_column_of_another_type_is_refused_on_open_for_every_table() {
    for (table, column) in [(MEDIA_TABLE, "models"), (SEGMENTS_TABLE, "segment"), (RUNS_TABLE, "files")] {
        let db = medley_db().await;
        let rows = if table == RUNS_TABLE { 1 } else { 2 };
        rewrite(&db.uri, table, vec![int64(column, rows)]).await;
        assert_refused(&db.uri, table, column).await;
    }
    let db = medley_db().await;
    rewrite(&db.uri, FAILURES_TABLE, vec![int64("failed_at", 1)]).await;
    assert_refused(&db.uri, FAILURES_TABLE, "failed_at").await;
}

#[tokio::test]
async fn the_type_error_says_what_was_found_and_what_medley_reads() {
    let db = medley_db().await;
    rewrite(&db.uri, MEDIA_TABLE, vec![int64("models", 2)]).await;
    let Err(StoreError::Column { expected, found, .. }) = Store::open_existing(&db.uri).await else {
        panic!("not a column error")
    };
    assert_eq!((expected.as_str(), found.as_str()), ("utf8", "int64"));
}

#[tokio::test]
async fn a_missing_column_is_refused_on_open_for_every_table() {
    for (table, column) in
        [(MEDIA_TABLE, "labels"), (SEGMENTS_TABLE, "end_s"), (FAILURES_TABLE, "stage"), (RUNS_TABLE, "run_id")]
    {
        let db = medley_db().await;
        rewrite(&db.uri, table, vec![Edit::Drop(column)]).await;
        assert_refused(&db.uri, table, column).await;
    }
}

#[tokio::test]
async fn a_vector_column_that_is_not_a_fixed_size_list_is_named() {
    let db = medley_db().await;
    let mut lists = ListBuilder::new(Float32Builder::new());
    for _ in 0..2 {
        lists.values().append_slice(&[1.0, 0.0, 0.0, 0.0]);
        lists.append(true);
    }
    let field = Field::new("visual", DataType::List(Arc::new(Field::new("item", DataType::Float32, true))), true);
    rewrite(&db.uri, MEDIA_TABLE, vec![Edit::Replace("visual", field, Arc::new(lists.finish()))]).await;
    assert_refused(&db.uri, MEDIA_TABLE, "visual").await;
    let Err(err) = Store::open_existing(&db.uri).await else { panic!("accepted") };
    assert!(err.to_string().contains("is list<float32>, medley reads it as fixed_size_list<float32>"), "{err}");
}

#[tokio::test]
async fn labels_of_another_shape_are_named() {
    let db = medley_db().await;
    let mut lists = ListBuilder::new(StringBuilder::new());
    for _ in 0..2 {
        lists.values().append_value("tabby");
        lists.append(true);
    }
    let field = Field::new("labels", DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), false);
    rewrite(&db.uri, MEDIA_TABLE, vec![Edit::Replace("labels", field, Arc::new(lists.finish()))]).await;
    assert_refused(&db.uri, MEDIA_TABLE, "labels").await;
}

#[tokio::test]
async fn nulls_where_medley_writes_values_are_named_by_the_readers() {
    let db = medley_db().await;
    rewrite(&db.uri, MEDIA_TABLE, vec![null_second_string("path"), null_second_string("models")]).await;
    let store = Store::open_existing(&db.uri).await.unwrap();
    assert_names(store.search("visual", &[1.0, 0.0, 0.0, 0.0], 5, None).await, MEDIA_TABLE, "path");
    assert_names(store.indexed().await, MEDIA_TABLE, "models");

    let db = medley_db().await;
    let start = Field::new("start_s", DataType::Float64, true);
    let starts = Arc::new(Float64Array::from(vec![Some(0.0), None]));
    rewrite(&db.uri, SEGMENTS_TABLE, vec![Edit::Replace("start_s", start, starts)]).await;
    let store = Store::open_existing(&db.uri).await.unwrap();
    assert_names(store.search_segments("visual", &[1.0, 0.0, 0.0, 0.0], 5, None).await, SEGMENTS_TABLE, "start_s");

    let db = medley_db().await;
    let message = Field::new("message", DataType::Utf8, true);
    rewrite(
        &db.uri,
        FAILURES_TABLE,
        vec![Edit::Replace("message", message, Arc::new(StringArray::from(vec![None::<&str>])))],
    )
    .await;
    let store = Store::open_existing(&db.uri).await.unwrap();
    assert_names(store.failures().await, FAILURES_TABLE, "message");
}

#[tokio::test]
async fn a_label_without_a_name_is_named() {
    let db = medley_db().await;
    let fields =
        Fields::from(vec![Field::new("label", DataType::Utf8, true), Field::new("score", DataType::Float32, true)]);
    let mut lists = ListBuilder::new(StructBuilder::from_fields(fields.clone(), 2));
    for _ in 0..2 {
        let labels = lists.values();
        labels.field_builder::<StringBuilder>(0).unwrap().append_null();
        labels.field_builder::<Float32Builder>(1).unwrap().append_value(0.5);
        labels.append(true);
        lists.append(true);
    }
    let field =
        Field::new("labels", DataType::List(Arc::new(Field::new("item", DataType::Struct(fields), true))), false);
    rewrite(&db.uri, MEDIA_TABLE, vec![Edit::Replace("labels", field, Arc::new(lists.finish()))]).await;
    let store = Store::open_existing(&db.uri).await.unwrap();
    assert_names(store.search("visual", &[1.0, 0.0, 0.0, 0.0], 5, None).await, MEDIA_TABLE, "labels");
}

#[tokio::test]
async fn semantic_id_tables_of_another_shape_are_named() {
    // `codes` as strings, `suffix` null, `sid` missing.
    let db = medley_db().await;
    let mut strings = ListBuilder::new(StringBuilder::new());
    for _ in 0..2 {
        strings.values().append_value("1");
        strings.append(true);
    }
    let codes = Field::new("codes", DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), false);
    rewrite(&db.uri, SIDS_TABLE, vec![Edit::Replace("codes", codes, Arc::new(strings.finish()))]).await;
    let store = Store::open_existing(&db.uri).await.unwrap();
    assert_names(store.sids(VERSION).await, SIDS_TABLE, "codes");

    let db = medley_db().await;
    let suffix = Field::new("suffix", DataType::UInt32, true);
    rewrite(
        &db.uri,
        SIDS_TABLE,
        vec![Edit::Replace("suffix", suffix, Arc::new(UInt32Array::from(vec![Some(0), None])))],
    )
    .await;
    let store = Store::open_existing(&db.uri).await.unwrap();
    assert_names(store.sids(VERSION).await, SIDS_TABLE, "suffix");

    let db = medley_db().await;
    rewrite(&db.uri, SIDS_TABLE, vec![Edit::Drop("sid")]).await;
    let store = Store::open_existing(&db.uri).await.unwrap();
    assert_names(store.sids(VERSION).await, SIDS_TABLE, "sid");

    let db = medley_db().await;
    rewrite(&db.uri, SID_CODEBOOKS_TABLE, vec![int64("created_at", 1)]).await;
    let store = Store::open_existing(&db.uri).await.unwrap();
    assert_names(store.latest_codebook().await, SID_CODEBOOKS_TABLE, "created_at");

    let db = medley_db().await;
    let codebook = Field::new("codebook", DataType::Utf8, true);
    rewrite(
        &db.uri,
        SID_CODEBOOKS_TABLE,
        vec![Edit::Replace("codebook", codebook, Arc::new(StringArray::from(vec![None::<&str>])))],
    )
    .await;
    let store = Store::open_existing(&db.uri).await.unwrap();
    assert_names(store.latest_codebook().await, SID_CODEBOOKS_TABLE, "codebook");
}

#[tokio::test]
async fn reading_a_column_that_is_not_a_vector_as_one_is_named() {
    let db = medley_db().await;
    let store = Store::open_existing(&db.uri).await.unwrap();
    assert_names(store.vector("description", "aa1111").await, MEDIA_TABLE, "description");
    assert_names(store.item_vectors(&["visual", "kind"]).await, MEDIA_TABLE, "kind");
}

#[tokio::test]
async fn another_schema_version_is_refused_for_every_table() {
    for table in [MEDIA_TABLE, SEGMENTS_TABLE, FAILURES_TABLE, RUNS_TABLE] {
        for (version, shown) in [(Some("0"), "0"), (None, "none")] {
            let db = medley_db().await;
            rewrite(&db.uri, table, vec![Edit::Version(version)]).await;
            for result in [Store::open_existing(&db.uri).await.err(), Store::open(&db.uri, DIMS).await.err()] {
                let Some(StoreError::SchemaVersion { table: t, found, .. }) = result else {
                    panic!("{table} version {shown}: not refused as another version")
                };
                assert_eq!((t.as_str(), found.as_str()), (table, shown));
            }
        }
    }
    let db = medley_db().await;
    rewrite(&db.uri, SIDS_TABLE, vec![Edit::Version(Some("9"))]).await;
    let store = Store::open_existing(&db.uri).await.unwrap();
    let Err(err @ StoreError::SchemaVersion { .. }) = store.sids(VERSION).await else { panic!("sids: not refused") };
    assert!(err.is_bad_database() && err.to_string().contains("`sids`"), "{err}");
}

/// The `media` columns a table written before truncated files were marked lacks.
fn without_partial() -> Vec<Edit> {
    vec![Edit::Drop("partial"), Edit::Drop("declared_duration_s")]
}

#[tokio::test]
async fn an_older_media_table_is_read_as_it_is_and_migrated_when_opened_for_writing() {
    let db = medley_db().await;
    rewrite(&db.uri, MEDIA_TABLE, without_partial()).await;

    // Readers take it as it is: nothing is written.
    let store = Store::open_existing(&db.uri).await.unwrap();
    assert_eq!(store.search("visual", &[1.0, 0.0, 0.0, 0.0], 5, None).await.unwrap().len(), 2);
    let (schema, _) = store.scan(TableName::Media).await.unwrap();
    assert!(schema.field_with_name("partial").is_err(), "a read-only open does not migrate");

    // A writer adds the columns: older rows are not partial and declare nothing.
    let store = Store::open(&db.uri, DIMS).await.unwrap();
    let truncated =
        MediaRow { partial: true, declared_duration_s: Some(30.5), duration_s: Some(6.0), ..item("cc3333") };
    store.upsert_media(&[truncated]).await.unwrap();
    let (schema, batches) = store.scan(TableName::Media).await.unwrap();
    assert_eq!(schema.metadata().get("medley.schema_version").map(String::as_str), Some("1"));
    let mut rows = Vec::new();
    for b in &batches {
        let hash = b.column_by_name("content_hash").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
        let partial = b.column_by_name("partial").unwrap().as_any().downcast_ref::<BooleanArray>().unwrap();
        let declared =
            b.column_by_name("declared_duration_s").unwrap().as_any().downcast_ref::<Float64Array>().unwrap();
        for i in 0..b.num_rows() {
            let partial = partial.is_valid(i).then(|| partial.value(i));
            rows.push((hash.value(i).to_string(), partial, declared.is_valid(i).then(|| declared.value(i))));
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        rows,
        vec![
            ("aa1111".to_string(), Some(false), None),
            ("bb2222".to_string(), Some(false), None),
            ("cc3333".to_string(), Some(true), Some(30.5)),
        ]
    );
    // Opened again, nothing is left to migrate; the search still finds every item.
    let store = Store::open(&db.uri, DIMS).await.unwrap();
    assert_eq!(store.search("visual", &[1.0, 0.0, 0.0, 0.0], 5, None).await.unwrap().len(), 3);
}

#[tokio::test]
async fn every_table_exports_to_parquet_and_missing_ones_are_named() {
    let db = medley_db().await;
    let store = Store::open_existing(&db.uri).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let expected_rows = [2, 2, 1, 1, 2, 1];
    for (table, rows) in TableName::ALL.into_iter().zip(expected_rows) {
        let out = dir.path().join(format!("{table}.parquet"));
        assert_eq!(store.export_parquet(table, &out).await.unwrap(), rows, "{table}");
        let (schema, _) = store.scan(table).await.unwrap();
        let file = std::fs::File::open(&out).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let names: Vec<&String> = reader.schema().fields().iter().map(|f| f.name()).collect();
        let expected: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
        assert_eq!(names, expected, "{table}");
        let batches: Vec<RecordBatch> = reader.build().unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), rows, "{table}");
        if table == TableName::Media {
            let visual = batches[0].column_by_name("visual").unwrap();
            let visual = visual.as_any().downcast_ref::<ListArray>().unwrap();
            assert_eq!(visual.value(0).len(), 4, "vectors become lists of their width");
        }
        assert!(!dir.path().join(format!("{table}.parquet.partial")).exists());
    }

    // Before `medley sid train`, the SID tables are not there: named, with what creates them.
    let fresh = tempfile::tempdir().unwrap();
    let uri = fresh.path().join("db").to_string_lossy().into_owned();
    let store = Store::open(&uri, DIMS).await.unwrap();
    for table in [TableName::Sids, TableName::SidCodebooks] {
        let Err(err @ StoreError::MissingTable { .. }) = store.export_parquet(table, &fresh.path().join("x")).await
        else {
            panic!("{table}: not a missing-table error")
        };
        let message = err.to_string();
        assert!(message.contains(&format!("`{table}`")) && message.contains("medley sid train"), "{message}");
        assert!(!fresh.path().join("x").exists() && !fresh.path().join("x.partial").exists());
    }
}

#[test]
fn table_names_parse_and_list_every_table() {
    for table in TableName::ALL {
        assert_eq!(table.name().parse::<TableName>().unwrap(), table);
    }
    assert_eq!(TableName::NAMES, ["media", "segments", "failures", "runs", "sids", "sid_codebooks"]);
    let err = "medias".parse::<TableName>().unwrap_err().to_string();
    assert!(err.contains("medias") && err.contains("sid_codebooks"), "{err}");
}

#[tokio::test]
async fn relative_database_paths_are_local_directories_of_any_name() {
    // `db` is what lancedb takes for LanceDB Cloud unless medley makes it absolute. The only
    // test here that changes the working directory; the others use absolute paths.
    let dir = tempfile::tempdir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    for uri in ["db", "./x/db"] {
        let store = Store::open(uri, DIMS).await.unwrap_or_else(|e| panic!("{uri}: {e}"));
        store.upsert_media(&[item("aa1111")]).await.unwrap();
        assert_eq!(store.uri(), uri, "errors name the database as given");
        let store = Store::open_existing(uri).await.unwrap();
        assert_eq!(store.count_media().await.unwrap(), 1);
        assert!(Path::new(dir.path()).join(uri).join("media.lance").is_dir(), "{uri}");
    }
}
