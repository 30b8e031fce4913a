# Offline evaluation test of flake.nix's outputs, with nixpkgs' `lib` only.
# Calls the flake's `outputs` function with a stub `nixpkgs` whose
# `legacyPackages.<system>` is a stub package set (see test-stubs.nix), then
# checks the shape of every output and the arguments handed to the builders:
# nothing is built, no nixpkgs source is needed. Run by nix/check.sh:
#
#   nix-instantiate --eval --strict --json nix/eval-flake-test.nix \
#     --argstr libPath /path/to/nixpkgs-lib/lib
#
# Returns { checked = N; failures = [ ... ]; }.
{
  libPath ? null,
  lib ? import libPath,
}:

let
  root = ../.;
  flake = import (root + "/flake.nix");
  stubs = import ./test-stubs.nix { inherit lib; };
  inherit (stubs) fakeDrv;

  systems = [
    "x86_64-linux"
    "aarch64-linux"
  ];

  # A derivation stand-in that remembers the arguments it was made from and
  # supports overrideAttrs the way mkDerivation does.
  recordingDrv =
    args:
    fakeDrv (args.pname or args.name or "drv") {
      inherit args;
      inherit (args) src;
      meta = args.meta or { };
      overrideAttrs = f: recordingDrv (args // f args);
    };

  pkgsFor = pkgsMarked "flake";

  # `marker` tells whose package set a package was built with.
  pkgsMarked =
    marker: system:
    let
      self = stubs.stubPkgs // {
        inherit lib;
        callPackage = lib.callPackageWith self;
        stdenv = {
          hostPlatform.system = system;
          buildPlatform.canExecute = _: true;
        };
        rustPlatform = {
          buildRustPackage = args: recordingDrv (args // { builtWith = marker; });
          rustLibSrc = fakeDrv "rust-lib-src" { };
        };
        runCommand =
          name: env: script:
          fakeDrv name { inherit env script; };
        mkShell = args: fakeDrv "shell" { inherit args; };
        testers.nixosTest = test: fakeDrv "vm-test-${test.name}" { inherit test; };
        nixfmt-rfc-style = fakeDrv "nixfmt" { };
      }
      // lib.genAttrs [
        "installShellFiles"
        "pkg-config"
        "cargo"
        "rustc"
        "clippy"
        "rustfmt"
        "rust-analyzer"
        "sshfs"
        "openssh"
      ] (n: fakeDrv n { });
    in
    self;

  nixpkgs = {
    inherit lib;
    legacyPackages = lib.genAttrs systems pkgsFor;
  };

  outputs = flake.outputs {
    self = outputs // {
      outPath = toString root;
    };
    inherit nixpkgs;
  };

  check = what: ok: [ { inherit what ok; } ];

  cargoToml = lib.importTOML (root + "/Cargo.toml");

  perSystem =
    system:
    let
      c = what: ok: check "${system}: ${what}" ok;
      pkg = outputs.packages.${system}.default;
      a = pkg.args;
      checks = outputs.checks.${system};
      shell = outputs.devShells.${system}.default.args;
      shellNames = map (p: p.name) shell.packages;
      vm = checks.vm-two-nodes.test;
      examplesScript = checks.examples.script;
      exampleFiles = lib.filter (n: lib.hasSuffix ".yaml" n) (
        lib.attrNames (builtins.readDir (root + "/examples"))
      );
    in
    c "packages: default and globofs" (
      lib.attrNames outputs.packages.${system} == [
        "default"
        "globofs"
      ]
    )
    ++ c "package built with buildRustPackage, pname globofs, version from Cargo.toml" (
      a.pname == "globofs" && a.version == cargoToml.package.version
    )
    ++ c "cargoLock.lockFile is ./Cargo.lock" (
      toString a.cargoLock.lockFile == toString (root + "/Cargo.lock")
    )
    ++ c "checkPhase runs the unit and spec tests only (no FUSE, root or network in the sandbox)" (
      a.doCheck
      && a.cargoTestFlags == [
        "--lib"
        "--test"
        "validate"
        "--test"
        "schema"
      ]
    )
    ++ c "the tests named in cargoTestFlags exist" (
      builtins.pathExists (root + "/tests/validate.rs") && builtins.pathExists (root + "/tests/schema.rs")
    )
    ++ c "bash, zsh and fish completions installed" (
      lib.all (sh: lib.hasInfix "--${sh} <($out/bin/globofs completions ${sh})" a.postInstall) [
        "bash"
        "zsh"
        "fish"
      ]
    )
    ++ c "man pages installed" (
      lib.hasInfix "$out/bin/globofs man " a.postInstall && lib.hasInfix "installManPage" a.postInstall
    )
    ++ c "meta.mainProgram" (a.meta.mainProgram == "globofs")
    ++ c "apps.default runs bin/globofs" (
      outputs.apps.${system}.default.type == "app"
      && outputs.apps.${system}.default.program == "${pkg}/bin/globofs"
    )
    ++ c "checks: package, clippy, fmt, examples, vm-two-nodes" (
      lib.attrNames checks == [
        "clippy"
        "examples"
        "fmt"
        "package"
        "vm-two-nodes"
      ]
    )
    ++ c "checks.package is the package" (checks.package == pkg)
    ++ c "clippy denies warnings on all targets" (
      lib.hasInfix "cargo clippy --offline --all-targets -- -D warnings" checks.clippy.args.buildPhase
      && builtins.elem "clippy" (map (p: p.name) checks.clippy.args.nativeBuildInputs)
    )
    ++ c "fmt runs cargo fmt --check on the package's source" (
      lib.hasInfix "cargo fmt --all --check" checks.fmt.script
    )
    ++ c "examples: every examples/*.yaml is validated (${toString (builtins.length exampleFiles)} files)" (
      exampleFiles != [ ]
      && lib.all (
        f: lib.hasInfix "globofs validate" examplesScript && lib.hasInfix "-${f}" examplesScript
      ) exampleFiles
    )
    ++ c "VM test has two nodes" (
      lib.attrNames vm.nodes == [
        "alpha"
        "beta"
      ]
    )
    ++ c "VM test writes on one node and reads on the other" (
      lib.all (s: lib.hasInfix s vm.testScript) [
        "put /tmp/hello.txt"
        "get /hello.txt"
        "/mnt/globofs/from-beta.txt"
      ]
    )
    ++ c "VM test: a normal user through the mount, a peer added by a configuration switch, inbound spool owners" (
      lib.all (s: lib.hasInfix s vm.testScript) [
        "su alice -c"
        "specialisation/withPeer/bin/switch-to-configuration test"
        "detaching it lazily"
        "spool/inbound/{peer_id})\\\" = gfs-{peer}:globofs-peers"
      ]
    )
    ++ c "devShell has the Rust toolchain, fuse3, sshfs, openssh" (
      lib.all (n: builtins.elem n shellNames) [
        "cargo"
        "rustc"
        "clippy"
        "rustfmt"
        "fuse-3"
        "sshfs"
        "openssh"
      ]
    )
    ++ c "formatter" (outputs.formatter.${system}.name == "nixfmt");

  # The VM test's node configurations, as far as GloboFS goes: evaluated with
  # the module through the flake's wrapper. Options of other NixOS modules
  # (NFS server, firewall) are not declared here, so `_module.check = false`
  # lets their definitions pass unchecked.
  vmNodeChecks =
    let
      # The machine's own package set, not the flake's.
      pkgs = pkgsMarked "node" "x86_64-linux";
      vm = outputs.checks.x86_64-linux.vm-two-nodes.test;
      evalNode =
        name:
        (lib.evalModules {
          modules = [
            stubs.nixosStubs
            vm.nodes.${name}
            {
              _module.args.pkgs = pkgs;
              _module.check = false;
            }
          ];
        }).config;
      nodeCheck =
        name:
        let
          config = evalNode name;
          failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
          unit = config.systemd.services.globofs-shared;
        in
        check "VM node ${name}: module assertions hold (failed: ${builtins.toJSON failed})" (failed == [ ])
        ++ check "VM node ${name}: package defaults to package.nix built with the machine's pkgs (nixosModules.default)" (
          config.services.globofs.package.args.builtWith == "node"
          && config.services.globofs.package.args.pname == "globofs"
        )
        ++ check "VM node ${name}: unit runs that globofs" (
          lib.hasPrefix "${config.services.globofs.package}/bin/globofs --spec " unit.serviceConfig.ExecStart
        );
    in
    nodeCheck "alpha" ++ nodeCheck "beta";

  sourceFiles = map (f: lib.removePrefix (toString root + "/") (toString f)) (
    lib.fileset.toList (import ./source.nix { inherit lib; })
  );

  topLevel =
    check "systems: x86_64-linux and aarch64-linux" (
      lib.all (out: lib.attrNames outputs.${out} == lib.sort lib.lessThan systems) [
        "packages"
        "apps"
        "checks"
        "devShells"
        "formatter"
      ]
    )
    ++ check "nixosModules.default imports modules/globofs.nix" (
      builtins.elem (root + "/modules/globofs.nix")
        (outputs.nixosModules.default {
          inherit lib;
          pkgs = pkgsFor "x86_64-linux";
        }).imports
    )
    ++ check "lib.validateSpecs is a function" (builtins.isFunction outputs.lib.validateSpecs)
    ++ check "overlays.default adds globofs" (
      (outputs.overlays.default (pkgsFor "x86_64-linux") { }) ? globofs
    )
    ++ check "source filter keeps Cargo.toml and src/" (
      builtins.elem "Cargo.toml" sourceFiles && lib.any (lib.hasPrefix "src/") sourceFiles
    )
    ++ check "source filter keeps schema/ when present" (
      !(builtins.pathExists (root + "/schema")) || lib.any (lib.hasPrefix "schema/") sourceFiles
    )
    ++ check "source filter keeps tests/ (fixtures too) when present" (
      !(builtins.pathExists (root + "/tests")) || lib.any (lib.hasPrefix "tests/") sourceFiles
    )
    ++ check "source filter leaves out the Nix files, docs and target/" (
      !(lib.any (
        f:
        lib.hasPrefix "nix/" f
        || lib.hasPrefix "modules/" f
        || lib.hasPrefix "target/" f
        || lib.hasPrefix "docs/" f
        || f == "flake.nix"
        || f == "flake.lock"
      ) sourceFiles)
    );

  all = topLevel ++ lib.concatMap perSystem systems ++ vmNodeChecks;
in
{
  checked = builtins.length all;
  failures = map (c: c.what) (lib.filter (c: !c.ok) all);
}
