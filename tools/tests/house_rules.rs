//! House rules: what reviews keep finding, checked over the whole source
//! tree so CI fails on it instead of a reviewer.
//!
//! - every Rust file opens with a `//!` line saying what it is for;
//! - a crate with no `unsafe` says so with `#![forbid(unsafe_code)]` (or
//!   `deny` where generated code needs a scoped `allow`);
//! - every `unsafe` block, fn or impl has a `// SAFETY:` comment on the
//!   lines just above it (or on its own line);
//! - close codes are spelled only in `courier_proto::close`: a literal
//!   Courier close code (4xxx) anywhere else in code or strings, or an RFC
//!   close code on a line that talks about closing, is an error;
//! - no production function (under a crate's `src/`, outside `#[cfg(test)]`)
//!   is longer than [`FN_LINES_MAX`] lines, except those in
//!   [`LONG_FUNCTIONS`]: a ratchet, recorded when the rule was introduced.
//!   A listed function may not grow past its recorded length, and one that
//!   got shorter than the limit (or went away) must leave the list — the
//!   list only shrinks.
//!
//! Files are parsed with `syn`, so comments and doc attributes never count as
//! code. Generated code (`net/proto/src/generated/`) and build output are
//! skipped. On failure the test prints every finding with its file and line,
//! and for the ratchet the list as it should read now.

use proc_macro2::Span;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use syn::spanned::Spanned;
use syn::visit::Visit;

/// Longest production function allowed, in lines (signature to closing
/// brace). Chosen for the code as it was when the rule came in: long enough
/// for a state-machine `match` over a handful of cases, short enough that a
/// handler doing three things shows up.
const FN_LINES_MAX: usize = 100;

/// The ratchet: production functions longer than [`FN_LINES_MAX`] when the
/// rule was introduced, as (file, function, lines). Only ever remove entries
/// or lower their length.
const LONG_FUNCTIONS: &[(&str, &str, usize)] = &[
    ("cluster/src/agent.rs", "run", 130),
    ("cluster/src/placement.rs", "compute_placement", 154),
    ("core/src/conn.rs", "ConnRole::route_user", 213),
    ("core/src/gather.rs", "GatherRole::advance_gather", 106),
    ("core/src/snapshot.rs", "capture", 137),
    ("core/src/snapshot.rs", "restore", 247),
    ("core/src/state.rs", "State::apply", 338),
    ("net/proto/src/codec.rs", "encode_request", 214),
    ("net/proto/src/codec.rs", "encode_response", 137),
    ("net/proto/src/codec.rs", "decode_request", 171),
    ("net/proto/src/codec.rs", "decode_server", 151),
    ("net/src/config.rs", "Config::load", 122),
    ("perf/src/catchup.rs", "run", 102),
    ("perf/src/catchup.rs", "repair", 107),
    ("perf/src/fairness.rs", "phase", 167),
    ("perf/src/fairness.rs", "noisy_loop", 114),
    ("perf/src/fanout.rs", "run", 312),
    ("perf/src/restart.rs", "run", 158),
    ("perf/src/wal.rs", "measure", 113),
    ("tools/src/ledger.rs", "Violation::fmt", 117),
    ("tools/src/ledger.rs", "Ledger::check_partial", 142),
    ("tools/src/walinspect.rs", "inspect_log", 107),
    ("tools/src/walinspect.rs", "inspect_segment", 136),
    ("wal/src/recovery.rs", "recover", 264),
];

/// `unsafe` sites without a `// SAFETY:` comment when the rule came in, as
/// (file, count). Only ever lower.
const UNSAFE_WITHOUT_SAFETY: &[(&str, usize)] = &[];

/// Close-code literals outside `courier_proto::close` when the rule came in,
/// as (file, count). Only ever lower.
const CLOSE_CODE_LITERALS: &[(&str, usize)] = &[];

/// Crates (by directory) and whether they must forbid `unsafe`.
const CRATES: &[(&str, Unsafe)] = &[
    ("core", Unsafe::Forbidden),
    ("core/raft", Unsafe::Forbidden),
    ("cluster", Unsafe::Forbidden),
    ("net/proto", Unsafe::DeniedOutsideGenerated),
    ("wal", Unsafe::Allowed),
    ("net", Unsafe::Allowed),
    ("tools", Unsafe::Allowed),
    ("perf", Unsafe::Allowed),
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Unsafe {
    /// `#![forbid(unsafe_code)]` at the crate root.
    Forbidden,
    /// `#![deny(unsafe_code)]`, with an `allow` on the generated module.
    DeniedOutsideGenerated,
    /// The crate calls libc or does O_DIRECT buffers; each site says why.
    Allowed,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tools/ has a parent")
        .to_path_buf()
}

/// Every `.rs` file of the repository we own, relative to the root.
fn rust_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                let skip = matches!(
                    name,
                    "target" | ".git" | ".tools" | "generated" | "node_modules"
                ) || name.starts_with('.');
                if !skip {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                out.push(path.strip_prefix(root).expect("under root").to_path_buf());
            }
        }
    }
    out.sort();
    out
}

fn is_production(rel: &Path) -> bool {
    let s = rel.to_string_lossy();
    s.contains("/src/") && !s.starts_with("fuzz/")
}

struct File {
    rel: String,
    text: String,
    ast: syn::File,
}

fn load(root: &Path) -> Vec<File> {
    rust_files(root)
        .into_iter()
        .map(|rel| {
            let text = std::fs::read_to_string(root.join(&rel)).expect("read source");
            let ast = syn::parse_file(&text)
                .unwrap_or_else(|e| panic!("{}: does not parse: {e}", rel.display()));
            File {
                rel: rel.to_string_lossy().into_owned(),
                text,
                ast,
            }
        })
        .collect()
}

fn line_of(span: Span) -> usize {
    span.start().line
}

/// Functions with their qualified names and line counts; skips
/// `#[cfg(test)]` items.
#[derive(Default)]
struct Functions {
    scope: Vec<String>,
    found: Vec<(String, usize, usize)>,
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta.require_list().is_ok_and(|l| {
                l.tokens
                    .to_string()
                    .split(|c: char| !c.is_alphanumeric())
                    .any(|t| t == "test")
            })
    })
}

impl Functions {
    fn record(&mut self, name: &str, span: Span) {
        let lines = span.end().line - span.start().line + 1;
        let mut full = self.scope.join("::");
        if !full.is_empty() {
            full.push_str("::");
        }
        full.push_str(name);
        self.found.push((full, line_of(span), lines));
    }
}

impl<'ast> Visit<'ast> for Functions {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if is_cfg_test(&m.attrs) {
            return;
        }
        self.scope.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.scope.pop();
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if is_cfg_test(&i.attrs) {
            return;
        }
        let ty = match &*i.self_ty {
            syn::Type::Path(p) => p
                .path
                .segments
                .last()
                .map_or_else(|| "?".to_string(), |s| s.ident.to_string()),
            _ => "?".to_string(),
        };
        self.scope.push(ty);
        syn::visit::visit_item_impl(self, i);
        self.scope.pop();
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if is_cfg_test(&f.attrs) {
            return;
        }
        self.record(&f.sig.ident.to_string(), f.span());
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if is_cfg_test(&f.attrs) {
            return;
        }
        self.record(&f.sig.ident.to_string(), f.span());
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if f.default.is_some() {
            self.record(&f.sig.ident.to_string(), f.span());
        }
    }
}

/// Lines of `unsafe` blocks, fns and impls.
#[derive(Default)]
struct UnsafeSites(Vec<usize>);

impl<'ast> Visit<'ast> for UnsafeSites {
    fn visit_expr_unsafe(&mut self, e: &'ast syn::ExprUnsafe) {
        self.0.push(line_of(e.unsafe_token.span));
        syn::visit::visit_expr_unsafe(self, e);
    }

    fn visit_signature(&mut self, s: &'ast syn::Signature) {
        if let Some(u) = &s.unsafety {
            self.0.push(line_of(u.span));
        }
        syn::visit::visit_signature(self, s);
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if let Some(u) = &i.unsafety {
            self.0.push(line_of(u.span));
        }
        syn::visit::visit_item_impl(self, i);
    }
}

/// Close-code literals in code and strings (never in comments or docs).
struct CloseCodes<'a> {
    lines: Vec<&'a str>,
    found: Vec<(usize, String)>,
}

fn is_courier_code(n: u64) -> bool {
    courier_proto::close::ALL
        .iter()
        .any(|(c, _)| u64::from(*c) == n && *c >= 4000)
}

fn is_rfc_code(n: u64) -> bool {
    courier_proto::close::ALL
        .iter()
        .any(|(c, _)| u64::from(*c) == n && *c < 4000)
}

impl<'ast> Visit<'ast> for CloseCodes<'_> {
    fn visit_attribute(&mut self, _: &'ast syn::Attribute) {
        // Doc comments and attributes are prose, not code.
    }

    fn visit_lit_int(&mut self, lit: &'ast syn::LitInt) {
        let Ok(n) = lit.base10_parse::<u64>() else {
            return;
        };
        let line = line_of(lit.span());
        let text = self
            .lines
            .get(line - 1)
            .copied()
            .unwrap_or("")
            .to_lowercase();
        let closing = text.contains("close") || text.contains("code");
        if is_courier_code(n) || (is_rfc_code(n) && closing) {
            self.found.push((line, lit.to_string()));
        }
    }

    fn visit_lit_str(&mut self, lit: &'ast syn::LitStr) {
        let value = lit.value();
        let hit = value
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|t| t.parse::<u64>().ok())
            .any(is_courier_code);
        if hit {
            self.found
                .push((line_of(lit.span()), format!("{:?}", value)));
        }
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        // Macro bodies (assert!, format!, vec!, …) are token streams: look
        // at their literals too.
        for token in m.tokens.clone() {
            visit_token(self, token);
        }
    }
}

fn visit_token(v: &mut CloseCodes<'_>, token: proc_macro2::TokenTree) {
    match token {
        proc_macro2::TokenTree::Group(g) => {
            for t in g.stream() {
                visit_token(v, t);
            }
        }
        proc_macro2::TokenTree::Literal(l) => match syn::Lit::new(l) {
            syn::Lit::Int(i) => v.visit_lit_int(&i),
            syn::Lit::Str(s) => v.visit_lit_str(&s),
            _ => {}
        },
        _ => {}
    }
}

#[test]
fn every_file_opens_with_a_doc_line() {
    let root = repo_root();
    let missing: Vec<String> = rust_files(&root)
        .into_iter()
        .filter(|rel| {
            let text = std::fs::read_to_string(root.join(rel)).expect("read");
            !text.trim_start().starts_with("//!")
        })
        .map(|rel| rel.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` opening line: {missing:#?}"
    );
}

#[test]
fn crates_without_unsafe_forbid_it() {
    let root = repo_root();
    for (dir, rule) in CRATES {
        if *rule == Unsafe::Allowed {
            continue;
        }
        let lib = root.join(dir).join("src/lib.rs");
        let text = std::fs::read_to_string(&lib).expect("crate root src/lib.rs");
        let has = |attr: &str| text.lines().any(|l| l.trim() == attr);
        match rule {
            Unsafe::Forbidden => assert!(
                has("#![forbid(unsafe_code)]"),
                "{dir}: must keep #![forbid(unsafe_code)]"
            ),
            Unsafe::DeniedOutsideGenerated => assert!(
                has("#![deny(unsafe_code)]"),
                "{dir}: must keep #![deny(unsafe_code)]"
            ),
            Unsafe::Allowed => {}
        }
    }
}

/// Compares per-file counts with their recorded ceilings; the list only
/// shrinks.
fn ratchet(rule: &str, found: &BTreeMap<String, Vec<usize>>, recorded: &[(&str, usize)]) {
    let mut errors = Vec::new();
    for (file, lines) in found {
        let allowed = recorded
            .iter()
            .find(|(f, _)| f == file)
            .map_or(0, |(_, n)| *n);
        if lines.len() > allowed {
            errors.push(format!(
                "{file}: {} {rule} (allowed {allowed}) at lines {lines:?}",
                lines.len()
            ));
        }
    }
    for (file, n) in recorded {
        let now = found.get(*file).map_or(0, Vec::len);
        if now < *n {
            errors.push(format!(
                "{file}: {rule} went from {n} to {now}: lower the entry (the list only shrinks)"
            ));
        }
    }
    let now: Vec<String> = found
        .iter()
        .map(|(f, l)| format!("    (\"{f}\", {}),", l.len()))
        .collect();
    assert!(
        errors.is_empty(),
        "{}\nthe list as it reads now:\n{}",
        errors.join("\n"),
        now.join("\n")
    );
}

#[test]
fn every_unsafe_says_why_it_is_sound() {
    let root = repo_root();
    let mut found: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for file in load(&root) {
        let mut sites = UnsafeSites::default();
        sites.visit_file(&file.ast);
        let lines: Vec<&str> = file.text.lines().collect();
        for line in sites.0 {
            let from = line.saturating_sub(4);
            let justified = lines[from..line].iter().any(|l| l.contains("SAFETY:"));
            if !justified {
                found.entry(file.rel.clone()).or_default().push(line);
            }
        }
    }
    ratchet(
        "unsafe without a `// SAFETY:` comment",
        &found,
        UNSAFE_WITHOUT_SAFETY,
    );
}

#[test]
fn close_codes_are_spelled_only_in_courier_proto() {
    let root = repo_root();
    let mut found: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for file in load(&root) {
        if file.rel == "net/proto/src/close.rs" {
            continue;
        }
        let mut v = CloseCodes {
            lines: file.text.lines().collect(),
            found: Vec::new(),
        };
        v.visit_file(&file.ast);
        for (line, _) in v.found {
            found.entry(file.rel.clone()).or_default().push(line);
        }
    }
    ratchet(
        "close-code literals (use courier_proto::close)",
        &found,
        CLOSE_CODE_LITERALS,
    );
}

#[test]
fn production_functions_stay_short() {
    let root = repo_root();
    let mut long = Vec::new();
    for file in load(&root) {
        if !is_production(Path::new(&file.rel)) {
            continue;
        }
        let mut fns = Functions::default();
        fns.visit_file(&file.ast);
        for (name, line, lines) in fns.found {
            if lines > FN_LINES_MAX {
                long.push((file.rel.clone(), name, line, lines));
            }
        }
    }
    let mut errors = Vec::new();
    for (file, name, line, lines) in &long {
        match LONG_FUNCTIONS
            .iter()
            .find(|(f, n, _)| f == file && n == name)
        {
            None => errors.push(format!(
                "{file}:{line}: {name} is {lines} lines (limit {FN_LINES_MAX}): split it"
            )),
            Some((_, _, max)) if lines > max => errors.push(format!(
                "{file}:{line}: {name} grew to {lines} lines (ratchet {max}): split it"
            )),
            Some(_) => {}
        }
    }
    for (file, name, max) in LONG_FUNCTIONS {
        if !long.iter().any(|(f, n, _, _)| f == file && n == name) {
            errors.push(format!(
                "{file}: {name} (ratchet {max}) is now within {FN_LINES_MAX} lines or gone: remove it from LONG_FUNCTIONS"
            ));
        }
    }
    let now: Vec<String> = long
        .iter()
        .map(|(f, n, _, l)| format!("    (\"{f}\", \"{n}\", {l}),"))
        .collect();
    assert!(
        errors.is_empty(),
        "{}\nLONG_FUNCTIONS as it reads now:\n{}",
        errors.join("\n"),
        now.join("\n")
    );
}
