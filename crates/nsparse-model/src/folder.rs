//! Finding the files of a Hugging Face model folder, locally or on the Hub.

use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};

/// The files of a model folder that nsparse understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// The folder (or Hub cache snapshot) the files live in.
    pub dir: PathBuf,
    /// `config.json`, when the folder holds a network.
    pub config: Option<PathBuf>,
    /// `model.safetensors`, when the folder holds a network.
    pub weights: Option<PathBuf>,
    /// `tokenizer.json`, preferred over `vocab.txt`.
    pub tokenizer_json: Option<PathBuf>,
    /// `vocab.txt`, the fallback tokenizer description.
    pub vocab_txt: Option<PathBuf>,
    /// `tokenizer_config.json`, read for `do_lower_case` when only vocab.txt exists.
    pub tokenizer_config: Option<PathBuf>,
    /// `idf.json`: present in inference-free models; queries are weighted by it.
    pub idf: Option<PathBuf>,
}

const DOWNLOAD_HINT: &str =
    "download the complete folder with `huggingface-cli download <model-id> --local-dir DIR`";

impl ModelFiles {
    /// Inspects a local folder and checks that it is a document encoder or a query-only model.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(ModelError::invalid(
                dir,
                "no such model folder; pass a Hugging Face model folder (config.json, model.safetensors, tokenizer.json, optional idf.json) or a Hub model id",
            ));
        }
        let file = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        let files = ModelFiles {
            dir: dir.to_path_buf(),
            config: file("config.json"),
            weights: file("model.safetensors"),
            tokenizer_json: file("tokenizer.json"),
            vocab_txt: file("vocab.txt"),
            tokenizer_config: file("tokenizer_config.json"),
            idf: file("idf.json"),
        };
        files.validate()?;
        Ok(files)
    }

    fn validate(&self) -> Result<()> {
        let missing = |file: &'static str, hint: String| ModelError::MissingFile {
            dir: self.dir.clone(),
            file,
            hint,
        };
        if self.tokenizer_json.is_none() && self.vocab_txt.is_none() {
            return Err(missing(
                "tokenizer.json",
                format!("a model folder needs tokenizer.json (or vocab.txt); {DOWNLOAD_HINT}"),
            ));
        }
        if self.weights.is_none() {
            if self.dir.join("pytorch_model.bin").is_file() {
                return Err(missing(
                    "model.safetensors",
                    "only pytorch_model.bin is present, which nsparse does not read (pickle is unsafe to load); convert it with `python -c \"from transformers import AutoModelForMaskedLM as M; M.from_pretrained('DIR').save_pretrained('DIR', safe_serialization=True)\"`".into(),
                ));
            }
            if self.idf.is_none() {
                return Err(missing(
                    "model.safetensors",
                    format!("without network weights the folder must be a query-only model with idf.json; {DOWNLOAD_HINT}"),
                ));
            }
        } else if self.config.is_none() {
            return Err(missing(
                "config.json",
                format!("model.safetensors needs its config.json; {DOWNLOAD_HINT}"),
            ));
        }
        Ok(())
    }

    /// Resolves `spec`: an existing folder, or else a Hub model id (`owner/name`) downloaded into
    /// the Hugging Face cache when the `hub` feature is on.
    pub fn resolve(spec: &str) -> Result<Self> {
        let path = Path::new(spec);
        if path.exists() {
            return Self::from_dir(path);
        }
        let looks_like_hub_id = spec.split('/').count() == 2
            && !spec.starts_with('.')
            && !spec.contains('\\')
            && spec.split('/').all(|part| !part.is_empty());
        if !looks_like_hub_id {
            return Self::from_dir(path);
        }
        download_from_hub(spec)
    }
}

impl ModelFiles {
    /// A stable identity of the model: FNV-1a 64 over config.json, the tokenizer file, idf.json,
    /// and the weights' safetensors header, length and first and last MiB of tensor data. Two
    /// folders with the same fingerprint encode text identically (barring a collision or a
    /// hand-edit of the middle of the weights); the index stores it to refuse mismatched queries.
    pub fn fingerprint(&self) -> Result<String> {
        let mut hash = Fnv64::new();
        let files = [
            &self.config,
            &self.tokenizer_json,
            &self.vocab_txt,
            &self.idf,
        ];
        for path in files.into_iter().flatten() {
            hash.write(&std::fs::read(path).map_err(|e| ModelError::io(path, e))?);
            hash.write(b"\xff");
        }
        if let Some(path) = &self.weights {
            use std::io::{Read, Seek, SeekFrom};
            let mut file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
            let len = file.metadata().map_err(|e| ModelError::io(path, e))?.len();
            hash.write(&len.to_le_bytes());
            const SAMPLE: u64 = 1 << 20;
            let mut buf = Vec::new();
            (&mut file)
                .take(SAMPLE)
                .read_to_end(&mut buf)
                .map_err(|e| ModelError::io(path, e))?;
            hash.write(&buf);
            if len > SAMPLE {
                buf.clear();
                file.seek(SeekFrom::Start(len - SAMPLE))
                    .and_then(|_| file.read_to_end(&mut buf))
                    .map_err(|e| ModelError::io(path, e))?;
                hash.write(&buf);
            }
        }
        Ok(format!("{:016x}", hash.0))
    }
}

/// FNV-1a, 64 bits: stable across platforms and compiler versions, unlike std's hasher.
struct Fnv64(u64);

impl Fnv64 {
    fn new() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(feature = "hub")]
fn download_from_hub(id: &str) -> Result<ModelFiles> {
    use hf_hub::api::sync::ApiBuilder;
    let hub_error = |problem: String| ModelError::Hub {
        id: id.to_string(),
        problem,
    };
    // from_env honours HF_HOME (cache) and HF_ENDPOINT (mirrors), like huggingface_hub does.
    let api = ApiBuilder::from_env()
        .build()
        .map_err(|e| hub_error(e.to_string()))?;
    let repo = api.model(id.to_string());
    tracing::info!(model = id, "downloading from the Hugging Face Hub");
    let required = repo
        .get("tokenizer.json")
        .map_err(|e| hub_error(format!("tokenizer.json: {e}")))?;
    let dir = required
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| hub_error("the cache path has no parent".into()))?;
    // Optional files: an inference-free tokenizer model has no weights, a bi-encoder no idf.json.
    for name in [
        "idf.json",
        "config.json",
        "model.safetensors",
        "tokenizer_config.json",
    ] {
        if let Err(e) = repo.get(name) {
            tracing::debug!(model = id, file = name, error = %e, "not downloaded");
        }
    }
    ModelFiles::from_dir(&dir)
}

#[cfg(not(feature = "hub"))]
fn download_from_hub(id: &str) -> Result<ModelFiles> {
    Err(ModelError::Hub {
        id: id.to_string(),
        problem: "this build has no Hub support (built without the `hub` feature)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            std::fs::write(dir.path().join(f), b"{}").unwrap();
        }
        dir
    }

    #[test]
    fn fingerprint_tracks_content() {
        let dir = folder(&["tokenizer.json", "idf.json"]);
        let files = ModelFiles::from_dir(dir.path()).unwrap();
        let before = files.fingerprint().unwrap();
        assert_eq!(before, files.fingerprint().unwrap());
        std::fs::write(dir.path().join("idf.json"), b"{\"a\": 1.0}").unwrap();
        assert_ne!(before, files.fingerprint().unwrap());
    }

    #[test]
    fn query_only_folder_is_valid() {
        let dir = folder(&["tokenizer.json", "idf.json"]);
        let files = ModelFiles::from_dir(dir.path()).unwrap();
        assert!(files.weights.is_none() && files.idf.is_some());
    }

    #[test]
    fn missing_files_are_named() {
        let dir = folder(&["config.json", "model.safetensors"]);
        let e = ModelFiles::from_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("tokenizer.json"), "{e}");

        let dir = folder(&["tokenizer.json", "config.json", "pytorch_model.bin"]);
        let e = ModelFiles::from_dir(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("pytorch_model.bin") && e.contains("safe_serialization"),
            "{e}"
        );

        let dir = folder(&["tokenizer.json", "model.safetensors"]);
        let e = ModelFiles::from_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("config.json"), "{e}");

        let dir = folder(&["tokenizer.json"]);
        let e = ModelFiles::from_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("idf.json"), "{e}");
    }

    #[test]
    fn missing_local_path_is_an_error_not_a_download() {
        let e = ModelFiles::resolve("./no/such/dir")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such model folder"), "{e}");
    }
}
