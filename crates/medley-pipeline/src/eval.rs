//! Text-to-item retrieval quality over labelled queries (recall@1/5/10 and median rank),
//! shared by `medley eval` (a TSV file) and `POST /v1/eval` (a JSON body).

use std::path::Path;

use medley_store::{SearchHit, Store};
use serde::{Deserialize, Serialize};

use crate::query::{QueryEncoders, QueryError, search_spaces};

/// One labelled query: the text, and the item it should find.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalQuery {
    pub query: String,
    /// The indexed file's name or path, or the item's content hash (or a prefix of at least
    /// 6 hex characters).
    pub target: String,
}

/// What `medley eval --json` prints and `POST /v1/eval` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub n: usize,
    pub recall_at_1: f64,
    pub recall_at_5: f64,
    pub recall_at_10: f64,
    pub median_rank: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{origin}: the first line must be the header `query<TAB>target`")]
    Header { origin: String },
    #[error("{origin} line {line}: expected query<TAB>target")]
    Line { origin: String, line: usize },
    #[error("{origin} query {index}: the query and the target must not be empty")]
    Blank { origin: String, index: usize },
    #[error("{origin}: no queries")]
    Empty { origin: String },
    #[error(transparent)]
    Query(#[from] QueryError),
}

impl EvalError {
    /// Problems with the queries themselves (the caller's input), as opposed to the database
    /// or the model failing.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, Self::Query(_))
    }
}

/// Parse a TSV with the header line `query<TAB>target` (blank lines skipped); `origin` (the
/// file's name) is named in errors.
pub fn parse_eval_tsv(text: &str, origin: &str) -> Result<Vec<EvalQuery>, EvalError> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    if lines.next().map(|(_, h)| h.trim().to_lowercase()).as_deref() != Some("query\ttarget") {
        return Err(EvalError::Header { origin: origin.into() });
    }
    let queries = lines
        .map(|(i, l)| {
            l.split_once('\t')
                .map(|(q, t)| EvalQuery { query: q.trim().to_string(), target: t.trim().to_string() })
                .ok_or_else(|| EvalError::Line { origin: origin.into(), line: i + 1 })
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_queries(&queries, origin)?;
    Ok(queries)
}

/// Refuse an empty list, or a query or target that is blank (it could never be found).
pub fn check_queries(queries: &[EvalQuery], origin: &str) -> Result<(), EvalError> {
    if queries.is_empty() {
        return Err(EvalError::Empty { origin: origin.into() });
    }
    if let Some(index) = queries.iter().position(|q| q.query.trim().is_empty() || q.target.trim().is_empty()) {
        return Err(EvalError::Blank { origin: origin.into(), index: index + 1 });
    }
    Ok(())
}

/// Rank every item for each query by its `semantic` vector (as `search` does) and report where each target came.
/// A target that is not in the ranking counts as ranked after everything.
pub async fn evaluate(
    store: &Store,
    encoders: &QueryEncoders,
    queries: &[EvalQuery],
    origin: &str,
) -> Result<EvalReport, EvalError> {
    check_queries(queries, origin)?;
    let all = store.count_media().await.map_err(QueryError::from)?.max(1);
    let mut ranks = Vec::with_capacity(queries.len());
    for q in queries {
        let (semantic, dual) = encoders.encode(&q.query)?;
        let hits = search_spaces(store, &semantic, &dual, all, None).await?;
        let target = q.target.trim();
        ranks.push(hits.iter().position(|h| is_target(h, target)).map_or(all + 1, |p| p + 1));
    }
    Ok(report(&ranks))
}

/// Whether a hit is the item `target` names: its path, its file name, or its content hash
/// (or a prefix of at least 6 hex characters).
fn is_target(hit: &SearchHit, target: &str) -> bool {
    hit.path == target
        || Path::new(&hit.path).file_name().is_some_and(|n| n.to_string_lossy() == target)
        || (target.len() >= 6
            && target.chars().all(|c| c.is_ascii_hexdigit())
            && hit.content_hash.starts_with(&target.to_ascii_lowercase()))
}

/// Recall at 1/5/10 and the median of 1-based ranks (at least one).
fn report(ranks: &[usize]) -> EvalReport {
    let n = ranks.len().max(1);
    let recall = |k: usize| ranks.iter().filter(|&&r| r <= k).count() as f64 / n as f64;
    let mut sorted = ranks.to_vec();
    sorted.sort_unstable();
    let mid = sorted.len() / 2;
    let median = match (sorted.get(mid.wrapping_sub(1)), sorted.get(mid)) {
        (Some(&a), Some(&b)) if sorted.len().is_multiple_of(2) => (a + b) as f64 / 2.0,
        (_, Some(&b)) => b as f64,
        _ => 0.0,
    };
    EvalReport {
        n: ranks.len(),
        recall_at_1: recall(1),
        recall_at_5: recall(5),
        recall_at_10: recall(10),
        median_rank: median,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_needs_the_header_and_tabs() -> Result<(), EvalError> {
        let q = parse_eval_tsv("query\ttarget\n\na cat\tcat.png\n a dog \t dog.mp4 \n", "q.tsv")?;
        assert_eq!(
            q,
            [
                EvalQuery { query: "a cat".into(), target: "cat.png".into() },
                EvalQuery { query: "a dog".into(), target: "dog.mp4".into() }
            ]
        );
        let message = |text: &str| parse_eval_tsv(text, "q.tsv").err().map(|e| (e.is_bad_input(), e.to_string()));
        assert_eq!(
            message("wrong header\n"),
            Some((true, "q.tsv: the first line must be the header `query<TAB>target`".into()))
        );
        assert_eq!(message("query\ttarget\na cat\n"), Some((true, "q.tsv line 2: expected query<TAB>target".into())));
        assert_eq!(message("query\ttarget\n"), Some((true, "q.tsv: no queries".into())));
        assert_eq!(
            message("query\ttarget\n\tx.png\n"),
            Some((true, "q.tsv query 1: the query and the target must not be empty".into()))
        );
        Ok(())
    }

    #[test]
    fn recall_and_median() {
        let r = report(&[1, 3, 7, 20]);
        assert_eq!((r.n, r.recall_at_1, r.recall_at_5, r.recall_at_10), (4, 0.25, 0.5, 0.75));
        assert_eq!(r.median_rank, 5.0);
        assert_eq!(report(&[2, 1, 9]).median_rank, 2.0);
        assert_eq!(report(&[]).n, 0);
    }

    #[test]
    fn targets_match_by_path_name_or_hash() {
        let hit = SearchHit {
            content_hash: "abcdef0123".into(),
            path: "/m/photos/cat.png".into(),
            kind: "image".into(),
            duration_s: None,
            score: 1.0,
            labels: Vec::new(),
            span: None,
            caption: None,
        };
        assert!(is_target(&hit, "/m/photos/cat.png"));
        assert!(is_target(&hit, "cat.png"));
        assert!(is_target(&hit, "ABCDEF"));
        assert!(!is_target(&hit, "abcde"), "prefixes shorter than 6 are not ids");
        assert!(!is_target(&hit, "dog.png"));
    }
}
