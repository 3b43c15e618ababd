//! The house rules of the source tree, checked on every file of `src/` (see docs/ARCHITECTURE.md):
//! every file opens with a `//!` doc comment saying its job; llama.cpp (`llama_cpp_2`,
//! `llama_cpp_sys_2`) and `unsafe` are entered only in `src/ffi/`; no function is longer than 80
//! lines unless a `// Long because …` comment right above it says why.

use std::fs;
use std::path::{Path, PathBuf};

const MAX_FN_LINES: usize = 80;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    assert!(files.len() > 50, "found only {} files under src/", files.len());
    files
        .into_iter()
        .map(|p| (p.strip_prefix(root).unwrap().display().to_string(), fs::read_to_string(&p).unwrap()))
        .collect()
}

/// The code of a line without its `//` comment and without string contents, well enough to find
/// keywords (a `//` inside a string literal ends the scan early, which only hides text).
fn code_of(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

#[test]
fn every_file_opens_with_its_doc_comment() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| !text.trim_start().starts_with("//!"))
        .map(|(path, _)| path)
        .collect();
    assert!(missing.is_empty(), "files without a leading `//!` doc comment: {missing:?}");
}

#[test]
fn llama_cpp_and_unsafe_only_behind_ffi() {
    let mut outside = Vec::new();
    for (path, text) in sources() {
        if path.starts_with("src/ffi/") || path == "src/ffi.rs" {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            let code = code_of(line);
            let unsafe_word = code.split(|c: char| !c.is_alphanumeric() && c != '_').any(|w| w == "unsafe");
            if unsafe_word || code.contains("llama_cpp_2") || code.contains("llama_cpp_sys_2") {
                outside.push(format!("{path}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(outside.is_empty(), "llama.cpp or `unsafe` outside src/ffi/:\n{}", outside.join("\n"));
}

/// `fn` items and their line counts: from the `fn` line to the closing brace at the same
/// indentation (rustfmt's layout, which the tree follows).
fn long_functions(path: &str, text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = code_of(line);
        let trimmed = code.trim_start();
        let is_fn = ["fn ", "pub fn ", "pub(crate) fn ", "pub(super) fn ", "const fn ", "pub const fn ", "unsafe fn ", "pub unsafe fn "]
            .iter()
            .any(|p| trimmed.starts_with(p));
        if !is_fn || code.trim_end().ends_with(';') {
            continue;
        }
        let indent = code.len() - trimmed.len();
        let closing = " ".repeat(indent) + "}";
        let Some(len) = lines[i + 1..].iter().position(|l| l.starts_with(&closing) && l.len() - l.trim_start().len() == indent) else {
            continue;
        };
        let fn_lines = len + 2;
        let explained = lines[i.saturating_sub(4)..i].iter().any(|l| l.contains("// Long because"));
        if fn_lines > MAX_FN_LINES && !explained {
            let name = trimmed.split("fn ").nth(1).unwrap_or("").split(['(', '<']).next().unwrap_or("");
            found.push(format!("{path}:{}: fn {name} is {fn_lines} lines", i + 1));
        }
    }
    found
}

#[test]
fn no_function_over_80_lines_without_a_reason() {
    let long: Vec<String> = sources().iter().flat_map(|(path, text)| long_functions(path, text)).collect();
    assert!(long.is_empty(), "functions over {MAX_FN_LINES} lines with no `// Long because` comment:\n{}", long.join("\n"));
}

#[test]
fn the_length_rule_sees_a_long_function() {
    let body: String = (0..90).map(|i| format!("    let x{i} = {i};\n")).collect();
    let text = format!("//! t\nfn long() {{\n{body}}}\n");
    assert_eq!(long_functions("t.rs", &text).len(), 1);
    let explained = format!("//! t\n// Long because it is a table.\nfn long() {{\n{body}}}\n");
    assert!(long_functions("t.rs", &explained).is_empty());
}
