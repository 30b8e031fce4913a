# globofs, the binary, with its man pages and shell completions.
# Called by flake.nix as `pkgs.callPackage ./nix/package.nix { }`.
{
  lib,
  stdenv,
  rustPlatform,
  installShellFiles,
  pkg-config,
  fuse3,
}:

let
  cargoToml = lib.importTOML ../Cargo.toml;
in
rustPlatform.buildRustPackage {
  pname = "globofs";
  inherit (cargoToml.package) version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = import ./source.nix { inherit lib; };
  };

  cargoLock.lockFile = ../Cargo.lock;

  # fuser mounts with mount(2) as root and falls back to the fusermount3
  # found on PATH (on NixOS the setuid wrapper of programs.fuse), so nothing
  # links libfuse today; pkg-config and fuse3 are here for the day a
  # `libfuse3` feature of fuser is turned on.
  nativeBuildInputs = [
    pkg-config
    installShellFiles
  ];
  buildInputs = [ fuse3 ];

  # The tests that need no FUSE, no root and no network: the unit tests
  # (store, sync, spec and mount core without a kernel) and the spec tests
  # (`globofs validate` on the corpus, the committed JSON Schema). The other
  # integration tests mount FUSE filesystems, chown, and start sshd/sshfs
  # peers; the sandbox has no /dev/fuse and no network, so they run in CI
  # and, on Nix, the NixOS VM test (checks.<system>.vm-two-nodes) exercises
  # the real mount. These three ran here as an unprivileged user.
  doCheck = true;
  cargoTestFlags = [
    "--lib"
    "--test"
    "validate"
    "--test"
    "schema"
  ];

  # `globofs man DIR` and `globofs completions SHELL` are hidden subcommands
  # that print what clap knows about the CLI; run them on the built binary.
  postInstall = lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
    installShellCompletion --cmd globofs \
      --bash <($out/bin/globofs completions bash) \
      --zsh <($out/bin/globofs completions zsh) \
      --fish <($out/bin/globofs completions fish)
    mkdir -p man-pages
    $out/bin/globofs man man-pages
    installManPage man-pages/*
  '';

  # No `license` or `homepage` yet: the repository names neither (no LICENSE
  # file, no `license` or `repository` in Cargo.toml). Add them here when it does.
  meta = {
    description = "Filesystem shared by many machines through plain directories (NFS, sshfs, ...), mounted with FUSE";
    mainProgram = "globofs";
    platforms = lib.platforms.linux;
  };
}
