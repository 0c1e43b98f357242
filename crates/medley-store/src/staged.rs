//! Many writers, one committer (Lance's two-step write): workers write rows as data files that
//! no table version references yet ([`Staged`], serialisable, so it travels as JSON), and one
//! process commits them, one Append per table, tagged with the run and a sequence number so a
//! repeated commit is a no-op. Files of attempts that are never committed are never read; they
//! go at cleanup (`medley optimize`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use futures::{StreamExt, TryStreamExt, stream};
use lance::dataset::transaction::{Operation, Transaction, TransactionBuilder};
use lance::dataset::{CommitBuilder, Dataset, InsertBuilder, WriteMode, WriteParams};
use lance::table::format::Fragment;
use lancedb::Table;
use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::open::Store;
use crate::query::sql_string;
use crate::rows::{FailureRow, MediaRow, conform, failure_batch, media_batch};
use crate::schema::{FAILURES_TABLE, MEDIA_TABLE, SEGMENTS_TABLE, failures_schema, media_schema};
use crate::segments::{ItemSegments, segments_batch, segments_schema};

/// Transaction properties that say which commit of which run a table version is.
const RUN_KEY: &str = "medley.run";
const SEQ_KEY: &str = "medley.seq";
/// On `media` only: the tasks whose rows the commit holds (what a resumed run may skip).
const TASKS_KEY: &str = "medley.tasks";
/// Transactions read at once while looking for a commit.
const READ_AHEAD: usize = 8;

/// Rows written as data files but not committed: what a worker hands to the committer.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Staged {
    media: Vec<Fragment>,
    segments: Vec<Fragment>,
    failures: Vec<Fragment>,
    /// Content hash and path of each staged `media` row (duplicates are found by them).
    items: Vec<(String, String)>,
    /// Paths of the staged `failures` rows (their older rows are replaced).
    failed_paths: Vec<String>,
}

impl Staged {
    pub fn merge(&mut self, other: Staged) {
        self.media.extend(other.media);
        self.segments.extend(other.segments);
        self.failures.extend(other.failures);
        self.items.extend(other.items);
        self.failed_paths.extend(other.failed_paths);
    }

    /// Staged `media` rows.
    pub fn items(&self) -> usize {
        self.items.len()
    }

    /// Staged `failures` rows.
    pub fn failures(&self) -> usize {
        self.failed_paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.media.is_empty() && self.segments.is_empty() && self.failures.is_empty()
    }
}

/// Which commit this is: the run, its sequence number, and the tasks it holds.
#[derive(Debug, Clone)]
pub struct CommitTag {
    pub run: String,
    pub seq: u64,
    pub tasks: Vec<String>,
}

/// What a commit did.
#[derive(Debug, Clone, Serialize)]
pub struct CommitOutcome {
    /// The run's commit with this sequence number was already in every table: nothing was written.
    pub already_committed: bool,
    pub media_rows: usize,
    pub failure_rows: usize,
    /// Rows of files whose content another path of the same commit or an earlier one already
    /// brought in (copies in two tasks): removed, so each content hash has one item.
    pub duplicates_removed: usize,
    /// The tables' versions after the commit.
    pub versions: BTreeMap<String, u64>,
}

/// What a run has committed so far, and where the tables stand.
#[derive(Debug, Clone, Serialize)]
pub struct RunCommits {
    pub run: String,
    pub seqs: Vec<u64>,
    pub tasks: Vec<String>,
    /// Each table's latest version now: later commits of the run look only at versions after it.
    pub versions: BTreeMap<String, u64>,
}

impl Store {
    /// Write rows as data files of their tables without committing them; `into` gathers them.
    pub async fn stage(
        &self,
        rows: &[MediaRow],
        segments: &[ItemSegments],
        failures: &[FailureRow],
        into: &mut Staged,
    ) -> Result<(), StoreError> {
        if segments.iter().any(|i| !i.segments.is_empty()) {
            let batch = segments_batch(segments_schema(&self.dims), segments, &self.dims)?;
            into.segments.extend(self.write_files(&self.segments, batch).await?);
        }
        if !rows.is_empty() {
            let batch = media_batch(media_schema(&self.dims), rows, &self.dims)?;
            into.media.extend(self.write_files(&self.media, batch).await?);
            into.items.extend(rows.iter().map(|r| (r.content_hash.clone(), r.path.clone())));
        }
        if !failures.is_empty() {
            let batch = failure_batch(failures_schema(), failures)?;
            into.failures.extend(self.write_files(&self.failures, batch).await?);
            into.failed_paths.extend(failures.iter().map(|f| f.path.clone()));
        }
        Ok(())
    }

    /// Write `batch` as new data files of `table`, in the table's column order (a migrated
    /// table has its added columns last; columns the batch lacks are written as nulls).
    async fn write_files(&self, table: &Table, batch: RecordBatch) -> Result<Vec<Fragment>, StoreError> {
        let dataset = self.dataset(table).await?;
        let batch = conform(&batch, Arc::new(Schema::from(dataset.schema())))?;
        let params = WriteParams { mode: WriteMode::Append, ..Default::default() };
        let transaction = InsertBuilder::new(dataset)
            .with_params(&params)
            .execute_uncommitted(vec![batch])
            .await
            .map_err(|e| self.lance(e.into()))?;
        match transaction.operation {
            Operation::Append { fragments } => Ok(fragments),
            other => Err(StoreError::Query {
                uri: self.uri.clone(),
                message: format!(
                    "table `{}`: a staged write became {} instead of an append",
                    table.name(),
                    other.name()
                ),
            }),
        }
    }

    /// Commit staged rows: `segments`, then `failures`, then `media` (an item's `media` row
    /// marks it done, so it goes last), each one Append tagged with `tag`. A table that already
    /// has this run's commit `tag.seq` (looking at versions after `since`, or at all) is left
    /// alone, so running a commit again, whole or after it stopped half way, adds nothing.
    /// Before appending, rows the new ones replace are deleted: segments of the staged items
    /// (left by a commit that stopped before its `media` rows) and older failures of the same
    /// paths or of files now indexed. After, copies of one content at two paths keep one item.
    pub async fn commit_staged(
        &self,
        staged: &Staged,
        tag: &CommitTag,
        since: &BTreeMap<String, u64>,
    ) -> Result<CommitOutcome, StoreError> {
        let hashes = quoted(staged.items.iter().map(|(h, _)| h.as_str()));
        let mut already = true;
        let stale_segments = (!hashes.is_empty()).then(|| format!("content_hash IN ({hashes})"));
        already &= !self.commit_table(&self.segments, &staged.segments, stale_segments, tag, since, false).await?;
        let paths = quoted(staged.failed_paths.iter().map(String::as_str));
        let stale_failures = match (paths.is_empty(), hashes.is_empty()) {
            (true, true) => None,
            (false, true) => Some(format!("path IN ({paths})")),
            (true, false) => Some(format!("content_hash IN ({hashes})")),
            (false, false) => Some(format!("path IN ({paths}) OR content_hash IN ({hashes})")),
        };
        already &= !self.commit_table(&self.failures, &staged.failures, stale_failures, tag, since, false).await?;
        // Always appended, even without rows: `media` holds the record that the tasks are done.
        already &= !self.commit_table(&self.media, &staged.media, None, tag, since, true).await?;
        let duplicates_removed = self.remove_copies(&staged.items).await?;
        let mut versions = BTreeMap::new();
        for (name, table) in
            [(MEDIA_TABLE, &self.media), (SEGMENTS_TABLE, &self.segments), (FAILURES_TABLE, &self.failures)]
        {
            versions.insert(name.to_string(), table.version().await.map_err(|e| self.lance(e))?);
        }
        Ok(CommitOutcome {
            already_committed: already,
            media_rows: staged.items.len(),
            failure_rows: staged.failed_paths.len(),
            duplicates_removed,
            versions,
        })
    }

    /// One table's part of a commit; false when the table already had it (or there was
    /// nothing to append and `always` is not set).
    async fn commit_table(
        &self,
        table: &Table,
        fragments: &[Fragment],
        stale: Option<String>,
        tag: &CommitTag,
        since: &BTreeMap<String, u64>,
        always: bool,
    ) -> Result<bool, StoreError> {
        if fragments.is_empty() && !always {
            return Ok(false);
        }
        table.checkout_latest().await.map_err(|e| self.lance(e))?;
        let dataset = self.dataset(table).await?;
        let after = since.get(table.name()).copied().unwrap_or(0);
        if find_commit(&dataset, after, |props| is_commit(props, &tag.run, tag.seq))
            .await
            .map_err(|e| self.lance(e.into()))?
            .is_some()
        {
            return Ok(false);
        }
        if let Some(predicate) = stale {
            self.delete_matching(table, &predicate).await?;
        }
        table.checkout_latest().await.map_err(|e| self.lance(e))?;
        let dataset = self.dataset(table).await?;
        let mut props =
            HashMap::from([(RUN_KEY.to_string(), tag.run.clone()), (SEQ_KEY.to_string(), tag.seq.to_string())]);
        if table.name() == MEDIA_TABLE {
            props.insert(TASKS_KEY.into(), tag.tasks.join(","));
        }
        let transaction =
            TransactionBuilder::new(dataset.version().version, Operation::Append { fragments: fragments.to_vec() })
                .transaction_properties(Some(Arc::new(props)))
                .build();
        let committed = CommitBuilder::new(dataset).execute(transaction).await.map_err(|e| self.lance(e.into()))?;
        drop(committed);
        table.checkout_latest().await.map_err(|e| self.lance(e))?;
        Ok(true)
    }

    /// The commits of `run` found in `media` (where a commit's last part lands), and every
    /// table's latest version.
    pub async fn run_commits(&self, run: &str) -> Result<RunCommits, StoreError> {
        self.refresh().await?;
        let dataset = self.dataset(&self.media).await?;
        let mut found = RunCommits { run: run.into(), seqs: Vec::new(), tasks: Vec::new(), versions: BTreeMap::new() };
        let transactions = transactions_after(&dataset, 0).await.map_err(|e| self.lance(e.into()))?;
        for props in transactions.iter().filter_map(|t| t.transaction_properties.as_deref()) {
            if props.get(RUN_KEY).map(String::as_str) == Some(run) {
                found.seqs.extend(props.get(SEQ_KEY).and_then(|s| s.parse::<u64>().ok()));
                found.tasks.extend(
                    props
                        .get(TASKS_KEY)
                        .into_iter()
                        .flat_map(|t| t.split(','))
                        .filter(|t| !t.is_empty())
                        .map(String::from),
                );
            }
        }
        found.seqs.sort_unstable();
        found.tasks.sort_unstable();
        for (name, table) in
            [(MEDIA_TABLE, &self.media), (SEGMENTS_TABLE, &self.segments), (FAILURES_TABLE, &self.failures)]
        {
            found.versions.insert(name.to_string(), table.version().await.map_err(|e| self.lance(e))?);
        }
        Ok(found)
    }

    /// Where one content hash came in at several paths (copies of a file in two tasks), keep
    /// the item an earlier commit wrote, else the first path, and delete the others' rows.
    async fn remove_copies(&self, items: &[(String, String)]) -> Result<usize, StoreError> {
        if items.is_empty() {
            return Ok(0);
        }
        let hashes = quoted(items.iter().map(|(h, _)| h.as_str()));
        let found = self.paths_of(&format!("content_hash IN ({hashes})")).await?;
        let staged: HashSet<&(String, String)> = items.iter().collect();
        let mut by_hash: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (hash, path) in &found {
            by_hash.entry(hash).or_default().push(path);
        }
        let mut removed = Vec::new();
        for (hash, mut paths) in by_hash {
            paths.sort_unstable();
            paths.dedup();
            if paths.len() < 2 {
                continue;
            }
            // An item not from this commit came first; else the first path in order.
            let keep = paths
                .iter()
                .copied()
                .find(|p| !staged.contains(&(hash.to_string(), p.to_string())))
                .unwrap_or(paths[0]);
            removed.extend(paths.into_iter().filter(|p| *p != keep).map(|p| (hash, p)));
        }
        if removed.is_empty() {
            return Ok(0);
        }
        let predicate = removed
            .iter()
            .map(|(h, p)| format!("(content_hash = {} AND path = {})", sql_string(h), sql_string(p)))
            .collect::<Vec<_>>()
            .join(" OR ");
        self.delete_matching(&self.segments, &predicate).await?;
        self.delete_matching(&self.media, &predicate).await?;
        Ok(removed.len())
    }

    /// The lance dataset behind a table, at the version the table is on.
    async fn dataset(&self, table: &Table) -> Result<Arc<Dataset>, StoreError> {
        let wrapper = table.dataset().ok_or_else(|| StoreError::Query {
            uri: self.uri.clone(),
            message: format!("table `{}` is not a local or object-store Lance table", table.name()),
        })?;
        wrapper.get().await.map_err(|e| self.lance(e))
    }
}

/// The transaction of the first version after `after` whose properties satisfy `wanted`.
async fn find_commit(
    dataset: &Dataset,
    after: u64,
    wanted: impl Fn(&HashMap<String, String>) -> bool,
) -> lance::Result<Option<Transaction>> {
    Ok(transactions_after(dataset, after)
        .await?
        .into_iter()
        .find(|t| t.transaction_properties.as_deref().is_some_and(&wanted)))
}

/// The transactions of the versions after `after` that still exist, newest first.
async fn transactions_after(dataset: &Dataset, after: u64) -> lance::Result<Vec<Transaction>> {
    let mut versions: Vec<u64> =
        dataset.version_refs().await?.into_iter().map(|v| v.version).filter(|v| *v > after).collect();
    versions.reverse();
    let read: Vec<Option<Transaction>> = stream::iter(versions)
        .map(|v| dataset.read_transaction_by_version(v))
        .buffered(READ_AHEAD)
        .try_collect()
        .await?;
    Ok(read.into_iter().flatten().collect())
}

fn is_commit(props: &HashMap<String, String>, run: &str, seq: u64) -> bool {
    props.get(RUN_KEY).map(String::as_str) == Some(run)
        && props.get(SEQ_KEY).and_then(|s| s.parse::<u64>().ok()) == Some(seq)
}

/// Distinct strings as a SQL list body (`'a','b'`); empty when there are none.
fn quoted<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let distinct: std::collections::BTreeSet<&str> = values.collect();
    distinct.into_iter().map(sql_string).collect::<Vec<_>>().join(",")
}
