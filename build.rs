//! Link settings of the browser build: keeps each page's constant data (its texts, its templates)
//! in the page's own chunk when `cargo leptos build --split` splits the WebAssembly.
//!
//! Why: an optimising link merges the constant data of the whole program into a few segments
//! (strings that end alike share bytes), and cargo-leptos's splitter moves a segment to a chunk
//! only when every part of it belongs to that chunk: merged, every page's texts stayed in the
//! main chunk that every first visit downloads (cargo-leptos issue 679; measured in
//! docs/performance.md). Unmerged, each constant is a segment of its own and goes with the code
//! that uses it. Nothing changes for the server build.
//!
//! Catalogue: none (download size, issue 25).

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|arch| arch.starts_with("wasm")) {
        println!("cargo:rustc-link-arg-cdylib=--no-merge-data-segments");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
