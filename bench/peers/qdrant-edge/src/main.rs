//! Qdrant Edge on the peer-benchmark files (see `bench/peers/README.md` for the format).
//!
//! `peers-qdrant-edge DATA_DIR WORK_DIR OUT_JSON RUN_IDS` builds a shard with one sparse
//! vector (default params: in-RAM inverted index after `optimize()`), times single-threaded
//! queries, QPS on 2 threads, and writes the top-10 row ids per query to RUN_IDS (u32 LE,
//! `u32::MAX` pads) for the shared recall scorer.

use std::collections::HashMap;
use std::error::Error;
use std::path::Path;
use std::time::Instant;

use qdrant_edge::external::serde_json::json;
use qdrant_edge::{
    EdgeConfig, EdgeShard, EdgeSparseVectorParams, NamedQuery, PointId, PointInsertOperations,
    PointOperations, PointStruct, QueryEnum, QueryRequest, ScoringQuery, SparseVector,
    UpdateOperation, VectorInternal, Vectors, WithPayloadInterface, WithVector,
};

const NAME: &str = "splade";
const K: usize = 10;

/// One CSR matrix of the shared format.
struct Csr {
    indptr: Vec<u64>,
    indices: Vec<u32>,
    values: Vec<f32>,
}

impl Csr {
    fn read(dir: &Path, stem: &str) -> Result<Csr, Box<dyn Error>> {
        let bytes = |ext: &str| std::fs::read(dir.join(format!("{stem}.{ext}")));
        let indptr = bytes("indptr")?
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let indices = bytes("indices")?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let values = bytes("values")?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        Ok(Csr {
            indptr,
            indices,
            values,
        })
    }
    fn rows(&self) -> usize {
        self.indptr.len() - 1
    }
    fn row(&self, i: usize) -> SparseVector {
        let (a, b) = (self.indptr[i] as usize, self.indptr[i + 1] as usize);
        SparseVector {
            indices: self.indices[a..b].to_vec(),
            values: self.values[a..b].to_vec(),
        }
    }
}

fn request(q: SparseVector) -> QueryRequest {
    QueryRequest {
        prefetches: vec![],
        query: Some(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery {
            query: VectorInternal::from(q),
            using: Some(NAME.to_string()),
        }))),
        filter: None,
        score_threshold: None,
        limit: K,
        offset: 0,
        params: None,
        with_vector: WithVector::Bool(false),
        with_payload: WithPayloadInterface::Bool(false),
    }
}

fn top_ids(shard: &EdgeShard, q: &SparseVector) -> Result<Vec<u32>, Box<dyn Error>> {
    let hits = shard.query(request(q.clone()))?;
    Ok(hits
        .iter()
        .map(|h| match h.id {
            PointId::NumId(n) => n as u32,
            _ => u32::MAX,
        })
        .collect())
}

fn dir_bytes(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        return Err("usage: peers-qdrant-edge DATA_DIR WORK_DIR OUT_JSON RUN_IDS".into());
    }
    let (data, work) = (Path::new(&args[1]), Path::new(&args[2]));
    let docs = Csr::read(data, "docs")?;
    let queries: Vec<SparseVector> = {
        let q = Csr::read(data, "queries")?;
        (0..q.rows()).map(|i| q.row(i)).collect()
    };
    if work.exists() {
        std::fs::remove_dir_all(work)?;
    }
    std::fs::create_dir_all(work)?;

    let config = EdgeConfig {
        sparse_vectors: HashMap::from([(NAME.to_string(), EdgeSparseVectorParams::default())]),
        ..Default::default()
    };
    let t = Instant::now();
    let shard = EdgeShard::new(work, config)?;
    let mut start = 0;
    while start < docs.rows() {
        let end = (start + 2000).min(docs.rows());
        let points = (start..end)
            .map(|i| {
                PointStruct::new(
                    i as u64,
                    Vectors::new_named([(NAME, docs.row(i))]),
                    json!({}),
                )
                .into()
            })
            .collect();
        shard.update(UpdateOperation::PointOperation(
            PointOperations::UpsertPoints(PointInsertOperations::PointsList(points)),
        ))?;
        start = end;
    }
    shard.optimize()?;
    shard.flush()?;
    let build_s = t.elapsed().as_secs_f64();
    let index_bytes = dir_bytes(work);
    drop(docs);
    eprintln!(
        "qdrant-edge: built in {build_s:.1}s, {index_bytes} bytes, {:?}",
        shard.info()?
    );

    // Warm-up pass, which also yields the ranked ids for recall.
    let mut run = Vec::with_capacity(queries.len() * K);
    for q in &queries {
        let mut ids = top_ids(&shard, q)?;
        ids.resize(K, u32::MAX);
        run.extend(ids);
    }
    let mut lat = Vec::with_capacity(queries.len());
    for q in &queries {
        let t = Instant::now();
        std::hint::black_box(top_ids(&shard, q)?);
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    // QPS on 2 threads: each thread takes every other query, repeated until ≥ 2 s of work.
    let rounds = ((2.0 / (lat.iter().sum::<f64>() / 1e3 / 2.0)).ceil() as usize).clamp(1, 50);
    let t = Instant::now();
    std::thread::scope(|s| {
        for part in 0..2 {
            let (shard, queries) = (&shard, &queries);
            s.spawn(move || {
                for _ in 0..rounds {
                    for q in queries.iter().skip(part).step_by(2) {
                        std::hint::black_box(top_ids(shard, q).expect("query"));
                    }
                }
            });
        }
    });
    let qps = (rounds * queries.len()) as f64 / t.elapsed().as_secs_f64();

    let bytes: Vec<u8> = run.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&args[4], bytes)?;
    let out = json!({
        "engine": "qdrant-edge",
        "config": "default sparse index",
        "params": "qdrant-edge 0.9.0, EdgeSparseVectorParams::default() (exact inverted index), optimize() after upsert",
        "build_s": build_s,
        "index_bytes": index_bytes,
        "index_kind": "disk (shard directory)",
        "p50_ms": pct(&lat, 0.5),
        "p99_ms": pct(&lat, 0.99),
        "qps_2t": qps,
        "qps_note": "2 Rust threads sharing one EdgeShard",
        "run_file": args[4],
    });
    std::fs::write(&args[3], serde_json::to_string_pretty(&out)?)?;
    Ok(())
}
