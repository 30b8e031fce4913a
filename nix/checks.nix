# `nix flake check`: the package, clippy, rustfmt, the example specs and the
# two-node NixOS VM test. Called by flake.nix for each system.
{
  pkgs,
  self,
  globofs,
}:

{
  package = globofs;

  # Same sources, vendored crates and build inputs as the package; only the
  # build phase differs. Warnings are errors, for every target (tests too).
  clippy = globofs.overrideAttrs (old: {
    pname = "globofs-clippy";
    nativeBuildInputs = old.nativeBuildInputs ++ [ pkgs.clippy ];
    buildPhase = ''
      runHook preBuild
      cargo clippy --offline --all-targets -- -D warnings
      runHook postBuild
    '';
    installPhase = ''
      touch $out
    '';
    doCheck = false;
    doInstallCheck = false;
  });

  fmt =
    pkgs.runCommand "globofs-fmt"
      {
        nativeBuildInputs = [
          pkgs.cargo
          pkgs.rustfmt
        ];
      }
      ''
        cp -r ${globofs.src} source
        chmod -R u+w source
        cd source
        export HOME=$TMPDIR
        cargo fmt --all --check
        touch $out
      '';

  # Every spec under examples/ must pass `globofs validate`.
  examples = self.lib.validateSpecs {
    inherit pkgs;
    name = "globofs-examples";
    specs = ../examples;
  };

  vm-two-nodes = pkgs.testers.nixosTest (import ./vm-test.nix { inherit self; });
}
