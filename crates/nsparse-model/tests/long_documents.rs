//! Long documents: truncation is counted, and the opt-in chunked mode keeps the whole text.

mod common;

use common::fixtures_dir;
use nsparse_model::{EncoderOptions, LongDocuments, SparseEncoder};

fn encoder(long_documents: LongDocuments) -> SparseEncoder {
    let options = EncoderOptions {
        long_documents,
        ..EncoderOptions::default()
    };
    let dir = fixtures_dir().join("tiny-distilbert");
    SparseEncoder::load(dir.to_str().unwrap(), options).unwrap()
}

#[test]
fn chunked_mode_covers_the_tail_and_dominates_truncation() {
    let (truncating, chunking) = (
        encoder(LongDocuments::Truncate),
        encoder(LongDocuments::Chunk),
    );
    let head: Vec<String> = (0..600).map(|i| format!("wing{}", i % 37)).collect();
    let text = format!("{} supersonic helicopter turbine", head.join(" "));

    let cut = truncating.encode_documents(&[&text], |_| {}).unwrap();
    assert_eq!(cut.truncated, 1);
    assert_eq!(cut.tokens, 512);
    let whole = chunking.encode_documents(&[&text], |_| {}).unwrap();
    assert_eq!(whole.truncated, 0);
    assert!(
        whole.tokens > 512,
        "all tokens are encoded: {}",
        whole.tokens
    );

    // The first window is exactly the truncated input, so chunking can only add weight.
    let (cut, whole) = (&cut.vectors[0], &whole.vectors[0]);
    for (id, w) in cut.iter() {
        assert!(
            whole.get(id) >= w - 1e-6,
            "token {id}: {} < {w}",
            whole.get(id)
        );
    }
    assert!(whole.len() >= cut.len());
    assert_ne!(cut, whole, "the tail window must contribute");

    // Short texts are one window: both modes agree exactly.
    let short = "Currently New York is rainy.";
    assert_eq!(
        truncating.encode_document(short).unwrap(),
        chunking.encode_document(short).unwrap()
    );
}
