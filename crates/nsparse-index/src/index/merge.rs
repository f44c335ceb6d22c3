//! The log-merge policy and merges.

use std::collections::HashMap;

use crate::error::Result;
use crate::index::Index;

impl Index {
    /// Merge until at most `max_segments` segments remain (purging deleted docs), then commit.
    pub fn force_merge(&mut self, max_segments: usize) -> Result<()> {
        self.commit()?;
        let max_segments = max_segments.max(1);
        let any_deleted = self.state.segments.iter().any(|e| e.del.count() > 0);
        if self.state.segments.len() <= max_segments && !(max_segments == 1 && any_deleted) {
            return Ok(());
        }
        let before = self.checkpoint();
        let merged = self.merge_down(max_segments);
        if merged.is_err() {
            self.roll_back(before);
        }
        merged
    }

    pub(crate) fn merge_down(&mut self, max_segments: usize) -> Result<()> {
        let mut obsolete = Vec::new();
        while self.state.segments.len() > max_segments
            || (max_segments == 1 && self.state.segments.iter().any(|e| e.del.count() > 0))
        {
            let mut order: Vec<(u32, u64)> = self
                .state
                .segments
                .iter()
                .map(|e| (e.seg.n_docs() - e.del.count(), e.id))
                .collect();
            order.sort_unstable();
            let take = (self.state.segments.len() - max_segments + 1).min(order.len());
            let ids: Vec<u64> = order[..take].iter().map(|x| x.1).collect();
            obsolete.extend(self.merge(&ids)?);
        }
        let gen = self.manifest.generation + 1;
        self.switch_manifest(gen, obsolete)
    }

    /// Merge the given segments into one; returns the files made obsolete.
    pub(crate) fn merge(&mut self, ids: &[u64]) -> Result<Vec<String>> {
        let mut recs = Vec::new();
        let mut obsolete = Vec::new();
        let mut pos = usize::MAX;
        for &sid in ids {
            let Some(i) = self.state.segments.iter().position(|e| e.id == sid) else {
                continue;
            };
            pos = pos.min(i);
            let e = &self.state.segments[i];
            let path = self.dir.join(&e.file);
            let del = e.del.clone();
            recs.extend(e.seg.records(&path, |d| !del.get(d))?);
        }
        for &sid in ids {
            if let Some(i) = self.state.segments.iter().position(|e| e.id == sid) {
                let e = self.state.segments.remove(i);
                obsolete.push(e.file);
                obsolete.extend(e.del_file);
            }
        }
        let n = recs.len();
        if n > 0 {
            self.add_segment(&recs[..], Some(pos.min(self.state.segments.len())), None)?;
        }
        self.state.cached = None;
        tracing::info!(merged = ids.len(), docs = n, "merged segments");
        Ok(obsolete)
    }

    /// Log-structured policy: merge `merge_factor` segments of the same size tier.
    pub(crate) fn merge_policy(&mut self) -> Result<Vec<String>> {
        let mf = self.opts.merge_factor.max(2);
        let base = self.opts.flush_docs.max(1) as u64;
        let mut obsolete = Vec::new();
        loop {
            let mut tiers: HashMap<u32, Vec<(u64, u64)>> = HashMap::new();
            for e in &self.state.segments {
                let live = (e.seg.n_docs() - e.del.count()) as u64;
                let mut t = 0u32;
                let mut cap = base * mf as u64;
                while live >= cap && t < 40 {
                    t += 1;
                    cap = cap.saturating_mul(mf as u64);
                }
                tiers.entry(t).or_default().push((live, e.id));
            }
            let mut cand: Vec<(u32, Vec<(u64, u64)>)> =
                tiers.into_iter().filter(|(_, v)| v.len() >= mf).collect();
            cand.sort_by_key(|c| c.0);
            let Some((_, mut segs)) = cand.into_iter().next() else {
                break;
            };
            segs.sort_unstable();
            let ids: Vec<u64> = segs[..mf].iter().map(|s| s.1).collect();
            obsolete.extend(self.merge(&ids)?);
        }
        Ok(obsolete)
    }
}
