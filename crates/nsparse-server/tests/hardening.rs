//! Failure handling of the server (issue 22): names validated before anything is persisted,
//! atomic index creation, unavailable indices, the per-field BM25 indexes after crashes,
//! disk-full answers, connection limits and timeouts, bounded query tokenization, and
//! OpenSearch's own validation.

use std::path::Path;
use std::time::Duration;

use axum::http::StatusCode;
use nsparse_server::{App, Models, ServerConfig};
use serde_json::{json, Value};

mod common;
use common::Harness;

fn reopen(dir: tempfile::TempDir, config: ServerConfig) -> Harness {
    Harness::with(dir, config, Models::new)
}

fn assert_error(value: &Value, status: u16, kind: &str) {
    assert_eq!(value["status"], status, "{value}");
    assert_eq!(value["error"]["type"], kind, "{value}");
}

fn ids(response: &Value) -> Vec<String> {
    let mut ids: Vec<String> = response["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn index_dirs(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("indices"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn long_text_field_names_no_longer_brick_startup() {
    let h = Harness::new();
    // 200 bytes: its hex (400 bytes) was a directory name over the 255-byte limit.
    let field = "f".repeat(200);
    let (status, body) = h
        .json(
            "PUT",
            "/long",
            json!({"mappings": {"properties": {&field: {"type": "text"}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = h
        .json(
            "PUT",
            "/long/_doc/1?refresh=true",
            json!({&field: "hello world"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let dirs: Vec<String> = std::fs::read_dir(h.data().join("indices/long/fields"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(dirs, vec![nsparse_server::field_dir_name(&field)]);
    assert!(dirs[0].len() < 64);
    // A mapping over the field-name limit is refused and leaves nothing behind.
    let huge = "g".repeat(nsparse_server::MAX_FIELD_NAME_BYTES + 1);
    let (status, body) = h
        .json(
            "PUT",
            "/huge",
            json!({"mappings": {"properties": {&huge: {"type": "text"}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_error(&body, 400, "mapper_parsing_exception");
    assert_eq!(index_dirs(h.data()), vec!["long"]);
    // Both a crash restart and a clean one open it and find the document.
    let h = h.restart();
    let (status, found) = h
        .json(
            "POST",
            "/long/_search",
            json!({"query": {"match": {&field: "hello"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(ids(&found), vec!["1"]);
    let (dir, config) = h.clean_shutdown();
    let h = reopen(dir, config);
    let (_, found) = h
        .json(
            "POST",
            "/long/_search",
            json!({"query": {"match": {&field: "world"}}}),
        )
        .await;
    assert_eq!(ids(&found), vec!["1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_names_are_refused_before_anything_is_written() {
    let h = Harness::new();
    for name in ["Upper", "-x", "a b", "a:b", "a#b", "..", &"x".repeat(256)] {
        let path = format!(
            "/{}",
            percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
        );
        let (status, body) = h.call("PUT", &path, "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
        assert_error(&body, 400, "invalid_index_name_exception");
    }
    for (field, kind) in [
        ("", "mapper_parsing_exception"),
        ("a..b", "mapper_parsing_exception"),
        (".a", "mapper_parsing_exception"),
        ("a.", "mapper_parsing_exception"),
    ] {
        let (status, body) = h
            .json(
                "PUT",
                "/fields",
                json!({"mappings": {"properties": {field: {"type": "text"}}}}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field:?}: {body}");
        assert_error(&body, 400, kind);
    }
    for shards in [json!(0), json!(-1), json!(2000), json!("x")] {
        let (status, body) = h
            .json(
                "PUT",
                "/shards",
                json!({"settings": {"number_of_shards": shards}}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{shards}: {body}");
        assert_error(&body, 400, "illegal_argument_exception");
    }
    assert!(index_dirs(h.data()).is_empty());
    // PUT _mapping with a bad name changes nothing either.
    let (status, _) = h.call("PUT", "/ok", "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = h
        .json(
            "PUT",
            "/ok/_mapping",
            json!({"properties": {"a..b": {"type": "text"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let h = h.restart();
    let (_, mapping) = h.call("GET", "/ok/_mapping", "").await;
    assert_eq!(mapping["ok"]["mappings"]["properties"], json!({}));
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_get_opensearch_validation() {
    let h = Harness::new();
    let (status, _) = h
        .json(
            "PUT",
            "/v",
            json!({"mappings": {"properties": {"n": {"type": "integer"}, "b": {"type": "byte"}, "l": {"type": "long"}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let cases = [
        (json!({"n": 1u64 << 40}), "out of range for an integer"),
        (json!({"b": 300}), "out of range for a byte"),
        (json!({"n": "4294967296"}), "out of range"),
        (
            json!({"_id": "x"}),
            "Field [_id] is a metadata field and cannot be added inside a document",
        ),
        (
            json!({"_source": {}}),
            "Field [_source] is a metadata field",
        ),
        (json!({"": 1}), "field name cannot be an empty string"),
        (json!({"a..b": 1}), "a..b"),
        (json!({"o": {"": 1}}), "o."),
    ];
    for (doc, message) in cases {
        let (status, body) = h.json("PUT", "/v/_doc/1", doc.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{doc}: {body}");
        assert_error(&body, 400, "mapper_parsing_exception");
        let reason = body["error"]["reason"].as_str().unwrap();
        assert!(reason.contains(message), "{doc}: {reason}");
    }
    // In range, and a nested `_id` (not a metadata field there), are fine.
    let (status, body) = h
        .json(
            "PUT",
            "/v/_doc/1",
            json!({"n": 2147483647, "l": 1u64 << 40, "o": {"_id": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // A bulk item fails alone, with the per-item 400.
    let bulk = format!(
        "{}\n{}\n{}\n{}\n",
        json!({"index": {"_index": "v", "_id": "2"}}),
        json!({"n": 1u64 << 40}),
        json!({"index": {"_index": "v", "_id": "3"}}),
        json!({"n": 3})
    );
    let (status, body) = h.call("POST", "/_bulk", &bulk).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"][0]["index"]["status"], 400, "{body}");
    assert_eq!(body["items"][1]["index"]["status"], 201, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn interrupted_creations_and_deletions_are_cleaned_at_start() {
    let h = Harness::new();
    let (status, _) = h.call("PUT", "/kept", "").await;
    assert_eq!(status, StatusCode::OK);
    let data = h.data().to_path_buf();
    let h = h.restart();
    // Leftovers: a half-built index in staging, one in the trash, a directory without meta.json.
    std::fs::create_dir_all(data.join(".staging/abc/index")).unwrap();
    std::fs::write(data.join(".staging/abc/meta.json"), "{}").unwrap();
    std::fs::create_dir_all(data.join(".trash/def/index")).unwrap();
    std::fs::create_dir_all(data.join("indices/orphan/index")).unwrap();
    let h = h.restart();
    assert!(!data.join(".staging").exists());
    assert!(!data.join(".trash").exists());
    assert_eq!(index_dirs(&data), vec!["kept"]);
    // Deleting renames out of indices/ first, so nothing half-deleted stays listed.
    let (status, _) = h.call("DELETE", "/kept", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(index_dirs(&data).is_empty());
    let (status, _) = h.call("PUT", "/kept", "").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_index_is_served_as_unavailable_while_others_work() {
    let h = Harness::new();
    for name in ["good", "bad", "badmeta"] {
        let (status, _) = h
            .json(
                "PUT",
                &format!("/{name}/_doc/1?refresh=true"),
                json!({"t": "hello"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (dir, config) = h.clean_shutdown();
    // Corrupt the manifest of one index and meta.json of another.
    let manifest = dir.path().join("indices/bad/index/MANIFEST");
    let mut bytes = std::fs::read(&manifest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&manifest, bytes).unwrap();
    std::fs::write(dir.path().join("indices/badmeta/meta.json"), "{not json").unwrap();
    let h = reopen(dir, config);
    let (status, body) = h.call("GET", "/good/_count", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], 1);
    for name in ["bad", "badmeta"] {
        let (status, body) = h.call("GET", &format!("/{name}/_count"), "").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        assert_error(&body, 500, "index_closed_exception");
        let reason = body["error"]["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("DELETE /{name}")),
            "the fix is named: {reason}"
        );
        let (status, _) = h
            .json("PUT", &format!("/{name}/_doc/2"), json!({"t": "x"}))
            .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let (status, _) = h.call("HEAD", &format!("/{name}"), "").await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = h.call("PUT", &format!("/{name}"), "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    let (_, cat) = h.call("GET", "/_cat/indices?format=json", "").await;
    let rows = cat.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{cat}");
    for row in rows {
        let broken = row["index"] != "good";
        assert_eq!(row["health"], if broken { "red" } else { "green" }, "{row}");
        assert_eq!(
            row["status"],
            if broken { "close" } else { "open" },
            "{row}"
        );
    }
    let (_, health) = h.call("GET", "/_cluster/health", "").await;
    assert_eq!(health["status"], "red");
    // DELETE drops a broken index; it can then be created again.
    let (status, _) = h.call("DELETE", "/bad", "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h.call("DELETE", "/badmeta", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(index_dirs(h.data()), vec!["good"]);
    let (status, _) = h.call("PUT", "/bad", "").await;
    assert_eq!(status, StatusCode::OK);
    let (_, health) = h.call("GET", "/_cluster/health", "").await;
    assert_eq!(health["status"], "green");
}

const TEXT_MAPPING: &str = r#"{"settings": {"index": {"refresh_interval": "-1"}},
  "mappings": {"properties": {"text": {"type": "text"}}}}"#;

async fn match_ids(h: &Harness, text: &str) -> Vec<String> {
    let (status, body) = h
        .json(
            "POST",
            "/docs/_search",
            json!({"query": {"match": {"text": text}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    ids(&body)
}

async fn mget_found(h: &Harness, ids: &[&str]) -> Vec<String> {
    let (_, body) = h.json("POST", "/docs/_mget", json!({"ids": ids})).await;
    body["docs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["found"] == true)
        .map(|d| d["_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn field_indexes_agree_with_the_main_index_after_any_crash_window() {
    let h = Harness::new();
    let (status, _) = h.call("PUT", "/docs", TEXT_MAPPING).await;
    assert_eq!(status, StatusCode::OK);
    for (id, text) in [
        ("a", "apple pie"),
        ("b", "banana bread"),
        ("c", "cherry tart"),
    ] {
        let (status, _) = h
            .json("PUT", &format!("/docs/_doc/{id}"), json!({"text": text}))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (dir, config) = h.clean_shutdown();
    let index_dir = dir.path().join("indices/docs");
    let marker = index_dir.join(nsparse_server::CLEAN_SHUTDOWN_MARKER);
    assert!(marker.exists());
    // The first write after a start removes the marker before touching any index.
    let h = reopen(dir, config);
    let (status, _) = h
        .json("PUT", "/docs/_doc/d", json!({"text": "date cake"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(!marker.exists());
    let (dir, config) = h.clean_shutdown();
    assert!(marker.exists());

    // Simulate a process that removed the marker, then crashed between its two writes:
    // - fields written, main not: a document only the field index has ("ghost"), and the
    //   field index still holding "c" deleted from main;
    // - main written, fields not: "b" overwritten in main with new text, "a" deleted in main.
    std::fs::remove_file(&marker).unwrap();
    let models = Models::new();
    let field_dir = index_dir
        .join("fields")
        .join(nsparse_server::field_dir_name("text"));
    {
        let mut field = nsparse_index::Index::open(&field_dir, Default::default()).unwrap();
        field
            .upsert(&nsparse_index::Document {
                id: "ghost".into(),
                vector: Vec::new(),
                tokens: Some(models.bm25_tokens("apple banana cherry").unwrap()),
                source: Vec::new(),
            })
            .unwrap();
        let mut main =
            nsparse_index::Index::open(index_dir.join("index"), Default::default()).unwrap();
        let source = json!({"text": "blueberry muffin"});
        main.upsert(&nsparse_index::Document {
            id: "b".into(),
            vector: Vec::new(),
            tokens: Some(models.bm25_tokens("blueberry muffin").unwrap()),
            source: serde_json::to_vec(&source).unwrap(),
        })
        .unwrap();
        assert!(main.delete("a").unwrap());
        assert!(main.delete("c").unwrap());
    }
    let h = reopen(dir, config);
    let (_, count) = h.call("GET", "/docs/_count", "").await;
    assert_eq!(count["count"], 2, "{count}");
    assert_eq!(
        mget_found(&h, &["a", "b", "c", "d", "ghost"]).await,
        vec!["b", "d"]
    );
    assert!(match_ids(&h, "apple").await.is_empty());
    assert!(match_ids(&h, "banana").await.is_empty());
    assert!(match_ids(&h, "cherry").await.is_empty());
    assert_eq!(match_ids(&h, "blueberry").await, vec!["b"]);
    assert_eq!(match_ids(&h, "cake").await, vec!["d"]);
    // And after one more unclean restart (no marker: rebuilt again), still the same.
    let h = h.restart();
    assert_eq!(match_ids(&h, "muffin date").await, vec!["b", "d"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_shutdown_reopens_existing_field_directories_as_they_are() {
    // Data directories of earlier versions name a field's directory by the hex of its path;
    // with the clean marker present it is opened, not rebuilt: a text only the field index
    // holds proves which one is read.
    let h = Harness::new();
    let (status, _) = h.call("PUT", "/docs", TEXT_MAPPING).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h
        .json("PUT", "/docs/_doc/x", json!({"text": "modern"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (dir, config) = h.clean_shutdown();
    let old_dir = dir.path().join("indices/docs/fields/74657874");
    assert!(old_dir.join("MANIFEST").exists(), "hex of \"text\"");
    {
        let mut field = nsparse_index::Index::open(&old_dir, Default::default()).unwrap();
        field
            .upsert(&nsparse_index::Document {
                id: "x".into(),
                vector: Vec::new(),
                tokens: Some(Models::new().bm25_tokens("legacy").unwrap()),
                source: Vec::new(),
            })
            .unwrap();
    }
    let h = reopen(dir, config);
    assert_eq!(match_ids(&h, "legacy").await, vec!["x"]);
    assert!(match_ids(&h, "modern").await.is_empty());
    // No write since: the marker still holds across a restart.
    let h = h.restart();
    assert_eq!(match_ids(&h, "legacy").await, vec!["x"]);
    // Without the marker (an unclean stop), the field index is rebuilt from the sources.
    std::fs::remove_file(
        h.data()
            .join("indices/docs")
            .join(nsparse_server::CLEAN_SHUTDOWN_MARKER),
    )
    .unwrap();
    let h = h.restart();
    assert_eq!(match_ids(&h, "modern").await, vec!["x"]);
    assert!(match_ids(&h, "legacy").await.is_empty());
}

#[test]
fn disk_full_index_errors_become_flood_stage_429() {
    let e = nsparse_index::Error::Io {
        path: "/data/indices/docs/index/wal-00000001.log".into(),
        source: std::io::Error::from_raw_os_error(libc::ENOSPC),
    };
    let api = nsparse_server::ApiError::from(e).in_index("docs");
    assert_eq!(api.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(api.kind, "cluster_block_exception");
    assert!(api.reason.starts_with("index [docs] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block];"), "{}", api.reason);
    assert!(api.reason.contains("free disk space"), "{}", api.reason);
    assert_eq!(api.cause()["index"], "docs");
    let quota = nsparse_index::Error::Io {
        path: "/x".into(),
        source: std::io::Error::from_raw_os_error(libc::EDQUOT),
    };
    assert!(nsparse_server::ApiError::from(quota).is_disk_full());
    let other = nsparse_index::Error::Io {
        path: "/x".into(),
        source: std::io::Error::from_raw_os_error(libc::EIO),
    };
    assert_eq!(
        nsparse_server::ApiError::from(other).status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

/// Writes to `path` fail with ENOSPC while it is a symlink to /dev/full.
fn fill(path: &Path) {
    let _ = std::fs::remove_file(path);
    std::os::unix::fs::symlink("/dev/full", path).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_full_metadata_writes_answer_429_and_resume_by_themselves() {
    if !Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full");
        return;
    }
    let h = Harness::new();
    let (status, _) = h.call("PUT", "/docs", TEXT_MAPPING).await;
    assert_eq!(status, StatusCode::OK);
    // meta.json (PUT _mapping): its temporary file cannot be written.
    let meta_tmp = h.data().join("indices/docs/meta.json.tmp");
    fill(&meta_tmp);
    let mapping = json!({"properties": {"title": {"type": "text"}}});
    let (status, body) = h.json("PUT", "/docs/_mapping", mapping.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_error(&body, 429, "cluster_block_exception");
    assert!(body["error"]["reason"]
        .as_str()
        .unwrap()
        .starts_with("index [docs] blocked by: [TOO_MANY_REQUESTS/12/"));
    let (_, current) = h.call("GET", "/docs/_mapping", "").await;
    assert!(current["docs"]["mappings"]["properties"]["title"].is_null());
    // The failed write left no temporary behind (on a full disk it would hold space).
    assert!(std::fs::symlink_metadata(&meta_tmp).is_err());
    // Space is back: the same request works, nothing to reset.
    let (status, body) = h.json("PUT", "/docs/_mapping", mapping).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Pipelines file.
    let pipelines_tmp = h.data().join("search_pipelines.json.tmp");
    fill(&pipelines_tmp);
    let pipeline = json!({"request_processors": [{"neural_sparse_two_phase_processor": {}}]});
    let (status, body) = h
        .json("PUT", "/_search/pipeline/two", pipeline.clone())
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_error(&body, 429, "cluster_block_exception");
    assert!(std::fs::symlink_metadata(&pipelines_tmp).is_err());
    let (status, _) = h.json("PUT", "/_search/pipeline/two", pipeline).await;
    assert_eq!(status, StatusCode::OK);
    // Documents are written as before.
    let (status, _) = h
        .json("PUT", "/docs/_doc/1", json!({"text": "still writable"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_query_text_is_truncated_like_the_model_not_expanded() {
    let h = Harness::new();
    let (status, _) = h
        .json(
            "PUT",
            "/q",
            json!({"settings": {"index": {"refresh_interval": "-1"}},
                "mappings": {"properties": {"emb": {"type": "rank_features"}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let bulk = format!(
        "{}\n{}\n{}\n{}\n",
        json!({"index": {"_id": "1"}}),
        json!({"emb": {"weather": 1.0, "rain": 0.5}}),
        json!({"index": {"_id": "2"}}),
        json!({"emb": {"sun": 1.0, "zebra": 2.0}})
    );
    let (status, _) = h.call("POST", "/q/_bulk?refresh=true", &bulk).await;
    assert_eq!(status, StatusCode::OK);
    // 600 words of weather talk, then megabytes the model never reads (zebra).
    let head = "weather rain ".repeat(300);
    let long = format!("{head}{}", "zebra ".repeat(800_000));
    assert!(long.len() > 4_000_000);
    let search = |text: String| json!({"query": {"neural_sparse": {"emb": {"query_text": text}}}});
    let (status, long_result) = h.json("POST", "/q/_search", search(long)).await;
    assert_eq!(status, StatusCode::OK, "{long_result}");
    let (_, head_result) = h.json("POST", "/q/_search", search(head)).await;
    assert_eq!(long_result["hits"]["hits"], head_result["hits"]["hits"]);
    assert_eq!(ids(&long_result), vec!["1"], "zebra is past token 512");
}

/// Sends one HTTP/1.1 request with `connection: close` and returns the response text.
fn http(addr: std::net::SocketAddr, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[tokio::test(flavor = "multi_thread")]
async fn half_open_connections_do_not_stop_service() {
    let h = Harness::with_config(|c| {
        c.header_read_timeout = Duration::from_secs(1);
        c.max_connections = 64;
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(nsparse_server::serve(listener, h.app.clone(), async move {
        let _ = stopped.await;
    }));
    // 1,000 clients that start a request and never finish its headers.
    let slow = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut held = Vec::new();
        for _ in 0..1000 {
            if let Ok(mut s) = std::net::TcpStream::connect(addr) {
                let _ = s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n");
                held.push(s);
            }
        }
        held
    })
    .await
    .unwrap();
    assert!(slow.len() > 900, "{} connections opened", slow.len());
    // A well-behaved request completes (the timeout only guards against a hang).
    let response = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking(move || {
            http(
                addr,
                "GET /_cluster/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            )
        }),
    )
    .await
    .expect("a well-behaved client was served")
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // The silent connections were closed by the header timeout, not left open.
    let closed = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut s = slow.into_iter().next().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut buf = Vec::new();
        // A 408 and/or EOF: either way the read ends.
        s.read_to_end(&mut buf).is_ok()
    })
    .await
    .unwrap();
    assert!(
        closed,
        "a connection that never sent its headers was closed"
    );
    // An idle keep-alive connection is closed too.
    let idle_closed = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).is_ok() && String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200")
    })
    .await
    .unwrap();
    assert!(
        idle_closed,
        "the idle keep-alive connection was closed after its response"
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_passwords_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path());
    config.basic_auth = Some(("admin".into(), String::new()));
    let e = App::open(config, Models::new()).err().unwrap();
    assert!(e.to_string().contains("password is empty"), "{e}");
}

#[test]
fn cancel_flags_stop_work() {
    let cancel = nsparse_server::Cancel::default();
    assert!(cancel.check().is_ok());
    let shared = cancel.clone();
    shared.cancel();
    assert!(cancel.is_cancelled());
    assert_eq!(
        cancel.check().unwrap_err().status,
        StatusCode::GATEWAY_TIMEOUT
    );
}
