//! Byte-level encodings shared by the file formats: LEB128 varints and a
//! reading cursor, and the bit-packed blocks of doc-id gaps.

pub(crate) mod bitpack;
pub(crate) mod varint;
