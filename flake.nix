{
  description = "GloboFS: a filesystem shared by many machines through plain directories, mounted with FUSE";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];

      forAllSystems = f: lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (
        system: pkgs: {
          globofs = pkgs.callPackage ./nix/package.nix { };
          default = self.packages.${system}.globofs;
        }
      );

      # nix run . -- validate examples/*.yaml
      # nix run . -- --spec /etc/globofs/shared.yaml mount
      apps = forAllSystems (
        system: pkgs: {
          default = {
            type = "app";
            program = lib.getExe self.packages.${system}.default;
            meta.description = "The globofs command line (validate, reconcile, mount, put, get, sync, status)";
          };
        }
      );

      overlays.default = final: _prev: {
        globofs = final.callPackage ./nix/package.nix { };
      };

      # The module itself is modules/globofs.nix; this wrapper only makes this
      # flake's package.nix the default package, built with the system's own
      # `pkgs` (its nixpkgs, overlays and platform), so no second nixpkgs is
      # evaluated.
      nixosModules.default =
        { lib, pkgs, ... }:
        {
          imports = [ ./modules/globofs.nix ];
          services.globofs.package = lib.mkDefault (pkgs.callPackage ./nix/package.nix { });
        };
      nixosModules.globofs = self.nixosModules.default;

      lib = {
        # Build-time `globofs validate` of spec files, for a user's CI:
        #   checks.${system}.specs = globofs.lib.validateSpecs { inherit pkgs; specs = ./specs; };
        # `specs`: a directory (every *.yaml / *.yml in it), one file, or a list of files.
        validateSpecs =
          {
            pkgs,
            specs,
            name ? "globofs-validate-specs",
            package ? self.packages.${pkgs.stdenv.hostPlatform.system}.default,
          }:
          import ./nix/validate-specs.nix {
            inherit (pkgs) lib runCommand;
            globofs = package;
          } { inherit specs name; };
      };

      checks = forAllSystems (
        system: pkgs:
        import ./nix/checks.nix {
          inherit pkgs self;
          globofs = self.packages.${system}.default;
        }
      );

      devShells = forAllSystems (
        system: pkgs: {
          default = pkgs.mkShell {
            inputsFrom = [ self.packages.${system}.default ];
            packages = with pkgs; [
              cargo
              rustc
              clippy
              rustfmt
              rust-analyzer
              pkg-config
              fuse3
              sshfs
              openssh
            ];
            RUST_SRC_PATH = "${pkgs.rustPlatform.rustLibSrc}";
          };
        }
      );

      formatter = forAllSystems (_system: pkgs: pkgs.nixfmt-rfc-style);
    };
}
