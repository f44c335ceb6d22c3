//! The immutable view a searcher reads: segments with their deletions at one moment.

use std::path::PathBuf;
use std::sync::Arc;

use crate::schema::Bm25Params;
use crate::search::request::DocFilter;
use crate::segment::deletes::Bitset;
use crate::segment::Segment;

#[derive(Clone)]
pub(crate) struct SnapInfo {
    pub model: String,
    pub metadata: serde_json::Value,
    /// Query ids must be below this.
    pub vocab: u32,
    /// The feature dictionary of an open vocabulary (shared with the writer, which only
    /// appends: names added after the snapshot resolve to ids it has no postings for).
    pub features: Option<Arc<crate::features::FeatureDictionary>>,
    pub bm25: Bm25Params,
    /// Bound-column budget per segment, in bytes (`u64::MAX`: no cap).
    pub dense_max_bytes: u64,
}

pub(crate) struct SnapSeg {
    pub seg: Arc<Segment>,
    pub del: Option<Arc<Bitset>>,
    pub path: PathBuf,
}

impl SnapSeg {
    #[inline]
    pub(crate) fn deleted(&self, d: u32) -> bool {
        self.del.as_ref().is_some_and(|b| b.get(d))
    }

    /// Whether `d` may be a hit: live and accepted by the filter. Only such
    /// documents enter a top-k heap, so pruning thresholds rise only with them.
    #[inline]
    pub(crate) fn accepts(&self, d: u32, filter: Option<DocFilter<'_>>) -> bool {
        !self.deleted(d) && filter.is_none_or(|f| f(&self.seg.ids()[d as usize]))
    }
}

pub(crate) struct Snapshot {
    pub segs: Vec<SnapSeg>,
    pub info: Arc<SnapInfo>,
}
