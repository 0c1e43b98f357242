//! `medley sid assign` and `medley sid stats` over the latest codebook, as library calls so
//! any front end (the CLI, the server) can run them.

use medley_fuse::{SidStats, sid_stats, unique_suffixes};
use medley_store::Store;

use crate::sids::{SidAssigner, SidError};

/// What [`assign_missing_sids`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SidAssignment {
    /// Items given an ID now.
    pub assigned: usize,
    /// Items in the table.
    pub items: usize,
    pub codebook_version: String,
}

/// Give every item without an ID under the latest codebook its ID (items indexed before the
/// codebook, or by a run that stopped between rows and IDs). `None`: the table has no codebook.
pub async fn assign_missing_sids(store: &Store) -> Result<Option<SidAssignment>, SidError> {
    let Some(mut assigner) = SidAssigner::load(store).await? else { return Ok(None) };
    let items = store.item_vectors(&assigner.columns()).await?;
    let rows = assigner.assign(&items)?;
    store.save_sids(&rows).await?;
    Ok(Some(SidAssignment {
        assigned: rows.len(),
        items: items.len(),
        codebook_version: assigner.version().to_string(),
    }))
}

/// Reconstruction error, code usage, collisions and neighbour agreement (over `nn_sample`
/// items) of the latest codebook on the items' content vectors, with the codebook's version.
/// `None`: the table has no codebook.
pub async fn sid_report(store: &Store, nn_sample: usize) -> Result<Option<(String, SidStats)>, SidError> {
    let Some(assigner) = SidAssigner::load(store).await? else { return Ok(None) };
    let (_, flat) = assigner.content_vectors(&store.item_vectors(&assigner.columns()).await?);
    let codebook = assigner.codebook();
    let codes = codebook.assign(&flat)?;
    let suffixes = unique_suffixes(&codes);
    let stats = sid_stats(codebook, &flat, &codes, &suffixes, nn_sample, 0)?;
    Ok(Some((codebook.version.clone(), stats)))
}
