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

#[cfg(test)]
mod tests {
    use medley_fuse::TrainConfig;
    use medley_store::{MediaRow, VectorDims};

    use super::*;
    use crate::config::FusionConfig;
    use crate::sids::train_sids;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const DIMS: VectorDims = VectorDims { visual: 8, audio: 4, bridge: 4, music: 4, text: 4, clip: None, clap: None };

    /// An image row with a visual vector that differs from item to item.
    fn row(i: usize) -> MediaRow {
        let visual = (0..DIMS.visual).map(|j| ((i * 7 + j * 3) % 11) as f32 - 5.0 + i as f32 * 0.01).collect();
        MediaRow {
            content_hash: format!("{i:064x}"),
            path: format!("/media/{i}.png"),
            file_name: format!("{i}.png"),
            kind: "image".into(),
            container: "png".into(),
            visual: Some(visual),
            models: "test".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn items_without_an_id_get_one_once() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("db").display().to_string(), DIMS).await?;
        assert!(assign_missing_sids(&store).await?.is_none(), "no codebook yet");
        assert!(sid_report(&store, 10).await?.is_none());
        store.upsert_media(&(0..20).map(row).collect::<Vec<_>>()).await?;
        let fusion = FusionConfig { weights: [("visual".to_string(), 1.0)].into(), dim: 0, form: Default::default() };
        let trained = train_sids(&store, &fusion, &TrainConfig::new(2, 4), 64).await?;
        assert_eq!(trained.items, 20);

        // Two items indexed after the codebook (as by a run without it) get their IDs, once.
        store.upsert_media(&[row(20), row(21)]).await?;
        let done = assign_missing_sids(&store).await?.ok_or("no codebook")?;
        assert_eq!((done.assigned, done.items), (2, 22));
        assert_eq!(done.codebook_version, trained.codebook.version);
        let again = assign_missing_sids(&store).await?.ok_or("no codebook")?;
        assert_eq!((again.assigned, again.items), (0, 22));
        assert_eq!(store.sids(&done.codebook_version).await?.len(), 22);

        let (version, stats) = sid_report(&store, 10).await?.ok_or("no codebook")?;
        assert_eq!(version, done.codebook_version);
        assert!(serde_json::to_value(&stats)?.is_object());
        Ok(())
    }
}
