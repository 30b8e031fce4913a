# NixOS module for GloboFS: one systemd service per declared volume.
#
# For each `services.globofs.volumes.<name>` this module
#   - builds the volume spec (YAML) from typed options plus the freeform
#     `settings`, and runs `globofs validate` on it at build time, so a bad
#     spec fails `nixos-rebuild`, not the boot;
#   - links the validated spec to /etc/globofs/<name>.yaml, so that
#     `globofs --volume-name <name> status` works from a shell;
#   - runs `globofs-<name>.service`: `reconcile`, then `mount` (Type=notify)
#     of that /etc spec; a new spec alone reloads it (SIGHUP), no remount.
#
# Peers are declared once, in `services.globofs.peers.<name>`, with the
# transport that reaches their store (a plain path, NFS or sshfs); the module
# mounts NFS and sshfs peers with `fileSystems` entries that systemd
# automounts. The service never requires them: a peer that is away must not
# keep a node from starting (GloboFS queues changes for it in the outbound
# spool). A peer may also be given inline in a volume (`{ id; path; }`), mounted
# by other means.
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

  # ---- quoting for systemd and tmpfiles ------------------------------------------------

  # A path as one word of a unit setting (RequiresMountsFor=, a tmpfiles line):
  # double-quoted with C escapes (spaces stay inside the word) and `%` doubled
  # (no specifier expansion).
  systemdWord = p: builtins.replaceStrings [ "%" ] [ "%%" ] (builtins.toJSON p);
  # The same for an argument of an Exec*= command line, where `$` expands too.
  execArg = p: builtins.replaceStrings [ "$" ] [ "$$" ] (systemdWord p);
  # Free text in a unit (Description=): only specifiers matter.
  unitText = builtins.replaceStrings [ "%" ] [ "%%" ];

  # ---- peers declared once (services.globofs.peers.<name>) ----------------------------

  namedPeerModule =
    { name, config, ... }:
    let
      t = config.transport;
    in
    {
      options = {
        id = mkOption {
          type = nodeIdType;
          example = "ea8192ee-593f-437f-af60-90d213995480";
          description = "Node id (UUID) of the peer in the volumes that name it. Spec key `peers[].id`.";
        };

        transport = {
          type = mkOption {
            type = types.enum [
              "path"
              "nfs"
              "sshfs"
            ];
            default = "path";
            description = ''
              How this machine reaches the peer's volume directory:
              `path`: `transport.path` is already a local directory (a disk, or
              a mount you make yourself); `nfs`: the module mounts
              `host:path` over NFS at `transport.mountPoint`; `sshfs`: the
              module mounts `user@host:path` with sshfs there. NFS and sshfs
              mounts are `noauto,nofail,_netdev,x-systemd.automount` with an
              idle timeout: boot and the GloboFS service never wait for a peer
              that is away.
            '';
          };
          host = mkOption {
            type = types.nullOr types.str;
            default = null;
            example = "beta.example.org";
            description = "Host name or address of the peer (nfs, sshfs).";
          };
          user = mkOption {
            type = types.nullOr types.str;
            default = null;
            example = "gfs-alpha";
            description = ''
              Login on the peer's host (sshfs); on the peer, its
              `services.globofs.peers.<this node>.owner`.
            '';
          };
          port = mkOption {
            type = types.nullOr types.port;
            default = null;
            description = "SSH port of the peer's host (sshfs); `null` is ssh's default.";
          };
          identityFile = mkOption {
            type = types.nullOr absolutePath;
            default = null;
            example = "/etc/globofs/id_ed25519";
            description = "Private key for the sshfs login (kept out of the Nix store: give a path, not a file).";
          };
          path = mkOption {
            type = types.str;
            example = "/srv/globofs";
            description = ''
              The peer's volume directory (the one holding `<id>/`): on the
              peer's host for `nfs` and `sshfs` (`/` for an SFTP login jailed
              to the volume, as the peer's module sets it up), a local absolute
              path for `path`.
            '';
          };
          mountPoint = mkOption {
            type = absolutePath;
            default = "/mnt/globofs-peers/${name}";
            defaultText = literalExpression ''"/mnt/globofs-peers/''${name}"'';
            description = "Where the module mounts the peer's volume directory (nfs, sshfs).";
          };
          idleTimeout = mkOption {
            type = types.str;
            default = "10min";
            description = "`x-systemd.idle-timeout` of the automount (nfs, sshfs).";
          };
          options = mkOption {
            type = types.listOf types.str;
            default = [ ];
            example = [ "nfsvers=4.2" ];
            description = "More mount options (nfs, sshfs), after the module's.";
          };
        };

        replicate = mkOption {
          type = types.nullOr types.bool;
          default = null;
          description = "As a volume peer's `replicate`: eager block replication to this peer; `null` falls back to the volume's.";
        };

        owner = mkOption {
          type = types.nullOr (types.either types.ints.unsigned types.str);
          default = null;
          example = "gfs-beta";
          description = ''
            The login this peer uses on THIS machine to write into our store
            (its sshfs user here, or the uid an NFS export squashes it to).
            Spec key `peers[].owner`: `globofs reconcile` gives
            `spool/inbound/<id>/` to it, the only place of our store the peer
            may write (docs/FORMAT.md section 18). A user name must exist
            (see `createOwner`). `null`: the spool stays root's.
          '';
        };

        createOwner = mkOption {
          type = types.bool;
          default = false;
          description = ''
            Create `owner` as a system user in group
            `services.globofs.peerGroup` with no shell, and (with
            `services.openssh`) jail its SSH logins to SFTP inside the volume
            directory that names this peer (`ChrootDirectory`, no forwarding,
            no TTY): the sshfs recipe of docs/FORMAT.md section 18.
          '';
        };

        authorizedKeys = mkOption {
          type = types.listOf types.str;
          default = [ ];
          description = "SSH public keys the peer logs in with as `owner` (with `createOwner`).";
        };

        storePath = mkOption {
          type = types.str;
          readOnly = true;
          description = "The peer's store as this machine sees it (spec key `peers[].path`). Read only.";
        };
      };

      config.storePath = "${if t.type == "path" then t.path else t.mountPoint}/${config.id}";
    };

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
        (mkIf (vol.ownership != null) { mount.ownership = vol.ownership; })
        (mkIf (vol.blockSize != null) { block_size = vol.blockSize; })
        (mkIf (vol.major != null) { node.major = vol.major; })
        (mkIf (vol.compression != null) { inherit (vol) compression; })
        (mkIf (resolvedPeers != [ ]) {
          peers = map (
            p:
            {
              inherit (p) id path;
            }
            // lib.optionalAttrs (effectiveReplicate p != null) { replicate = effectiveReplicate p; }
            // lib.optionalAttrs (p.owner or null != null) { inherit (p) owner; }
          ) resolvedPeers;
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
        (mkIf (vol.copies != null) { inherit (vol) copies; })
        (mkIf (vol.cache.maxSize != null || vol.cache.minCopies != null) {
          cache = nonEmpty {
            max_size = vol.cache.maxSize;
            min_copies = vol.cache.minCopies;
          };
        })
      ];

      effectiveReplicate = p: if p.replicate != null then p.replicate else vol.replicate;

      # A name refers to services.globofs.peers.<name>; a missing one is left
      # out here and reported by an assertion naming the volume and the peer.
      resolvedPeers = lib.concatMap (
        p:
        if builtins.isString p then
          lib.optional (cfg.peers ? ${p}) {
            inherit (cfg.peers.${p}) id replicate owner;
            path = cfg.peers.${p}.storePath;
          }
        else
          [ p ]
      ) vol.peers;

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
          type = types.listOf (types.either types.str (types.submodule peerModule));
          default = [ ];
          example = literalExpression ''
            [
              "beta" # services.globofs.peers.beta
              {
                id = "0b6f3c1e-2a4d-4e8f-9c1b-7d5e3f2a1b0c";
                path = "/mnt/elsewhere/0b6f3c1e-2a4d-4e8f-9c1b-7d5e3f2a1b0c";
              }
            ]
          '';
          description = ''
            The other nodes of the volume: names of peers declared in
            `services.globofs.peers` (their store is reached by the declared
            transport), or inline `{ id; path; }` for a store you mount by
            other means. Spec key `peers`.
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

        ownership = mkOption {
          type = types.nullOr (
            types.enum [
              "keep"
              "mount-user"
            ]
          );
          default = null;
          example = "mount-user";
          description = ''
            Whose files the mount shows them as (spec key `mount.ownership`).
            `keep`: each file's recorded owner and group, the same numeric
            ids on every node (as NFS; give the nodes' users the same uids),
            so normal users write to their own files. `mount-user`: every
            file as the mounting user's (root here), for machines whose uids
            differ. `null` leaves the key out (globofs' default: `keep`).
            Needs a globofs that knows the key (the POSIX-metadata work);
            an older one fails the build's `globofs validate` with
            "unknown field `ownership`".
          '';
        };

        root = {
          owner = mkOption {
            type = types.nullOr types.str;
            default = null;
            example = "alice";
            description = ''
              Owner (a user name or uid) of the volume's root directory, as the
              mount shows it. Set through the mount after every start, and only
              when it differs (a change is a new version of the root, synced
              to the peers). With `group` and `mode`, this is how normal users
              get a volume they can write to: e.g. `group = "users"; mode =
              "2775"`, or `mode = "1777"` for a shared /tmp-like root. Takes
              effect once files keep their owners (`ownership = "keep"`, the
              POSIX-metadata work); before that the mount refuses the chown
              and the unit's journal says so, without failing the unit.
            '';
          };
          group = mkOption {
            type = types.nullOr types.str;
            default = null;
            example = "users";
            description = "Group of the volume's root directory (see `root.owner`).";
          };
          mode = mkOption {
            type = types.nullOr (types.strMatching "[0-7]?[0-7]{3}");
            default = null;
            example = "2775";
            description = ''
              Mode (octal, e.g. `"2775"`, `"1777"`) of the volume's root
              directory, set like `root.owner`.
            '';
          };
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

        copies = mkOption {
          type = types.nullOr types.ints.positive;
          default = null;
          example = 2;
          description = ''
            How many nodes (this one included) must hold every block of the
            current tree: sync copies blocks held by fewer into peers'
            spools, and eviction never goes below it. At most one more than
            the number of peers; give every node of the volume the same
            value. Spec key `copies` (default 1).
          '';
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

        reloadOnChange = mkOption {
          type = types.bool;
          default = true;
          description = ''
            Whether a change of this volume's spec alone reloads the service
            (`systemctl reload`: SIGHUP, `globofs mount` re-reads
            `/etc/globofs/<name>.yaml`) instead of restarting it, so
            `nixos-rebuild switch` never unmounts the volume for a peer
            change. Applied live: peers added, removed or changed, the sync
            interval, timeout and full check, cache and retention. Refused by
            the running mount, with an error in the unit's journal (`reload
            refused: ... needs a remount`), until
            `systemctl restart globofs-<name>`: a new block size, node id or
            major, compression or `ignore`. A new `mountPoint` or `volume`
            changes the unit itself and restarts it (see `restartIfChanged`),
            as does a new package. With `false` every change of the spec
            restarts the service, as `restartIfChanged` says.
          '';
        };

        restartIfChanged = mkOption {
          type = types.bool;
          default = true;
          description = ''
            Whether `nixos-rebuild switch` restarts the service when the unit
            changed: the package, the mount point or the volume directory
            (and, with `reloadOnChange = false`, any option here). A restart
            unmounts the volume: processes with files open in it, or a shell
            inside it, keep the old mount lazily detached (logged as a warning
            by the unit's `ExecStopPost`), and new opens see the new mount.
            With `false` the change waits for
            `systemctl restart globofs-<name>` or the next boot.
          '';
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
        # The package is built for the host; in a cross build it cannot run on
        # the build machine, so the spec is copied unchecked (as package.nix
        # skips its man pages then).
        specFile = pkgs.runCommand "globofs-${name}.yaml" { preferLocalBuild = true; } (
          if pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform then
            ''
              echo "globofs: validating the spec of volume '${name}'"
              ${cfg.package}/bin/globofs validate ${uncheckedSpec}
              cp ${uncheckedSpec} $out
            ''
          else
            ''
              echo "globofs: cross build, the spec of volume '${name}' is not validated here"
              cp ${uncheckedSpec} $out
            ''
        );
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
      missingPeers = lib.filter (p: builtins.isString p && !(cfg.peers ? ${p})) vol.peers;
    in
    [
      {
        assertion = missingPeers == [ ];
        message = "${at}.peers: ${
          lib.concatMapStringsSep ", " (p: "\"${p}\"") missingPeers
        } is not declared in services.globofs.peers (declared: ${
          if cfg.peers == { } then "none" else lib.concatStringsSep ", " (lib.attrNames cfg.peers)
        }).";
      }
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

  peerAssertions =
    name: peer:
    let
      t = peer.transport;
      at = "services.globofs.peers.${name}";
      remote = t.type != "path";
      users = map (v: v.volume) (
        lib.filter (v: builtins.elem name (lib.filter builtins.isString v.peers)) volumeList
      );
    in
    [
      {
        assertion = remote -> t.host != null;
        message = "${at}.transport.host must be set for transport type ${t.type}.";
      }
      {
        assertion = remote -> lib.hasPrefix "/" t.path;
        message = "${at}.transport.path must be an absolute path on ${toString t.host} (got \"${t.path}\").";
      }
      {
        assertion = t.type == "path" -> isAbsolutePath t.path;
        message = "${at}.transport.path must be an absolute local path for transport type path (got \"${t.path}\").";
      }
      {
        # mount options are comma-separated
        assertion = !(lib.hasInfix "," (toString t.identityFile));
        message = "${at}.transport.identityFile must not contain a comma (it goes into the mount options).";
      }
      {
        assertion = peer.createOwner -> builtins.isString peer.owner;
        message = "${at}: createOwner needs `owner` to be a user name.";
      }
      {
        assertion = peer.createOwner -> builtins.length (lib.unique users) <= 1;
        message = "${at}: createOwner jails the login to one volume directory, but volumes ${builtins.toJSON users} name this peer.";
      }
    ];

  remotePeers = lib.filterAttrs (_: p: p.transport.type != "path") cfg.peers;

  # Mount options of a peer's volume directory: on first access, never at boot,
  # never a dependency of anything (nofail); unmounted when idle.
  peerFileSystem =
    _name: peer:
    let
      t = peer.transport;
      common = [
        "noauto"
        "nofail"
        "_netdev"
        "x-systemd.automount"
        "x-systemd.idle-timeout=${t.idleTimeout}"
        "x-systemd.mount-timeout=30s"
      ];
    in
    lib.nameValuePair t.mountPoint (
      if t.type == "nfs" then
        {
          device = "${t.host}:${t.path}";
          fsType = "nfs";
          # soft + timeo: a dead peer returns errors instead of hanging.
          options = common ++ [
            "soft"
            "timeo=100"
            "retrans=3"
          ]
          ++ t.options;
        }
      else
        {
          device = "${lib.optionalString (t.user != null) "${t.user}@"}${t.host}:${t.path}";
          fsType = "sshfs";
          options =
            common
            ++ [
              "reconnect"
              "ServerAliveInterval=15"
              "ServerAliveCountMax=3"
            ]
            ++ lib.optional (t.port != null) "port=${toString t.port}"
            ++ lib.optional (t.identityFile != null) "IdentityFile=${t.identityFile}"
            ++ t.options;
        }
    );

  ownedPeers = lib.filterAttrs (_: p: p.createOwner) cfg.peers;

  # The volume directory a created owner is jailed to (assertions make it one).
  jailOf =
    name:
    lib.findFirst (v: builtins.elem name (lib.filter builtins.isString v.peers)) null volumeList;

  # ---- the service ---------------------------------------------------------------------

  # What is still mounted when the daemon stopped: normally nothing (it
  # unmounts on SIGTERM); after a crash a dead mount; while files are open, a
  # busy one, detached lazily with a warning rather than silently.
  unmountScript =
    name:
    pkgs.writeShellScript "globofs-${name}-unmount" ''
      mp=$1
      if out=$(${pkgs.fuse3}/bin/fusermount3 -u "$mp" 2>&1); then
        echo "globofs: unmounted $mp, which the stopped daemon left mounted"
        exit 0
      fi
      case $out in *"not found in"*) exit 0 ;; esac # not mounted: nothing to do
      echo "<4>globofs: $mp is still mounted and busy ($out): detaching it lazily;" \
        "processes with files open there keep the old mount, new opens see the new one" >&2
      exec ${pkgs.fuse3}/bin/fusermount3 -u -z "$mp"
    '';

  # The volume root's owner, group and mode, set through the mount (so they
  # are recorded and synced) when they differ from what is wanted. Failures
  # are warnings in the journal: the unit keeps running.
  rootScript =
    name: vol:
    let
      r = vol.root;
      want = lib.escapeShellArgs [
        (if r.owner != null then r.owner else "-")
        (if r.group != null then r.group else "-")
        (if r.mode != null then r.mode else "-")
      ];
    in
    pkgs.writeShellScript "globofs-${name}-root" ''
      PATH=${pkgs.coreutils}/bin
      mp=$1
      set -- ${want}
      owner=$1 group=$2 mode=$3
      warn() { echo "<4>globofs: $mp: $*" >&2; }
      if [ "$owner" != - ] && [ "$(stat -c %U "$mp")" != "$owner" ] && [ "$(stat -c %u "$mp")" != "$owner" ]; then
        chown "$owner" "$mp" || warn "could not give the volume root to $owner (files keep their owners only with a globofs that has mount.ownership)"
      fi
      if [ "$group" != - ] && [ "$(stat -c %G "$mp")" != "$group" ] && [ "$(stat -c %g "$mp")" != "$group" ]; then
        chgrp "$group" "$mp" || warn "could not give the volume root to group $group"
      fi
      if [ "$mode" != - ] && [ "$(stat -c %a "$mp")" != "$(printf %o "0$mode")" ]; then
        chmod "$mode" "$mp" || warn "could not set mode $mode on the volume root"
      fi
      exit 0
    '';

  serviceFor =
    name: vol:
    let
      # Reloadable: the unit names the spec by its /etc link, which a switch
      # repoints before it reloads the unit (reloadTriggers below), so the
      # running mount re-reads the new one. Otherwise the store path, whose
      # change makes a restart.
      spec = if vol.reloadOnChange then "/etc/globofs/${name}.yaml" else vol.specFile;
      globofs = "${cfg.package}/bin/globofs --spec ${spec}";
    in
    {
      description = unitText "GloboFS volume ${name} (${vol.volume} mounted on ${vol.mountPoint})";
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
      unitConfig.RequiresMountsFor = map systemdWord [
        vol.volume
        vol.mountPoint
      ];
      inherit (vol) restartIfChanged;
      # A new spec alone (same package, mount point and volume) is a reload.
      reloadTriggers = lib.optional vol.reloadOnChange vol.specFile;

      # The setuid wrapper of fusermount3 (programs.fuse), should libfuse need it.
      path = [ "/run/wrappers" ];

      serviceConfig = {
        Type = "notify";
        NotifyAccess = "main";
        ExecStartPre = "${globofs} reconcile";
        ExecStart = "${globofs} mount";
        # The volume root's owner, group and mode (`root.*`), once mounted.
        ExecStartPost = lib.mkIf (vol.root.owner != null || vol.root.group != null || vol.root.mode != null)
          "-${rootScript name vol} ${execArg vol.mountPoint}";
        # `globofs mount` re-reads its spec on SIGHUP; what needs a remount is
        # refused with an error in the journal and the mount keeps running.
        ExecReload = lib.mkIf vol.reloadOnChange "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        # After a crash the kernel keeps a dead FUSE mount ("Transport endpoint
        # is not connected") that would make the restart fail; drop it, and
        # say so in the journal when files were open (a lazy detach).
        ExecStopPost = "-${unmountScript name} ${execArg vol.mountPoint}";
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
      extraDescription = "The flake's `nixosModules.default` sets it to the flake's `nix/package.nix`, built with this system's `pkgs`.";
    };

    peers = mkOption {
      type = types.attrsOf (types.submodule namedPeerModule);
      default = { };
      example = literalExpression ''
        {
          beta = {
            id = "ea8192ee-593f-437f-af60-90d213995480";
            transport = {
              type = "sshfs";
              host = "beta";
              user = "gfs-alpha";
              path = "/"; # beta jails gfs-alpha to its volume directory
              identityFile = "/etc/globofs/id_ed25519";
            };
            owner = "gfs-beta"; # the login beta uses here
            createOwner = true;
            authorizedKeys = [ "ssh-ed25519 AAAA... globofs@beta" ];
          };
        }
      '';
      description = ''
        Other nodes, declared once and named from `volumes.<name>.peers`. For
        `nfs` and `sshfs` transports the module adds a `fileSystems` entry
        mounting the peer's volume directory at `transport.mountPoint`
        (automounted, `nofail`, `_netdev`, idle timeout); the GloboFS
        services never require these mounts.
      '';
    };

    peerGroup = mkOption {
      type = types.str;
      default = "globofs-peers";
      description = "Group of the owners created with `peers.<name>.createOwner`.";
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
      ++ lib.concatLists (lib.mapAttrsToList peerAssertions cfg.peers)
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

    # Root mounts without fusermount3; the wrapper is for unmounting (and for a
    # user running `globofs mount` by hand). A configuration may turn it off.
    programs.fuse.enable = lib.mkDefault true;

    fileSystems = lib.mapAttrs' peerFileSystem remotePeers;
    system.fsPackages = lib.optional (lib.any (p: p.transport.type == "sshfs") (lib.attrValues cfg.peers)) pkgs.sshfs;

    users.groups = lib.mkIf (ownedPeers != { }) { ${cfg.peerGroup} = { }; };
    users.users = lib.mapAttrs' (
      name: peer:
      lib.nameValuePair peer.owner {
        isSystemUser = true;
        group = cfg.peerGroup;
        description = "GloboFS peer ${name} (${peer.id})";
        home = "/var/empty";
        shell = "/run/current-system/sw/bin/nologin";
        openssh.authorizedKeys.keys = peer.authorizedKeys;
      }
    ) ownedPeers;

    # SFTP only, jailed to the volume directory (ChrootDirectory needs it and
    # its parents root-owned and not group/world-writable: reconcile makes the
    # volume 0755, and the store stays root's but for the peer's inbound spool).
    services.openssh.extraConfig = lib.concatStrings (
      lib.mapAttrsToList (
        name: peer:
        lib.optionalString (jailOf name != null) ''
          Match User ${peer.owner}
              ChrootDirectory ${systemdWord (jailOf name).volume}
              ForceCommand internal-sftp
              AllowTcpForwarding no
              X11Forwarding no
              PermitTTY no
          Match all
        ''
      ) ownedPeers
    );

    environment.systemPackages = [ cfg.package ];

    environment.etc = lib.mapAttrs' (
      name: vol: lib.nameValuePair "globofs/${name}.yaml" { source = vol.specFile; }
    ) cfg.volumes;

    # Created 0755 root:root when missing; `-` for mode, user and group leaves
    # an existing directory (the live mount root included) as it is.
    systemd.tmpfiles.rules = map (vol: "d ${systemdWord vol.mountPoint} - - - - -") volumeList;

    systemd.services = lib.mapAttrs' (
      name: vol: lib.nameValuePair "globofs-${name}" (serviceFor name vol)
    ) cfg.volumes;
  };
}
