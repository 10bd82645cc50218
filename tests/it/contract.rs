//! The copy of the contract in `docs/contract/` (what the README, the docs
//! and the dashboard test read) is the contract itself: byte for byte the
//! files of `shared/contract/`, found in an ancestor of the repository (the
//! layout the project is developed in) or in `$FUNNELSTREAM_CONTRACT_DIR`.

use crate::support::manifest;
use std::path::PathBuf;

const FILES: [&str; 3] = ["EVENTS.md", "METRICS.md", "CLI.md"];

/// `shared/contract/`, if this machine has it.
fn shared_contract_dir() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("FUNNELSTREAM_CONTRACT_DIR")
        .map(|d| vec![PathBuf::from(d)])
        .unwrap_or_default();
    candidates.extend(
        manifest("")
            .ancestors()
            .skip(1)
            .map(|a| a.join("shared/contract")),
    );
    candidates
        .into_iter()
        .find(|d| FILES.iter().all(|f| d.join(f).is_file()))
}

#[test]
fn the_copy_in_docs_is_the_shared_contract() {
    for f in FILES {
        let copy = manifest("docs/contract").join(f);
        let text =
            std::fs::read_to_string(&copy).unwrap_or_else(|e| panic!("{}: {e}", copy.display()));
        assert!(
            text.contains("(v2)"),
            "{}: not the v2 contract",
            copy.display()
        );
    }
    let Some(dir) = shared_contract_dir() else {
        eprintln!(
            "shared/contract/ not found (an ancestor of the repository, or \
             $FUNNELSTREAM_CONTRACT_DIR): the copy in docs/contract/ was not compared"
        );
        return;
    };
    for f in FILES {
        let copy = std::fs::read(manifest("docs/contract").join(f)).unwrap();
        let shared = std::fs::read(dir.join(f)).unwrap();
        assert!(
            copy == shared,
            "docs/contract/{f} differs from {}: copy the contract again",
            dir.join(f).display()
        );
    }
}
