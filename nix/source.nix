# The files the Rust build sees. Everything else (flake.nix, modules/, nix/,
# docs, CI scripts) stays out, so editing them does not rebuild globofs.
# schema/ (the committed JSON Schema) and tests/ (fixtures included) stay in:
# the crate and its tests read them. `maybeMissing` lets the flake evaluate
# before those directories exist.
{ lib }:

let
  root = ../.;
  optional = path: lib.fileset.maybeMissing path;
in
lib.fileset.unions [
  (root + "/Cargo.toml")
  (optional (root + "/Cargo.lock"))
  (root + "/src")
  (optional (root + "/build.rs"))
  (optional (root + "/schema"))
  (optional (root + "/tests"))
  (optional (root + "/benches"))
  # Example specs: tests may validate them; `include_str!` of the README may
  # feed the crate docs.
  (optional (root + "/examples"))
  (optional (root + "/README.md"))
]
