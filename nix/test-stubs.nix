# Stand-ins for what the offline Nix tests cannot have: a nixpkgs package set
# (no binary cache, no nixpkgs source) and the NixOS option declarations the
# GloboFS module sets. Only nixpkgs' `lib` is real.
#
# The "derivations" here are attribute sets with a fake store path, so string
# interpolation works and nothing is ever built. The option stubs use the names
# and types NixOS declares, so a misspelt unit attribute or a wrong type still
# fails evaluation.
{ lib }:

let
  inherit (lib) types mkOption;

  # ---- stub pkgs -----------------------------------------------------------------------

  fakeDrv = name: extra: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
    drvPath = "/nix/store/00000000000000000000000000000000-${name}.drv";
  }
  // extra;

  stubPkgs = {
    globofs = fakeDrv "globofs-0.1.0" { meta.mainProgram = "globofs"; };
    fuse3 = fakeDrv "fuse-3" { };
    sshfs = fakeDrv "sshfs" { };
    coreutils = fakeDrv "coreutils-9" { };
    stdenv = {
      hostPlatform.system = "x86_64-linux";
      buildPlatform.canExecute = _: true;
    };
    # A real file (builtins.toFile), so tests can read the script a unit runs.
    writeShellScript =
      name: text:
      fakeDrv name {
        outPath = builtins.toFile name "#!/bin/sh\n${text}";
        inherit text;
      };
    runCommand =
      name: env: script:
      fakeDrv name { inherit env script; };
    formats.yaml =
      { }:
      {
        # As in nixpkgs' pkgs/pkgs-lib/formats.nix.
        type =
          let
            valueType =
              types.nullOr (
                types.oneOf [
                  types.bool
                  types.int
                  types.float
                  types.str
                  types.path
                  (types.attrsOf valueType)
                  (types.listOf valueType)
                ]
              )
              // {
                description = "YAML value";
              };
          in
          valueType;
        generate = name: value: fakeDrv name { passthru.value = value; };
      };
  };

  # ---- stub NixOS options (names and types as in nixos/modules) ----------------------

  unitOption = types.oneOf [
    types.bool
    types.int
    types.str
    types.path
    (types.listOf (
      types.oneOf [
        types.bool
        types.int
        types.str
        types.path
      ]
    ))
  ];

  serviceModule = {
    options = {
      enable = mkOption {
        type = types.bool;
        default = true;
      };
      description = mkOption {
        type = types.str;
        default = "";
      };
      documentation = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      wantedBy = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      requiredBy = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      after = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      before = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      wants = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      requires = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      bindsTo = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      partOf = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      path = mkOption {
        type = types.listOf (types.either types.package types.str);
        default = [ ];
      };
      environment = mkOption {
        type = types.attrsOf (types.nullOr (types.either types.str types.package));
        default = { };
      };
      restartIfChanged = mkOption {
        type = types.bool;
        default = true;
      };
      restartTriggers = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      reloadIfChanged = mkOption {
        type = types.bool;
        default = false;
      };
      reloadTriggers = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      unitConfig = mkOption {
        type = types.attrsOf unitOption;
        default = { };
      };
      serviceConfig = mkOption {
        type = types.attrsOf unitOption;
        default = { };
      };
    };
  };

  nixosStubs = {
    options = {
      assertions = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      warnings = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      networking.hostName = mkOption {
        type = types.str;
        default = "nixos";
      };
      programs.fuse = {
        enable = mkOption {
          type = types.bool;
          default = false;
        };
        userAllowOther = mkOption {
          type = types.bool;
          default = false;
        };
      };
      environment.systemPackages = mkOption {
        type = types.listOf types.package;
        default = [ ];
      };
      environment.etc = mkOption {
        type = types.attrsOf (
          types.submodule {
            options = {
              source = mkOption { type = types.path; };
              mode = mkOption {
                type = types.str;
                default = "symlink";
              };
            };
          }
        );
        default = { };
      };
      systemd.services = mkOption {
        type = types.attrsOf (types.submodule serviceModule);
        default = { };
      };
      fileSystems = mkOption {
        type = types.attrsOf (
          types.submodule (
            { name, ... }:
            {
              options = {
                mountPoint = mkOption {
                  type = types.str;
                  default = name;
                };
                device = mkOption {
                  type = types.nullOr types.str;
                  default = null;
                };
                fsType = mkOption {
                  type = types.str;
                  default = "auto";
                };
                options = mkOption {
                  type = types.nonEmptyListOf types.str;
                  default = [ "defaults" ];
                };
              };
            }
          )
        );
        default = { };
      };
      system.fsPackages = mkOption {
        type = types.listOf types.package;
        default = [ ];
      };
      users.groups = mkOption {
        type = types.attrsOf (types.submodule { options.gid = mkOption { type = types.nullOr types.int; default = null; }; });
        default = { };
      };
      users.users = mkOption {
        type = types.attrsOf (
          types.submodule {
            options = {
              isSystemUser = mkOption {
                type = types.bool;
                default = false;
              };
              group = mkOption {
                type = types.str;
                default = "";
              };
              description = mkOption {
                type = types.str;
                default = "";
              };
              home = mkOption {
                type = types.path;
                default = "/var/empty";
              };
              shell = mkOption {
                type = types.nullOr (types.either types.package types.path);
                default = null;
              };
              openssh.authorizedKeys.keys = mkOption {
                type = types.listOf types.str;
                default = [ ];
              };
            };
          }
        );
        default = { };
      };
      services.openssh.extraConfig = mkOption {
        type = types.lines;
        default = "";
      };
      systemd.tmpfiles.rules = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
    };
  };

in
{
  inherit fakeDrv stubPkgs nixosStubs;
}
