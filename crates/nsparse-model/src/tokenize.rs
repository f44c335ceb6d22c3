//! WordPiece tokenization through Hugging Face's `tokenizers`, with nsparse's truncation rules.

use std::path::Path;
use std::sync::Arc;

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{
    AddedToken, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

use crate::error::{ModelError, Result};
use crate::token_table::TokenTable;

/// The token ids of one text as fed to the network, and whether the text was cut to fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedText {
    /// Token ids, special tokens included for documents.
    pub ids: Vec<u32>,
    /// True when the text had more tokens than the limit and its tail was dropped.
    pub truncated: bool,
}

/// A WordPiece tokenizer with the truncation and special-token rules of the encoders.
#[derive(Clone)]
pub struct TextTokenizer {
    /// Configured to add special tokens and truncate at `max_length`.
    documents: Tokenizer,
    /// Configured without special tokens, truncating at `max_length`.
    queries: Tokenizer,
    /// Configured with no truncation at all (chunked long documents).
    untruncated: Tokenizer,
    special_ids: Vec<u32>,
    /// `get_vocab_size(true)` builds the whole vocabulary map; computed once here because
    /// callers ask per document.
    vocab_size: usize,
    max_length: usize,
    /// Token string → id, added tokens included (shared by clones).
    ids: Arc<TokenTable>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("max_length", &self.max_length)
            .finish()
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json` from bytes (`origin` names it in errors).
    pub fn from_json_bytes(bytes: &[u8], origin: &Path, max_length: usize) -> Result<Self> {
        let tokenizer = Tokenizer::from_bytes(bytes).map_err(|e| {
            ModelError::invalid(
                origin,
                format!("not a Hugging Face tokenizer.json ({e}); re-download the model folder"),
            )
        })?;
        Self::from_tokenizer(tokenizer, origin, max_length)
    }

    /// Builds the bert-base-uncased style tokenizer from a `vocab.txt` (one WordPiece per line).
    pub fn from_vocab_txt(path: &Path, lowercase: bool, max_length: usize) -> Result<Self> {
        let text = path.to_str().ok_or_else(|| {
            ModelError::invalid(path, "the path is not valid UTF-8; move the model folder")
        })?;
        let wordpiece = WordPiece::from_file(text)
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| ModelError::invalid(path, format!("not a WordPiece vocab.txt ({e})")))?;
        let mut tokenizer = Tokenizer::new(wordpiece);
        let id = |token: &str| {
            tokenizer.token_to_id(token).ok_or_else(|| {
                ModelError::invalid(
                    path,
                    format!("vocab.txt has no {token} entry; is it a BERT vocabulary?"),
                )
            })
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        tokenizer
            .with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
            .with_pre_tokenizer(Some(BertPreTokenizer))
            .with_post_processor(Some(BertProcessing::new(
                ("[SEP]".into(), sep),
                ("[CLS]".into(), cls),
            )));
        let specials: Vec<AddedToken> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            .iter()
            .filter(|t| tokenizer.token_to_id(t).is_some())
            .map(|t| AddedToken::from(*t, true))
            .collect();
        tokenizer.add_special_tokens(&specials);
        Self::from_tokenizer(tokenizer, path, max_length)
    }

    fn from_tokenizer(mut tokenizer: Tokenizer, origin: &Path, max_length: usize) -> Result<Self> {
        // A tokenizer.json may carry its own padding/truncation (SPLADE-tiny pads to the batch);
        // the encoders never pad and truncate by their own rule.
        tokenizer.with_padding(None);
        let truncation = TruncationParams {
            max_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        };
        tokenizer
            .with_truncation(Some(truncation))
            .map_err(|e| ModelError::invalid(origin, format!("cannot set truncation: {e}")))?;
        let mut special_ids: Vec<u32> = tokenizer
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, token)| token.special)
            .map(|(id, _)| *id)
            .collect();
        special_ids.sort_unstable();
        let mut untruncated = tokenizer.clone();
        untruncated
            .with_truncation(None)
            .map_err(|e| ModelError::invalid(origin, format!("cannot unset truncation: {e}")))?;
        let ids = TokenTable::new(tokenizer.get_vocab(true));
        Ok(TextTokenizer {
            ids: Arc::new(ids),
            vocab_size: tokenizer.get_vocab_size(true),
            untruncated,
            queries: tokenizer.clone(),
            documents: tokenizer,
            special_ids,
            max_length,
        })
    }

    /// Number of entries in the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The ids of special tokens (`[PAD]`, `[UNK]`, `[CLS]`, `[SEP]`, `[MASK]`), sorted.
    pub fn special_ids(&self) -> &[u32] {
        &self.special_ids
    }

    /// The truncation limit in tokens.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Document tokenization: special tokens added, truncated at `max_length`.
    pub fn tokenize_document(&self, text: &str) -> Result<TokenizedText> {
        let encoding = self
            .documents
            .encode(text, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(TokenizedText {
            truncated: !encoding.get_overflowing().is_empty(),
            ids: encoding.get_ids().to_vec(),
        })
    }

    /// The content tokens of a document, without special tokens or truncation (chunked mode).
    pub fn tokenize_document_untruncated(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .untruncated
            .encode(text, false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Query tokenization: no special tokens, truncated at `max_length`.
    pub fn tokenize_query(&self, text: &str) -> Result<TokenizedText> {
        let encoding = self
            .queries
            .encode(text, false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(TokenizedText {
            truncated: !encoding.get_overflowing().is_empty(),
            ids: encoding.get_ids().to_vec(),
        })
    }

    /// A prefix of `text` that truncation treats exactly as the whole text: its first
    /// [`TextTokenizer::max_length`] tokens (as a query or a document) are those of `text`,
    /// and it still has more than `max_length` content tokens when `text` has, so the
    /// truncation is still reported. Cut at a piece boundary (see
    /// [`TextTokenizer::tokenize_untruncated_in_pieces`]), so memory and time stay bounded by
    /// a few pieces beyond what the first `max_length` tokens need, however long `text` is.
    /// Short texts are returned whole.
    pub fn truncation_prefix<'a>(&self, text: &'a str) -> Result<&'a str> {
        if text.len() <= PIECE_BYTES {
            return Ok(text);
        }
        let mut tokens = 0usize;
        let mut end = 0usize;
        let mut enough = false;
        for piece in pieces(text) {
            end += piece.len();
            if enough {
                // One more piece after the limit was passed: the words around the cut before
                // it are whole in the prefix.
                return Ok(&text[..end]);
            }
            tokens += self.tokenize_document_untruncated(piece)?.len();
            enough = tokens > self.max_length;
        }
        Ok(text)
    }

    /// The content tokens of `text` without special tokens or truncation, like
    /// [`TextTokenizer::tokenize_document_untruncated`], tokenized in pieces of at most
    /// 64 KiB cut before ASCII whitespace or punctuation (boundaries of every WordPiece
    /// pre-tokenizer word), so the tokenizer's per-token bookkeeping never covers more than a
    /// piece; the result takes 4 bytes per token. Equal to the whole-text tokenization except
    /// in a run of over 64 KiB with no ASCII whitespace or punctuation, which is cut every
    /// 64 KiB (at a character boundary).
    pub fn tokenize_untruncated_in_pieces(&self, text: &str) -> Result<Vec<u32>> {
        if text.len() <= PIECE_BYTES {
            return self.tokenize_document_untruncated(text);
        }
        let mut ids = Vec::new();
        for piece in pieces(text) {
            ids.extend(self.tokenize_document_untruncated(piece)?);
        }
        Ok(ids)
    }

    /// The token string of an id.
    pub fn token(&self, id: u32) -> Option<String> {
        self.documents.id_to_token(id)
    }

    /// The id of a token string.
    #[inline]
    pub fn id(&self, token: &str) -> Option<u32> {
        self.ids.get(token)
    }

    /// The ids of token strings, in order (`None` for strings not in the
    /// vocabulary); faster than [`TextTokenizer::id`] per string for a whole vector.
    pub fn ids_of(&self, tokens: &[&str]) -> Vec<Option<u32>> {
        let mut out = Vec::with_capacity(tokens.len());
        self.ids.get_all(tokens, &mut out);
        out
    }

    /// The ids of `[CLS]` and `[SEP]`, needed to frame the windows of chunked documents.
    pub fn cls_sep(&self) -> Option<(u32, u32)> {
        Some((self.id("[CLS]")?, self.id("[SEP]")?))
    }
}

/// Largest piece of [`TextTokenizer::tokenize_untruncated_in_pieces`].
const PIECE_BYTES: usize = 64 * 1024;

/// Splits `text` into consecutive pieces of at most [`PIECE_BYTES`], each cut just before an
/// ASCII whitespace or punctuation character, where BERT pre-tokenization always splits (and
/// which neither normalisation nor accent stripping joins to the text before it); a piece with
/// no such character is cut at a character boundary.
fn pieces(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if rest.len() <= PIECE_BYTES {
            return Some(std::mem::take(&mut rest));
        }
        let bytes = rest.as_bytes();
        // Cut before the last boundary within the limit (never at 0: a piece is never empty).
        let cut = (1..=PIECE_BYTES)
            .rev()
            .find(|&i| {
                let b = bytes[i];
                matches!(b, b' ' | b'\t' | b'\n' | b'\r') || b.is_ascii_punctuation()
            })
            .unwrap_or_else(|| {
                (1..=PIECE_BYTES)
                    .rev()
                    .find(|&i| rest.is_char_boundary(i))
                    .unwrap_or(rest.len())
            });
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> TextTokenizer {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/opensearch-query-v1/tokenizer.json"
        ));
        TextTokenizer::from_json_bytes(&std::fs::read(path).unwrap(), path, 512).unwrap()
    }

    #[test]
    fn pieces_cover_the_text_and_stay_small() {
        let text = format!(
            "{} {} {}",
            "word, ".repeat(30_000),
            "x".repeat(200_000),
            "é".repeat(70_000)
        );
        let parts: Vec<&str> = pieces(&text).collect();
        assert_eq!(parts.concat(), text);
        assert!(parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= PIECE_BYTES));
    }

    #[test]
    fn piecewise_tokenization_equals_the_whole() {
        let tok = builtin();
        let text =
            "The quick brown fox, jumps over the lazy dog! Ünïcödé wörds\tand\r\nnumbers 12.5; "
                .repeat(3_000);
        assert!(text.len() > 3 * PIECE_BYTES);
        assert_eq!(
            tok.tokenize_untruncated_in_pieces(&text).unwrap(),
            tok.tokenize_document_untruncated(&text).unwrap()
        );
    }

    #[test]
    fn truncation_prefix_keeps_what_truncation_keeps() {
        let tok = builtin();
        let text = "Alpha beta, gamma-delta epsilon. ".repeat(20_000);
        let prefix = tok.truncation_prefix(&text).unwrap();
        assert!(prefix.len() <= 2 * PIECE_BYTES, "{}", prefix.len());
        assert_eq!(
            tok.tokenize_query(prefix).unwrap(),
            tok.tokenize_query(&text).unwrap()
        );
        assert_eq!(
            tok.tokenize_document(prefix).unwrap(),
            tok.tokenize_document(&text).unwrap()
        );
        let short = "just a few words";
        assert_eq!(tok.truncation_prefix(short).unwrap(), short);
    }

    #[test]
    fn id_lookup_equals_the_tokenizers_own_for_every_token() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/opensearch-query-v1/tokenizer.json"
        ));
        let bytes = std::fs::read(path).unwrap();
        let tok = TextTokenizer::from_json_bytes(&bytes, path, 512).unwrap();
        let mut seen = 0;
        for (token, id) in tok.documents.get_vocab(true) {
            assert_eq!(tok.id(&token), Some(id), "{token:?}");
            assert_eq!(
                tok.id(&token),
                tok.documents.token_to_id(&token),
                "{token:?}"
            );
            seen += 1;
        }
        assert_eq!(seen, tok.vocab_size());
        assert!(seen >= 30_522);
        for token in ["[CLS]", "[SEP]", "[MASK]", "ny", "##s", "weather"] {
            assert_eq!(tok.id(token), tok.documents.token_to_id(token), "{token:?}");
            assert!(tok.id(token).is_some(), "{token:?}");
        }
        for absent in ["", "NY", "no-such-token", "##", "weather "] {
            assert_eq!(
                tok.id(absent),
                tok.documents.token_to_id(absent),
                "{absent:?}"
            );
        }
    }
}
