//! A `sids` table written before IDs carried pieces and content vectors opens, keeps its rows,
//! and takes new rows with the new columns (medley adds them as nulls on open).

use std::sync::Arc;

use arrow_array::builder::{Int32Builder, ListBuilder, StringBuilder};
use arrow_array::{RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use medley_store::{SIDS_TABLE, SidRow, Store, VectorDims};

fn old_sids_schema() -> Arc<Schema> {
    let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
    let meta = [("medley.schema_version".to_string(), "1".to_string())].into_iter().collect();
    Arc::new(Schema::new_with_metadata(
        vec![
            Field::new("content_hash", DataType::Utf8, false),
            Field::new("codebook_version", DataType::Utf8, false),
            Field::new("codes", list(DataType::Int32), false),
            Field::new("suffix", DataType::UInt32, false),
            Field::new("sid", DataType::Utf8, false),
            Field::new("ngrams", list(DataType::Utf8), false),
        ],
        meta,
    ))
}

#[tokio::test]
async fn old_sids_table_gains_pieces_and_content() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().join("db").to_string_lossy().into_owned();
    let dims = VectorDims { visual: 4, audio: 4, bridge: 4, music: 4, text: 4, clip: None, clap: None };
    let store = Store::open(&uri, dims).await.unwrap();

    // One row as an older medley wrote it.
    let schema = old_sids_schema();
    let mut codes = ListBuilder::new(Int32Builder::new());
    codes.values().append_slice(&[3, 1]);
    codes.append(true);
    let mut ngrams = ListBuilder::new(StringBuilder::new());
    ngrams.values().append_value("l1:3");
    ngrams.append(true);
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["old"])),
            Arc::new(StringArray::from(vec!["v1"])),
            Arc::new(codes.finish()),
            Arc::new(UInt32Array::from(vec![0])),
            Arc::new(StringArray::from(vec!["3-1-0"])),
            Arc::new(ngrams.finish()),
        ],
    )
    .unwrap();
    let conn = lancedb::connect(&uri).execute().await.unwrap();
    conn.create_table(SIDS_TABLE, batch).execute().await.unwrap();

    let old = store.sids("v1").await.unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!((old[0].sid.as_str(), old[0].pieces.len()), ("3-1-0", 0));

    let new = SidRow {
        content_hash: "new".into(),
        codebook_version: "v1".into(),
        codes: vec![3, 1],
        suffix: 1,
        sid: "3-1-1".into(),
        ngrams: vec!["l1:3".into(), "l1l2:3-1".into()],
        pieces: vec!["l1:3-1".into()],
        content: Some(vec![0.6, 0.8]),
    };
    store.save_sids(&[new]).await.unwrap();
    let rows = store.sids("v1").await.unwrap();
    assert_eq!(rows.len(), 2, "the old row is kept");
    let fresh = rows.iter().find(|r| r.content_hash == "new").unwrap();
    assert_eq!(fresh.pieces, vec!["l1:3-1".to_string()]);
    let table = conn.open_table(SIDS_TABLE).execute().await.unwrap();
    let found = table.schema().await.unwrap();
    assert!(found.field_with_name("content").is_ok() && found.field_with_name("pieces").is_ok(), "{found:?}");
}
