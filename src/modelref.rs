//! Model references: what a user may type where a command takes MODEL, resolved to the GGUF file
//! to open. One resolver serves every command, so `inspect`, `calibrate`, `apply`, `eval`
//! (and `--compare`), `run` and `experiments` accept the same forms:
//!
//! - a path to a `.gguf` file (or a directory holding exactly one model);
//! - `ollama:NAME[:TAG]` — Ollama's store (`$OLLAMA_MODELS`, else `~/.ollama/models`): the
//!   manifest `manifests/registry.ollama.ai/library/NAME/TAG` (`NS/NAME` for other namespaces,
//!   tag `latest` by default) names its layers; the one with media type
//!   `application/vnd.ollama.image.model` is the GGUF, stored as `blobs/sha256-<hex>`;
//! - `publisher/model[/file.gguf]` (or `lmstudio:…`) — LM Studio's folder (`$LMSTUDIO_MODELS`,
//!   else `~/.lmstudio/models`);
//! - `hf:org/name[/file.gguf]` — the Hugging Face hub cache (`$HF_HUB_CACHE`, else
//!   `$HF_HOME/hub`, else `~/.cache/huggingface/hub`): `models--org--name/snapshots/REV/…`, REV
//!   from `refs/main` when present. A cache path itself is an ordinary path.
//!
//! When a folder holds several GGUF files the reference must name one, except that the shards
//! of one split model resolve to the first shard. A reference that resolves to nothing is an
//! error listing every place that was tried.

use std::path::{Path, PathBuf};

/// The media type of the GGUF layer in an Ollama manifest.
pub const OLLAMA_MODEL_MEDIA_TYPE: &str = "application/vnd.ollama.image.model";

/// Where the model stores are: from the environment for the CLI, explicit in tests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stores {
    /// Ollama's models directory (holds `manifests/` and `blobs/`).
    pub ollama: Option<PathBuf>,
    /// LM Studio's models directory (holds `publisher/model/*.gguf`).
    pub lmstudio: Option<PathBuf>,
    /// The Hugging Face hub cache (holds `models--org--name/`).
    pub hf_hub: Option<PathBuf>,
}

impl Stores {
    /// The stores named by `$OLLAMA_MODELS`, `$LMSTUDIO_MODELS`, `$HF_HUB_CACHE` / `$HF_HOME`,
    /// else their defaults under `$HOME`.
    pub fn from_env() -> Stores {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let home = var("HOME");
        let under_home = |rel: &str| home.as_ref().map(|h| h.join(rel));
        Stores {
            ollama: var("OLLAMA_MODELS").or_else(|| under_home(".ollama/models")),
            lmstudio: var("LMSTUDIO_MODELS").or_else(|| under_home(".lmstudio/models")),
            hf_hub: var("HF_HUB_CACHE").or_else(|| var("HF_HOME").map(|h| h.join("hub"))).or_else(|| under_home(".cache/huggingface/hub")),
        }
    }
}

/// Which kind of reference a model came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A path the user gave.
    Path,
    /// Ollama's blob store.
    Ollama,
    /// LM Studio's models folder.
    LmStudio,
    /// The Hugging Face hub cache.
    HuggingFace,
}

/// A resolved model reference.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedModel {
    /// The GGUF file to open (the first shard of a split model).
    pub path: PathBuf,
    /// A file-name stem for outputs derived from the model (`qwen2.5-0.5b` for
    /// `ollama:qwen2.5:0.5b`, whose blob is named by its hash).
    pub stem: String,
    /// Where it was found.
    pub source: Source,
}

impl ResolvedModel {
    /// True when the file lives in a tool's store, where mathneuro must not put its outputs by
    /// default (they go to the current directory instead).
    pub fn in_store(&self) -> bool {
        self.source != Source::Path || is_hf_cache_path(&self.path)
    }
}

/// Why a reference did not resolve: what was asked and each place looked at.
#[derive(Debug, thiserror::Error)]
#[error("cannot find the model `{reference}`; tried:{}", tried.iter().map(|t| format!("\n  - {t}")).collect::<String>())]
pub struct ResolveError {
    /// The reference as given.
    pub reference: String,
    /// One line per candidate: where, and why it did not do.
    pub tried: Vec<String>,
}

/// Resolves `reference` against the stores named by the environment.
pub fn resolve(reference: &Path) -> Result<ResolvedModel, ResolveError> {
    resolve_in(reference, &Stores::from_env())
}

/// Resolves `reference` against `stores` (see the module documentation for the forms).
pub fn resolve_in(reference: &Path, stores: &Stores) -> Result<ResolvedModel, ResolveError> {
    let text = reference.to_string_lossy().into_owned();
    let mut tried = Vec::new();
    let done = |r: Result<ResolvedModel, String>, tried: &mut Vec<String>| r.map_err(|why| tried.push(why)).ok();
    let found = if let Some(name) = text.strip_prefix("ollama:") {
        done(ollama(name, stores), &mut tried)
    } else if let Some(name) = text.strip_prefix("hf:") {
        done(hugging_face(name, stores), &mut tried)
    } else if let Some(name) = text.strip_prefix("lmstudio:") {
        done(lm_studio(name, stores), &mut tried)
    } else {
        // A path wins; a relative `publisher/model` that is no path is looked up in LM Studio.
        let as_path = done(path(reference), &mut tried);
        let store_like = reference.is_relative() && reference.components().count() >= 2;
        as_path.or_else(|| if store_like { done(lm_studio(&text, stores), &mut tried) } else { None })
    };
    found.ok_or(ResolveError { reference: text, tried })
}

/// A plain path: a file, or a folder with one model in it.
fn path(p: &Path) -> Result<ResolvedModel, String> {
    let file = if p.is_dir() {
        pick_gguf(p).map_err(|why| format!("folder {}: {why}", p.display()))?
    } else {
        // The OS says why (no such file, permission denied, a dangling link).
        std::fs::metadata(p).map_err(|e| format!("path {}: {e}", p.display()))?;
        p.to_path_buf()
    };
    Ok(ResolvedModel { stem: stem_of(&file), path: file, source: Source::Path })
}

/// `NAME[:TAG]` in Ollama's store.
fn ollama(name: &str, stores: &Stores) -> Result<ResolvedModel, String> {
    let root = stores.ollama.as_ref().ok_or("Ollama store: $OLLAMA_MODELS and $HOME are unset")?;
    let (name, tag) = name.rsplit_once(':').filter(|(_, t)| !t.contains('/')).unwrap_or((name, "latest"));
    if name.is_empty() || tag.is_empty() || name.split('/').any(|part| part.is_empty() || part == "..") {
        return Err(format!("Ollama: `{name}:{tag}` is not a model name (NAME[:TAG])"));
    }
    // `name` → library/name; `ns/name` → ns/name; `host/ns/name` → host/ns/name.
    let repo = match name.matches('/').count() {
        0 => format!("registry.ollama.ai/library/{name}"),
        1 => format!("registry.ollama.ai/{name}"),
        _ => name.to_string(),
    };
    let manifest = root.join("manifests").join(repo).join(tag);
    let text = std::fs::read_to_string(&manifest).map_err(|e| format!("Ollama manifest {}: {e}", manifest.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("Ollama manifest {}: not JSON ({e})", manifest.display()))?;
    let layers = json.get("layers").and_then(|l| l.as_array()).ok_or_else(|| format!("Ollama manifest {}: no `layers` list", manifest.display()))?;
    let digest = layers
        .iter()
        .find(|l| l.get("mediaType").and_then(|m| m.as_str()) == Some(OLLAMA_MODEL_MEDIA_TYPE))
        .and_then(|l| l.get("digest").and_then(|d| d.as_str()))
        .ok_or_else(|| format!("Ollama manifest {}: no layer of type {OLLAMA_MODEL_MEDIA_TYPE}", manifest.display()))?;
    let hex = digest.strip_prefix("sha256:").filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()));
    let hex = hex.ok_or_else(|| format!("Ollama manifest {}: digest `{digest}` is not sha256:<hex>", manifest.display()))?;
    let blob = root.join("blobs").join(format!("sha256-{hex}"));
    if !blob.is_file() {
        return Err(format!("Ollama blob {} (named by {}): no such file", blob.display(), manifest.display()));
    }
    let stem = format!("{}-{tag}", name.rsplit('/').next().unwrap_or(name)).replace(':', "-");
    Ok(ResolvedModel { path: blob, stem, source: Source::Ollama })
}

/// `publisher/model[/file.gguf]` under LM Studio's folder.
fn lm_studio(name: &str, stores: &Stores) -> Result<ResolvedModel, String> {
    let root = stores.lmstudio.as_ref().ok_or("LM Studio folder: $LMSTUDIO_MODELS and $HOME are unset")?;
    if name.split('/').any(|part| part == "..") {
        return Err(format!("LM Studio: `{name}` may not contain `..`"));
    }
    let candidate = root.join(name);
    let file = if candidate.is_dir() {
        pick_gguf(&candidate).map_err(|why| format!("LM Studio folder {}: {why}", candidate.display()))?
    } else if candidate.is_file() {
        candidate
    } else {
        return Err(format!("LM Studio {}: no such file or folder", candidate.display()));
    };
    Ok(ResolvedModel { stem: stem_of(&file), path: file, source: Source::LmStudio })
}

/// `org/name[/file.gguf]` in the Hugging Face hub cache.
fn hugging_face(name: &str, stores: &Stores) -> Result<ResolvedModel, String> {
    let root = stores.hf_hub.as_ref().ok_or("Hugging Face cache: $HF_HUB_CACHE, $HF_HOME and $HOME are unset")?;
    let mut parts = name.splitn(3, '/');
    let (Some(org), Some(repo)) = (parts.next().filter(|s| !s.is_empty()), parts.next().filter(|s| !s.is_empty())) else {
        return Err(format!("Hugging Face: `{name}` is not org/name[/file.gguf]"));
    };
    let file = parts.next();
    if name.split('/').any(|p| p == "..") {
        return Err(format!("Hugging Face: `{name}` may not contain `..`"));
    }
    let repo_dir = root.join(format!("models--{org}--{repo}"));
    let snapshots = repo_dir.join("snapshots");
    let rev = match std::fs::read_to_string(repo_dir.join("refs").join("main")) {
        Ok(r) => r.trim().to_string(),
        Err(_) => {
            // No refs/main: the one snapshot there is (the newest when several, by name order of
            // nothing better would be a guess, so several is an error).
            let mut revs: Vec<String> = read_dir_names(&snapshots).map_err(|e| format!("Hugging Face cache {}: {e}", snapshots.display()))?;
            revs.sort();
            match revs.len() {
                1 => revs.remove(0),
                0 => return Err(format!("Hugging Face cache {}: no snapshot", snapshots.display())),
                _ => return Err(format!("Hugging Face cache {}: several snapshots ({}) and no refs/main", snapshots.display(), revs.join(", "))),
            }
        }
    };
    let snapshot = snapshots.join(&rev);
    let path = match file {
        Some(f) => snapshot.join(f),
        None => pick_gguf(&snapshot).map_err(|why| format!("Hugging Face snapshot {}: {why}", snapshot.display()))?,
    };
    if !path.is_file() {
        return Err(format!("Hugging Face cache {}: no such file", path.display()));
    }
    Ok(ResolvedModel { stem: stem_of(&path), path, source: Source::HuggingFace })
}

/// The one model in `dir`: its only `.gguf` (projector files `mmproj*` aside), or the first shard
/// when all of them are shards of one split model.
fn pick_gguf(dir: &Path) -> Result<PathBuf, String> {
    let mut names: Vec<String> = read_dir_names(dir).map_err(|e| e.to_string())?;
    names.retain(|n| n.ends_with(".gguf") && !n.starts_with("mmproj"));
    names.sort();
    let firsts: Vec<&String> = names.iter().filter(|n| crate::gguf::split::parse_shard_name(n).is_some_and(|s| s.index == 0)).collect();
    let pick = match (names.len(), firsts.len()) {
        (0, _) => return Err("no .gguf file in it".into()),
        (1, _) => names[0].clone(),
        (_, 1) if names.iter().all(|n| crate::gguf::split::parse_shard_name(n).is_some()) => firsts[0].clone(),
        _ => return Err(format!("several models in it ({}); name one", names.join(", "))),
    };
    Ok(dir.join(pick))
}

fn read_dir_names(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

/// `a/b/name.gguf` → `name`; a split's first shard `x-00001-of-00003.gguf` → `x`.
fn stem_of(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    match crate::gguf::split::parse_shard_name(&name) {
        Some(s) => s.prefix,
        None => name.strip_suffix(".gguf").unwrap_or(&name).to_string(),
    }
}

/// True for files inside a Hugging Face cache snapshot (`…/models--org--name/snapshots/REV/…`).
fn is_hf_cache_path(p: &Path) -> bool {
    let parts: Vec<String> = p.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    parts.windows(2).any(|w| w[0].starts_with("models--") && w[1] == "snapshots")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stores(root: &Path) -> Stores {
        Stores { ollama: Some(root.join("ollama")), lmstudio: Some(root.join("lms")), hf_hub: Some(root.join("hf")) }
    }

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn manifest(hex: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
               "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:00","size":1}},
               "layers":[{{"mediaType":"application/vnd.ollama.image.template","digest":"sha256:11","size":3}},
                         {{"mediaType":"{OLLAMA_MODEL_MEDIA_TYPE}","digest":"sha256:{hex}","size":4}}]}}"#
        )
    }

    #[test]
    fn ollama_names_resolve_through_the_manifest_to_the_model_blob() {
        let dir = tempfile::tempdir().unwrap();
        let s = stores(dir.path());
        let lib = dir.path().join("ollama/manifests/registry.ollama.ai/library");
        write(&lib.join("qwen2.5/0.5b"), manifest("abcd").as_bytes());
        write(&lib.join("gemma3/latest"), manifest("ef01").as_bytes());
        write(&dir.path().join("ollama/manifests/registry.ollama.ai/someone/tiny/q4"), manifest("ef01").as_bytes());
        write(&dir.path().join("ollama/blobs/sha256-abcd"), b"GGUF");
        write(&dir.path().join("ollama/blobs/sha256-ef01"), b"GGUF");
        let r = resolve_in(Path::new("ollama:qwen2.5:0.5b"), &s).unwrap();
        assert_eq!(r.path, dir.path().join("ollama/blobs/sha256-abcd"));
        assert_eq!((r.stem.as_str(), r.source, r.in_store()), ("qwen2.5-0.5b", Source::Ollama, true));
        assert_eq!(resolve_in(Path::new("ollama:gemma3"), &s).unwrap().stem, "gemma3-latest");
        assert_eq!(resolve_in(Path::new("ollama:someone/tiny:q4"), &s).unwrap().path, dir.path().join("ollama/blobs/sha256-ef01"));
        let e = resolve_in(Path::new("ollama:nope:1b"), &s).unwrap_err().to_string();
        assert!(e.contains("cannot find the model `ollama:nope:1b`") && e.contains("library/nope/1b"), "{e}");
    }

    #[test]
    fn a_manifest_without_a_model_layer_or_blob_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let s = stores(dir.path());
        let lib = dir.path().join("ollama/manifests/registry.ollama.ai/library");
        write(&lib.join("a/latest"), br#"{"layers":[{"mediaType":"application/vnd.ollama.image.license","digest":"sha256:22"}]}"#);
        write(&lib.join("b/latest"), manifest("99").as_bytes());
        write(&lib.join("c/latest"), b"not json");
        let e = resolve_in(Path::new("ollama:a"), &s).unwrap_err().to_string();
        assert!(e.contains("no layer of type application/vnd.ollama.image.model"), "{e}");
        let e = resolve_in(Path::new("ollama:b"), &s).unwrap_err().to_string();
        assert!(e.contains("sha256-99") && e.contains("no such file"), "{e}");
        let e = resolve_in(Path::new("ollama:c"), &s).unwrap_err().to_string();
        assert!(e.contains("not JSON"), "{e}");
        assert!(resolve_in(Path::new("ollama:../x"), &s).is_err());
    }

    #[test]
    fn lm_studio_and_hugging_face_references_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let s = stores(dir.path());
        write(&dir.path().join("lms/lmstudio-community/Tiny-GGUF/Tiny-Q4_K_M.gguf"), b"GGUF");
        write(&dir.path().join("lms/lmstudio-community/Tiny-GGUF/mmproj-Tiny.gguf"), b"GGUF");
        write(&dir.path().join("lms/other/Two/a.gguf"), b"GGUF");
        write(&dir.path().join("lms/other/Two/b.gguf"), b"GGUF");
        let r = resolve_in(Path::new("lmstudio-community/Tiny-GGUF"), &s).unwrap();
        assert_eq!((r.path.file_name().unwrap().to_str().unwrap(), r.source), ("Tiny-Q4_K_M.gguf", Source::LmStudio));
        assert_eq!(resolve_in(Path::new("other/Two/b.gguf"), &s).unwrap().stem, "b");
        let e = resolve_in(Path::new("other/Two"), &s).unwrap_err().to_string();
        assert!(e.contains("several models in it (a.gguf, b.gguf)") && e.contains("path other/Two: No such file"), "{e}");

        let repo = dir.path().join("hf/models--org--Tiny-GGUF");
        write(&repo.join("refs/main"), b"rev2\n");
        write(&repo.join("snapshots/rev1/tiny.gguf"), b"GGUF");
        write(&repo.join("snapshots/rev2/tiny-00001-of-00002.gguf"), b"GGUF");
        write(&repo.join("snapshots/rev2/tiny-00002-of-00002.gguf"), b"GGUF");
        let r = resolve_in(Path::new("hf:org/Tiny-GGUF"), &s).unwrap();
        assert_eq!(r.path, repo.join("snapshots/rev2/tiny-00001-of-00002.gguf"));
        assert_eq!(r.stem, "tiny");
        // A cache path typed as a path is a path, but still counts as a store for outputs.
        let p = resolve_in(&repo.join("snapshots/rev1/tiny.gguf"), &s).unwrap();
        assert_eq!((p.source, p.in_store()), (Source::Path, true));
        assert!(resolve_in(Path::new("hf:org/Missing"), &s).unwrap_err().to_string().contains("models--org--Missing"));
    }

    #[test]
    fn plain_paths_and_folders() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("m/one.gguf"), b"GGUF");
        let s = stores(dir.path());
        let r = resolve_in(&dir.path().join("m"), &s).unwrap();
        assert_eq!((r.path, r.source), (dir.path().join("m/one.gguf"), Source::Path));
        let e = resolve_in(&dir.path().join("none.gguf"), &s).unwrap_err().to_string();
        assert!(e.contains("none.gguf: No such file"), "{e}");
    }
}
