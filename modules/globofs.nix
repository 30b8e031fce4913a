# NixOS module for GloboFS: one systemd service per declared volume.
#
# For each `services.globofs.volumes.<name>` this module
#   - builds the volume spec (YAML) from typed options plus the freeform
#     `settings`, and runs `globofs validate` on it at build time, so a bad
#     spec fails `nixos-rebuild`, not the boot;
#   - links the validated spec to /etc/globofs/<name>.yaml, so that
#     `globofs --spec /etc/globofs/<name>.yaml status` works from a shell;
#   - runs `globofs-<name>.service`: `reconcile`, then `mount` (Type=notify).
#
# Peers are plain directories (NFS, sshfs, ...) that the admin mounts by other
# means. The service never requires them: a peer that is away must not keep a
# node from starting (GloboFS queues changes for it in the outbound spool).
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib)
    mkOption
    mkEnableOption
    mkIf
    mkMerge
    types
    literalExpression
    ;

  cfg = config.services.globofs;

  yaml = pkgs.formats.yaml { };

  # ---- types for the spec's values -------------------------------------------------

  isAbsolutePath =
    p:
    builtins.isString p
    && lib.hasPrefix "/" p
    && !(builtins.elem ".." (lib.splitString "/" p))
    && (p == "/" || !(lib.hasSuffix "/" p));

  absolutePath = lib.mkOptionType {
    name = "globofsAbsolutePath";
    description = "absolute path (a string starting with `/`, without `..` or a trailing `/`)";
    descriptionClass = "noun";
    check = isAbsolutePath;
    merge = lib.mergeEqualOption;
  };

  uuidRegex = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

  # Lower case only: the id names the store directory and the `<peer-id>`
  # symlinks, so `ABC...` and `abc...` would be two different nodes on disk.
  nodeIdType = lib.mkOptionType {
    name = "globofsNodeId";
    description = "lower-case UUID (as printed by `uuidgen`)";
    descriptionClass = "noun";
    check = x: builtins.isString x && builtins.match uuidRegex x != null;
    merge = lib.mergeEqualOption;
  };

  # The same grammar as the spec's JSON Schema (schema/), so a typo fails at
  # evaluation with the option's name rather than at the build-time check.
  # Sizes: integer bytes, or a string with a binary unit ("4KiB", "1M", "10GiB").
  sizeType = types.either types.ints.positive (
    types.strMatching " *[0-9]+ *(B|K|KiB|M|MiB|G|GiB|T|TiB)? *"
  );

  # Durations: integer seconds, or a string with a unit ("500ms", "30s", "5m", "1h", "30d").
  durationType = types.either types.ints.unsigned (types.strMatching " *[0-9]+ *(ms|s|m|h|d)? *");

  # ---- one peer ----------------------------------------------------------------------

  peerModule = {
    options = {
      id = mkOption {
        type = nodeIdType;
        example = "ea8192ee-593f-437f-af60-90d213995480";
        description = "Node id (UUID) of the peer. Written to the spec as `peers[].id`.";
      };
      path = mkOption {
        type = absolutePath;
        example = "/mnt/peers/beta/ea8192ee-593f-437f-af60-90d213995480";
        description = ''
          Where this node sees the peer's store: a directory on a filesystem
          that the peer exports (NFS, sshfs, SMB, a local disk). Written to the
          spec as `peers[].path`.

          The service does not depend on this path: mount it yourself (for
          example with `fileSystems` and `x-systemd.automount`); while it is
          missing GloboFS treats the peer as away and queues changes for it.
        '';
      };
      replicate = mkOption {
        type = types.nullOr types.bool;
        default = null;
        description = ''
          Push blocks to this peer eagerly instead of letting it pull them
          lazily when they are read. `null` falls back to the volume's
          `replicate` option; when both are `null` the key is left out of the
          spec and the `globofs` default (lazy) applies.
        '';
      };
    };
  };

  # ---- one volume --------------------------------------------------------------------

  volumeModule =
    { name, config, ... }:
    let
      vol = config;
      nonEmpty = attrs: lib.filterAttrs (_: v: v != null) attrs;

      # The typed options, as spec keys, leaving out what is unset.
      typedSpec = mkMerge [
        {
          volume = vol.volume;
          node.id = vol.nodeId;
          mount.path = vol.mountPoint;
        }
        (mkIf (vol.blockSize != null) { block_size = vol.blockSize; })
        (mkIf (vol.major != null) { node.major = vol.major; })
        (mkIf (vol.compression != null) { inherit (vol) compression; })
        (mkIf (vol.peers != [ ]) {
          peers = map (
            p:
            {
              inherit (p) id path;
            }
            // lib.optionalAttrs (effectiveReplicate p != null) { replicate = effectiveReplicate p; }
          ) vol.peers;
        })
        (mkIf (vol.syncInterval != null || vol.syncTimeout != null) {
          sync = nonEmpty {
            interval = vol.syncInterval;
            timeout = vol.syncTimeout;
          };
        })
        (mkIf (vol.retention.keepLast != null || vol.retention.keepWithin != null) {
          retention = nonEmpty {
            keep_last = vol.retention.keepLast;
            keep_within = vol.retention.keepWithin;
          };
        })
        (mkIf (vol.ignore != [ ]) { inherit (vol) ignore; })
        (mkIf (vol.cache.maxSize != null || vol.cache.minCopies != null) {
          cache = nonEmpty {
            max_size = vol.cache.maxSize;
            min_copies = vol.cache.minCopies;
          };
        })
      ];

      effectiveReplicate = p: if p.replicate != null then p.replicate else vol.replicate;

      # Remove nulls everywhere (the YAML must not carry `key: null`) and the
      # attribute sets that become empty on the way.
      stripNulls =
        v:
        if builtins.isAttrs v then
          lib.filterAttrs (_: x: x != null && x != { }) (lib.mapAttrs (_: stripNulls) v)
        else if builtins.isList v then
          map stripNulls (builtins.filter (x: x != null) v)
        else
          v;

      uncheckedSpec = yaml.generate "globofs-${name}-unchecked.yaml" vol.generatedSpec;
    in
    {
      options = {
        volume = mkOption {
          type = absolutePath;
          default = "/var/lib/globofs/${name}";
          defaultText = literalExpression ''"/var/lib/globofs/''${name}"'';
          example = "/srv/globofs";
          description = ''
            The volume directory on local disk. It holds this node's store
            (`<nodeId>/`), the `self` symlink and one symlink per peer; the
            service's `ExecStartPre` (`globofs reconcile`) creates what is
            missing. Spec key `volume`.
          '';
        };

        nodeId = mkOption {
          type = nodeIdType;
          example = "68d25a11-a34a-4bbb-a29e-c9bd06ff8c53";
          description = ''
            This node's id in the volume, a UUID (make one with `uuidgen`).
            Every node of a volume needs its own: never copy it to a second
            machine. Spec key `node.id`.
          '';
        };

        major = mkOption {
          type = types.nullOr (types.ints.between 1 999999);
          default = null;
          example = 100;
          description = ''
            Optional major number appended to this node's version ids
            (`1348096782.553456124` becomes `1348096782.553456124100`); breaks
            ties between versions written in the same nanosecond. Spec key
            `node.major`.
          '';
        };

        blockSize = mkOption {
          type = types.nullOr sizeType;
          default = null;
          example = "4MiB";
          description = ''
            Size of the chunks new files are cut into before hashing: bytes, or
            a string with a binary unit (`K` = `KiB`, `M` = `MiB`, `G` = `GiB`).
            Must be a power of two from 4 KiB to 64 MiB (checked by
            `globofs validate` at build time). Every version records its own
            block size, so this may change later. `null` leaves the key out
            (`globofs` default: 1MiB). Spec key `block_size`.
          '';
        };

        compression = mkOption {
          type = types.nullOr (
            types.enum [
              "none"
              "zstd"
            ]
          );
          default = null;
          example = "zstd";
          description = ''
            How this node stores blocks on its own disk; hashes are always of
            the uncompressed data. `null` leaves the key out (`globofs`
            default: `none`). Spec key `compression`.
          '';
        };

        peers = mkOption {
          type = types.listOf (types.submodule peerModule);
          default = [ ];
          example = literalExpression ''
            [
              {
                id = "ea8192ee-593f-437f-af60-90d213995480";
                path = "/mnt/peers/beta/ea8192ee-593f-437f-af60-90d213995480";
              }
            ]
          '';
          description = ''
            The other nodes of the volume and where this node sees their
            stores. Spec key `peers`.
          '';
        };

        replicate = mkOption {
          type = types.nullOr types.bool;
          default = null;
          description = ''
            Default for the peers' `replicate` (eager block replication), for
            the peers that leave theirs `null`. The spec has no volume-wide key:
            this is written into each `peers[].replicate`.
          '';
        };

        mountPoint = mkOption {
          type = absolutePath;
          example = "/mnt/globofs";
          description = ''
            Where the service mounts the merged tree with FUSE (required).
            Created at boot (systemd-tmpfiles) if missing. Spec key
            `mount.path`.
          '';
        };

        syncInterval = mkOption {
          type = types.nullOr durationType;
          default = null;
          example = "30s";
          description = ''
            How often the mount exchanges changes with its peers: integer
            seconds or a string with unit `ms`, `s`, `m`, `h` or `d`. `null`
            leaves the key out (`globofs` default: 30s). Spec key
            `sync.interval`.
          '';
        };

        syncTimeout = mkOption {
          type = types.nullOr durationType;
          default = null;
          example = "10s";
          description = ''
            Time limit for one operation on a peer's directory; a peer that does
            not answer in time is marked away instead of hanging the mount.
            `null` leaves the key out (`globofs` default: 10s). Spec key
            `sync.timeout`.
          '';
        };

        retention = {
          keepLast = mkOption {
            type = types.nullOr types.ints.positive;
            default = null;
            example = 10;
            description = "Keep at least this many old versions of each file. Spec key `retention.keep_last`.";
          };
          keepWithin = mkOption {
            type = types.nullOr durationType;
            default = null;
            example = "30d";
            description = "Keep every old version younger than this. Spec key `retention.keep_within`.";
          };
        };

        ignore = mkOption {
          type = types.listOf types.str;
          default = [ ];
          example = [
            "*.swp"
            ".DS_Store"
          ];
          description = "Glob patterns of paths that are never synced. Spec key `ignore`.";
        };

        cache = {
          maxSize = mkOption {
            type = types.nullOr sizeType;
            default = null;
            example = "10GiB";
            description = ''
              Upper bound for blocks kept locally only as a cache of other
              nodes' data. Spec key `cache.max_size`.
            '';
          };
          minCopies = mkOption {
            type = types.nullOr types.ints.positive;
            default = null;
            example = 1;
            description = ''
              A cached block is evicted only while at least this many other
              stores hold it. Spec key `cache.min_copies`.
            '';
          };
        };

        settings = mkOption {
          type = types.submodule { freeformType = yaml.type; };
          default = { };
          example = literalExpression ''
            {
              # a key this module has no option for yet
              sync.interval = "1m";
            }
          '';
          description = ''
            Free-form spec keys, merged with the ones the typed options above
            produce (key names as in the YAML spec, e.g. `block_size`, not
            `blockSize`). Setting a key here that a typed option also sets to a
            different value is an evaluation error, never a silent override;
            lists (such as `peers`) are concatenated. `globofs` rejects
            unknown keys, and the build-time validation catches that.
          '';
        };

        generatedSpec = mkOption {
          type = types.attrsOf types.anything;
          readOnly = true;
          description = ''
            The volume spec this module writes, as an attribute set (typed
            options and `settings` merged, unset keys removed). Read only.
          '';
        };

        specFile = mkOption {
          type = types.path;
          readOnly = true;
          description = ''
            The generated spec as a YAML file in the Nix store, checked with
            `globofs validate` when it is built. Also linked to
            `/etc/globofs/<name>.yaml`. Read only.
          '';
        };
      };

      config = {
        settings = typedSpec;
        generatedSpec = stripNulls vol.settings;
        specFile = pkgs.runCommand "globofs-${name}.yaml" { preferLocalBuild = true; } ''
          echo "globofs: validating the spec of volume '${name}'"
          ${cfg.package}/bin/globofs validate ${uncheckedSpec}
          cp ${uncheckedSpec} $out
        '';
      };
    };

  # ---- checks the types cannot express ---------------------------------------------

  volumeAssertions =
    name: vol:
    let
      spec = vol.generatedSpec;
      peers = spec.peers or [ ];
      peerIds = map (p: p.id or null) peers;
      peerPaths = map (p: p.path or null) peers;
      inside = dir: p: p == dir || lib.hasPrefix "${dir}/" p;
      at = "services.globofs.volumes.${name}";
    in
    [
      {
        assertion = builtins.match "[A-Za-z0-9_.-]+" name != null;
        message = "${at}: the volume name '${name}' names the unit globofs-${name}.service; use only letters, digits, `_`, `.` and `-`.";
      }
      {
        assertion = isAbsolutePath (spec.volume or null);
        message = "${at}: the spec's `volume` must be an absolute path.";
      }
      {
        assertion = lib.all isAbsolutePath peerPaths;
        message = "${at}: every peer `path` must be an absolute path (got ${builtins.toJSON peerPaths}).";
      }
      {
        assertion = lib.allUnique peerIds;
        message = "${at}: peer ids must be distinct (got ${builtins.toJSON peerIds}).";
      }
      {
        assertion = !(builtins.elem (spec.node.id or null) peerIds);
        message = "${at}: nodeId ${spec.node.id or "?"} is also listed as a peer; a node is not its own peer.";
      }
      {
        assertion = lib.allUnique peerPaths;
        message = "${at}: two peers share one path (${builtins.toJSON peerPaths}).";
      }
      {
        assertion = !(lib.any (p: builtins.isString p && inside spec.volume p) peerPaths);
        message = "${at}: a peer path lies inside this node's own volume ${spec.volume}; point it at the peer's store as this machine sees it (an NFS or sshfs mount).";
      }
      {
        assertion = !(inside spec.volume vol.mountPoint) && !(inside vol.mountPoint spec.volume);
        message = "${at}: mountPoint and volume must not contain one another (volume ${spec.volume}, mountPoint ${vol.mountPoint}).";
      }
    ];

  volumeList = lib.attrValues cfg.volumes;

  # ---- the service ---------------------------------------------------------------------

  serviceFor =
    name: vol:
    let
      globofs = "${cfg.package}/bin/globofs --spec ${vol.specFile}";
    in
    {
      description = "GloboFS volume ${name} (${vol.volume} mounted on ${vol.mountPoint})";
      documentation = [ "man:globofs(1)" ];
      wantedBy = [ "multi-user.target" ];
      # Ordering only (no Requires/Wants): start after the peers' mounts had
      # their chance, but never wait for or fail with one of them.
      after = [
        "local-fs.target"
        "remote-fs.target"
      ];
      # Only the node's own directories. Never a peer path: one peer being
      # away must not keep this node from starting.
      unitConfig.RequiresMountsFor = [
        vol.volume
        vol.mountPoint
      ];

      # The setuid wrapper of fusermount3 (programs.fuse), should libfuse need it.
      path = [ "/run/wrappers" ];

      serviceConfig = {
        Type = "notify";
        NotifyAccess = "main";
        ExecStartPre = "${globofs} reconcile";
        ExecStart = "${globofs} mount";
        # After a crash the kernel keeps a dead FUSE mount ("Transport endpoint
        # is not connected") that would make the restart fail; drop it. The
        # leading "-" ignores "not mounted".
        ExecStopPost = "-${pkgs.fuse3}/bin/fusermount3 -u -z ${vol.mountPoint}";
        Restart = "on-failure";
        RestartSec = "5s";

        # Hardening that leaves FUSE working. Deliberately NOT set, each of
        # these breaks the mount:
        #   NoNewPrivileges   no setuid fusermount3;
        #   PrivateDevices    no /dev/fuse;
        #   PrivateMounts, ProtectSystem, ProtectHome, PrivateTmp,
        #   ProtectKernelTunables/Modules/Logs, ProtectControlGroups,
        #   ProtectProc, ProcSubset, ReadWritePaths, ReadOnlyPaths,
        #   InaccessiblePaths, BindPaths, TemporaryFileSystem
        #                     each gives the unit its own mount namespace, and
        #                     a mount made inside it does not propagate to the
        #                     host: the FUSE mount would be invisible outside;
        #   PrivateUsers      mounting needs CAP_SYS_ADMIN in the host's
        #                     user namespace;
        #   User=<non-root>   the seccomp options below then imply
        #                     NoNewPrivileges; the service runs as root.
        # What is left is enforced by seccomp, cgroups and capabilities, none
        # of which needs a mount namespace:
        CapabilityBoundingSet = [
          "CAP_SYS_ADMIN" # mount(2) / umount2(2) of the FUSE filesystem
          "CAP_DAC_OVERRIDE" # stores and peer directories owned by others
          "CAP_DAC_READ_SEARCH"
          "CAP_FOWNER" # set modes on spool directories peers write to
          "CAP_CHOWN" # reconcile hands spool/inbound/<peer> to the peer's login
          "CAP_FSETID"
        ];
        DevicePolicy = "closed";
        DeviceAllow = [ "/dev/fuse rw" ];
        # No network of its own: peers are reached through the filesystem.
        # (NFS and sshfs traffic comes from the kernel and from ssh, not from
        # this unit.) AF_UNIX stays for sd_notify, the journal and the
        # socketpair libfuse uses with fusermount3.
        RestrictAddressFamilies = [ "AF_UNIX" ];
        IPAddressDeny = "any";
        SystemCallArchitectures = "native";
        SystemCallFilter = [
          "@system-service"
          "@mount" # FUSE mount and unmount
        ];
        SystemCallErrorNumber = "EPERM";
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        ProtectClock = true;
        KeyringMode = "private";
      };
    };
in
{
  options.services.globofs = {
    enable = mkEnableOption "GloboFS, a filesystem shared by many machines through plain directories";

    package = lib.mkPackageOption pkgs "globofs" {
      extraDescription = "The flake's `nixosModules.default` sets it to the flake's `packages.<system>.default`.";
    };

    volumes = mkOption {
      type = types.attrsOf (types.submodule volumeModule);
      default = { };
      example = literalExpression ''
        {
          shared = {
            volume = "/srv/globofs";
            nodeId = "68d25a11-a34a-4bbb-a29e-c9bd06ff8c53";
            mountPoint = "/mnt/globofs";
            peers = [
              {
                id = "ea8192ee-593f-437f-af60-90d213995480";
                path = "/mnt/peers/beta/ea8192ee-593f-437f-af60-90d213995480";
              }
            ];
            syncInterval = "30s";
          };
        }
      '';
      description = ''
        GloboFS volumes this machine takes part in. Each attribute `<name>`
        gets a spec at `/etc/globofs/<name>.yaml` (validated at build time)
        and a service `globofs-<name>.service` that reconciles the volume
        directory and then mounts the merged tree at `mountPoint`.
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions =
      lib.concatLists (lib.mapAttrsToList volumeAssertions cfg.volumes)
      ++ [
        {
          assertion = lib.allUnique (map (v: v.volume) volumeList);
          message = "services.globofs.volumes: two volumes share one volume directory.";
        }
        {
          assertion = lib.allUnique (map (v: v.mountPoint) volumeList);
          message = "services.globofs.volumes: two volumes share one mountPoint.";
        }
      ];

    programs.fuse.enable = true;

    environment.systemPackages = [ cfg.package ];

    environment.etc = lib.mapAttrs' (
      name: vol: lib.nameValuePair "globofs/${name}.yaml" { source = vol.specFile; }
    ) cfg.volumes;

    systemd.tmpfiles.rules = map (vol: "d '${vol.mountPoint}' 0755 root root - -") volumeList;

    systemd.services = lib.mapAttrs' (
      name: vol: lib.nameValuePair "globofs-${name}" (serviceFor name vol)
    ) cfg.volumes;
  };
}
