# Offline evaluation test of modules/globofs.nix, with nixpkgs' `lib` only:
# no nixpkgs package set, no builds, no network. Run by nix/check.sh:
#
#   nix-instantiate --eval --strict --json nix/eval-module-test.nix \
#     --argstr libPath /path/to/nixpkgs-lib/lib --argstr case <case>
#
# The NixOS options the module sets (systemd.services, programs.fuse,
# environment.etc, assertions, ...) are declared here as stubs, with the
# option names and types NixOS uses, and `pkgs` is a stub whose "derivations"
# are plain attribute sets. The test asserts on the unit and the spec the
# module generates, not on built files.
#
# Cases:
#   two-nodes          (default) evaluates a two-node example and returns
#                      { failures = [...]; spec = {...}; ... }; nix/check.sh
#                      requires `failures == []` and validates `spec` with the
#                      real binary when one is built.
#   wrong-type, unknown-option, relative-path, bad-node-id, settings-conflict
#                      must FAIL to evaluate; nix/check.sh asserts the exit
#                      status and the error message.
{
  libPath ? null,
  lib ? import libPath,
  case ? "two-nodes",
  module ? ../modules/globofs.nix,
}:

let
  inherit (lib) types mkOption;

  stubs = import ./test-stubs.nix { inherit lib; };
  inherit (stubs) stubPkgs nixosStubs;

  evalWithPkgs =
    pkgs: modules:
    (lib.evalModules {
      modules = [
        nixosStubs
        module
        { _module.args.pkgs = pkgs; }
      ]
      ++ modules;
    }).config;
  evalWith = evalWithPkgs stubPkgs;

  failedAssertionsOf = config: map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);

  # ---- the two-node example (alpha's side and beta's side) ------------------------------

  ids = {
    alpha = "68d25a11-a34a-4bbb-a29e-c9bd06ff8c53";
    beta = "ea8192ee-593f-437f-af60-90d213995480";
  };

  alpha = {
    services.globofs = {
      enable = true;
      volumes.shared = {
        volume = "/srv/globofs";
        nodeId = ids.alpha;
        major = 100;
        blockSize = "1MiB";
        mountPoint = "/mnt/globofs";
        peers = [
          {
            id = ids.beta;
            path = "/mnt/peers/beta/${ids.beta}";
          }
        ];
        syncInterval = "30s";
        retention.keepLast = 10;
        ignore = [
          "*.swp"
          ".DS_Store"
        ];
      };
    };
  };

  beta = {
    services.globofs = {
      enable = true;
      volumes.shared = {
        volume = "/srv/globofs";
        nodeId = ids.beta;
        mountPoint = "/mnt/globofs";
        compression = "zstd";
        replicate = true; # volume-wide default, written into each peer
        peers = [
          {
            id = ids.alpha;
            path = "/mnt/peers/alpha/${ids.alpha}";
          }
        ];
        syncInterval = 30;
        copies = 2;
        # freeform keys merge with the typed ones
        settings.sync.timeout = "10s";
        settings.cache = {
          max_size = "10GiB";
          min_copies = 1;
        };
      };
    };
  };

  # ---- assertions on the positive case --------------------------------------------------

  # A check is { what, ok }; the result lists the failed ones and the count.
  check = what: ok: [ { inherit what ok; } ];

  forbiddenHardening = [
    "PrivateDevices"
    "PrivateMounts"
    "ProtectKernelTunables"
    "ProtectKernelModules"
    "ProtectKernelLogs"
    "NoNewPrivileges"
    "ProtectSystem"
    "ProtectHome"
    "PrivateTmp"
    "PrivateUsers"
    "ReadWritePaths"
    "ReadOnlyPaths"
    "InaccessiblePaths"
    "ProtectControlGroups"
    "ProtectProc"
    "ProcSubset"
    "BindPaths"
    "TemporaryFileSystem"
    "User"
    "DynamicUser"
  ];

  nodeChecks =
    nodeName: config: expectedSpec: peerPath:
    let
      vol = config.services.globofs.volumes.shared;
      unit = config.systemd.services.globofs-shared;
      sc = unit.serviceConfig;
      # The /etc link: a switch repoints it, then reloads the unit.
      exe = "${stubPkgs.globofs}/bin/globofs --spec /etc/globofs/shared.yaml";
      unitJSON = builtins.toJSON unit;
      failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
      c = what: ok: check "${nodeName}: ${what}" ok;
    in
    c "generated spec is exactly the expected one (got ${builtins.toJSON vol.generatedSpec})" (
      vol.generatedSpec == expectedSpec
    )
    ++ c "no null in the spec" (!(lib.hasInfix "null" (builtins.toJSON vol.generatedSpec)))
    ++ c "the YAML is generated from generatedSpec" (
      vol.specFile.script != null
      && lib.hasInfix "globofs-shared-unchecked.yaml" vol.specFile.script
    )
    ++ c "the spec is validated at build time by `globofs validate`" (
      lib.hasInfix "${stubPkgs.globofs}/bin/globofs validate " vol.specFile.script
    )
    ++ c "all assertions hold (failed: ${builtins.toJSON failedAssertions})" (failedAssertions == [ ])
    ++ c "unit is wanted by multi-user.target" (builtins.elem "multi-user.target" unit.wantedBy)
    ++ c "Type=notify" (sc.Type == "notify")
    ++ c "ExecStartPre reconciles (got ${toString sc.ExecStartPre})" (
      sc.ExecStartPre == "${exe} reconcile"
    )
    ++ c "ExecStart mounts (got ${toString sc.ExecStart})" (sc.ExecStart == "${exe} mount")
    ++ c "Restart=on-failure" (sc.Restart == "on-failure")
    ++ c "RequiresMountsFor is the volume and the mount point, quoted" (
      unit.unitConfig.RequiresMountsFor == [
        ''"/srv/globofs"''
        ''"/mnt/globofs"''
      ]
    )
    ++ c "ExecStopPost runs the unmount script on the quoted mount point, failures ignored (got ${sc.ExecStopPost})" (
      builtins.match ''-/nix/store/[^ ]*-globofs-shared-unmount "/mnt/globofs"'' sc.ExecStopPost != null
    )
    ++ c "the unmount script warns before a lazy detach" (
      let
        text = builtins.readFile (builtins.head (builtins.match "-([^ ]+) .*" sc.ExecStopPost));
      in
      lib.hasInfix "fusermount3 -u \"$mp\"" text
      && lib.hasInfix "<4>globofs: $mp is still mounted and busy" text
      && lib.hasInfix "*\"not found in\"*) exit 0" text
      && lib.hasInfix "fusermount3 -u -z \"$mp\"" text
    )
    ++ c "restartIfChanged is on by default (documented: a restart remounts)" unit.restartIfChanged
    ++ c "a new spec alone reloads: reloadTriggers is the spec file, the unit names its /etc link" (
      unit.reloadTriggers == [ vol.specFile ] && !(lib.hasInfix (toString vol.specFile) (builtins.toJSON sc))
    )
    ++ c "ExecReload sends SIGHUP to the main process (got ${sc.ExecReload or "none"})" (
      sc.ExecReload == "${stubPkgs.coreutils}/bin/kill -HUP $MAINPID"
    )
    ++ c "no peer path anywhere in the unit" (!(lib.hasInfix peerPath unitJSON))
    ++ c "no dependency other than ordering on remote filesystems" (
      unit.requires == [ ] && unit.bindsTo == [ ] && unit.wants == [ ]
    )
    ++ lib.concatMap (
      key: c "hardening leaves FUSE working: ${key} is not set" (!(sc ? ${key}))
    ) forbiddenHardening
    ++ c "/dev/fuse is allowed" (builtins.elem "/dev/fuse rw" sc.DeviceAllow)
    ++ c "mount(2) is in the syscall filter" (builtins.elem "@mount" sc.SystemCallFilter)
    ++ c "CAP_SYS_ADMIN is kept" (builtins.elem "CAP_SYS_ADMIN" sc.CapabilityBoundingSet)
    ++ c "other hardening is on" (
      sc.RestrictNamespaces && sc.LockPersonality && sc.RestrictSUIDSGID && sc.MemoryDenyWriteExecute
    )
    ++ c "programs.fuse is enabled" config.programs.fuse.enable
    ++ c "no peer filesystems, users or sshd config for inline peers" (
      config.fileSystems == { } && config.users.users == { } && config.services.openssh.extraConfig == ""
    )
    ++ c "spec linked to /etc/globofs/shared.yaml" (
      config.environment.etc."globofs/shared.yaml".source == vol.specFile
    )
    ++ c "globofs is installed" (builtins.elem stubPkgs.globofs config.environment.systemPackages)
    ++ c "mount point created by tmpfiles" (
      config.systemd.tmpfiles.rules == [ ''d "/mnt/globofs" - - - - -'' ]
    );

  alphaConfig = evalWith [ alpha ];
  betaConfig = evalWith [ beta ];

  alphaSpec = {
    volume = "/srv/globofs";
    node = {
      id = ids.alpha;
      major = 100;
    };
    block_size = "1MiB";
    peers = [
      {
        id = ids.beta;
        path = "/mnt/peers/beta/${ids.beta}";
      }
    ];
    mount.path = "/mnt/globofs";
    sync.interval = "30s";
    retention.keep_last = 10;
    ignore = [
      "*.swp"
      ".DS_Store"
    ];
  };

  betaSpec = {
    volume = "/srv/globofs";
    node.id = ids.beta;
    compression = "zstd";
    peers = [
      {
        id = ids.alpha;
        path = "/mnt/peers/alpha/${ids.alpha}";
        replicate = true;
      }
    ];
    mount.path = "/mnt/globofs";
    sync = {
      interval = 30;
      timeout = "10s";
    };
    cache = {
      max_size = "10GiB";
      min_copies = 1;
    };
    copies = 2;
  };

  # Assertion-only failures: evaluation succeeds, and `assertions` must catch
  # them with the expected message.
  assertionCases = {
    "peer ids must be distinct" = {
      services.globofs.volumes.shared.peers = lib.mkForce [
        {
          id = ids.beta;
          path = "/mnt/peers/beta/${ids.beta}";
        }
        {
          id = ids.beta;
          path = "/mnt/peers/beta2/${ids.beta}";
        }
      ];
    };
    "a node is not its own peer" = {
      services.globofs.volumes.shared.peers = lib.mkForce [
        {
          id = ids.alpha;
          path = "/mnt/peers/beta/${ids.beta}";
        }
      ];
    };
    "lies inside this node's own volume" = {
      services.globofs.volumes.shared.peers = lib.mkForce [
        {
          id = ids.beta;
          path = "/srv/globofs/${ids.beta}";
        }
      ];
    };
    "every peer `path` must be an absolute path" = {
      services.globofs.volumes.shared.settings.peers = [
        {
          id = "0e4a4d6e-8d6f-4a53-9c1e-6a1c7f0c2d11";
          path = "relative/store";
        }
      ];
    };
    "mountPoint and volume must not contain one another" = {
      services.globofs.volumes.shared.mountPoint = lib.mkForce "/srv/globofs/mnt";
    };
    "two volumes share one mountPoint" = {
      services.globofs.volumes.other = {
        volume = "/srv/other";
        nodeId = ids.alpha;
        mountPoint = "/mnt/globofs";
      };
    };
    "services.globofs.volumes.shared.peers: \"gamma\" is not declared in services.globofs.peers (declared: beta)" = {
      services.globofs.peers.beta = {
        id = ids.beta;
        transport.path = "/mnt/peers/beta";
      };
      services.globofs.volumes.shared.peers = lib.mkForce [
        "beta"
        "gamma"
      ];
    };
    "services.globofs.peers.nfsless.transport.host must be set" = {
      services.globofs.peers.nfsless = {
        id = ids.beta;
        transport = {
          type = "nfs";
          path = "/srv/globofs";
        };
      };
    };
    "use only letters, digits" = {
      services.globofs.volumes."my volume" = {
        volume = "/srv/other";
        nodeId = ids.alpha;
        mountPoint = "/mnt/other";
      };
    };
  };

  assertionChecks = lib.concatLists (
    lib.mapAttrsToList (
      expected: extra:
      let
        failed = map (a: a.message) (
          lib.filter (a: !a.assertion) (evalWith [
            alpha
            extra
          ]).assertions
        );
      in
      check "an assertion fails with \"${expected}\" (failed: ${builtins.toJSON failed})" (
        lib.any (lib.hasInfix expected) failed
      )
    ) assertionCases
  );

  # ---- peers declared once, with their transports ----------------------------------------

  gammaId = "0b6f3c1e-2a4d-4e8f-9c1b-7d5e3f2a1b0c";
  withPeers = {
    services.globofs.peers = {
      beta = {
        id = ids.beta;
        transport = {
          type = "sshfs";
          host = "beta.example.org";
          user = "gfs-alpha";
          port = 2222;
          path = "/";
          identityFile = "/etc/globofs/id ed25519";
        };
        owner = "gfs-beta";
        createOwner = true;
        authorizedKeys = [ "ssh-ed25519 AAAAC3Nza globofs@beta" ];
      };
      gamma = {
        id = gammaId;
        transport = {
          type = "nfs";
          host = "gamma";
          path = "/srv/globofs";
          options = [ "nfsvers=4.2" ];
        };
        owner = 4001;
        replicate = true;
      };
      local = {
        id = "1c7e4d2f-3b5e-4f9a-8d2c-8e6f4a3b2c1d";
        transport.path = "/media/usb disk/globofs";
      };
    };
    services.globofs.volumes.shared.peers = lib.mkForce [
      "beta"
      "gamma"
      "local"
    ];
  };
  peersConfig = evalWith [
    alpha
    withPeers
  ];
  peersUnit = peersConfig.systemd.services.globofs-shared;
  automountOptions = [
    "noauto"
    "nofail"
    "_netdev"
    "x-systemd.automount"
    "x-systemd.idle-timeout=10min"
    "x-systemd.mount-timeout=30s"
  ];
  peerChecks =
    check "peers: assertions hold (failed: ${builtins.toJSON (failedAssertionsOf peersConfig)})" (
      failedAssertionsOf peersConfig == [ ]
    )
    ++ check "peers: the spec names each peer's store under its mount, with owner and replicate (got ${builtins.toJSON peersConfig.services.globofs.volumes.shared.generatedSpec.peers})" (
      peersConfig.services.globofs.volumes.shared.generatedSpec.peers == [
        {
          id = ids.beta;
          path = "/mnt/globofs-peers/beta/${ids.beta}";
          owner = "gfs-beta";
        }
        {
          id = gammaId;
          path = "/mnt/globofs-peers/gamma/${gammaId}";
          owner = 4001;
          replicate = true;
        }
        {
          id = "1c7e4d2f-3b5e-4f9a-8d2c-8e6f4a3b2c1d";
          path = "/media/usb disk/globofs/1c7e4d2f-3b5e-4f9a-8d2c-8e6f4a3b2c1d";
        }
      ]
    )
    ++ check "peers: sshfs and nfs peers get automounted fileSystems, a path peer none (got ${builtins.toJSON peersConfig.fileSystems})" (
      peersConfig.fileSystems == {
        "/mnt/globofs-peers/beta" = {
          mountPoint = "/mnt/globofs-peers/beta";
          device = "gfs-alpha@beta.example.org:/";
          fsType = "sshfs";
          options = automountOptions ++ [
            "reconnect"
            "ServerAliveInterval=15"
            "ServerAliveCountMax=3"
            "port=2222"
            "IdentityFile=/etc/globofs/id ed25519"
          ];
        };
        "/mnt/globofs-peers/gamma" = {
          mountPoint = "/mnt/globofs-peers/gamma";
          device = "gamma:/srv/globofs";
          fsType = "nfs";
          options = automountOptions ++ [
            "soft"
            "timeo=100"
            "retrans=3"
            "nfsvers=4.2"
          ];
        };
      }
    )
    ++ check "peers: sshfs is in system.fsPackages" (peersConfig.system.fsPackages == [ stubPkgs.sshfs ])
    ++ check "peers: RequiresMountsFor stays on the volume and the mount point" (
      peersUnit.unitConfig.RequiresMountsFor == [
        ''"/srv/globofs"''
        ''"/mnt/globofs"''
      ]
    )
    ++ check "peers: no peer mount anywhere in the unit" (
      !(lib.hasInfix "globofs-peers" (builtins.toJSON peersUnit))
      && !(lib.hasInfix "usb disk" (builtins.toJSON peersUnit))
      && peersUnit.requires == [ ]
      && peersUnit.wants == [ ]
    )
    ++ check "peers: createOwner makes a nologin system user in globofs-peers with its keys" (
      peersConfig.users.users == {
        gfs-beta = {
          isSystemUser = true;
          group = "globofs-peers";
          description = "GloboFS peer beta (${ids.beta})";
          home = "/var/empty";
          shell = "/run/current-system/sw/bin/nologin";
          openssh.authorizedKeys.keys = [ "ssh-ed25519 AAAAC3Nza globofs@beta" ];
        };
      }
      && peersConfig.users.groups ? globofs-peers
    )
    ++ check "peers: sshd jails the created owner to SFTP in the volume (got ${builtins.toJSON peersConfig.services.openssh.extraConfig})" (
      peersConfig.services.openssh.extraConfig == ''
        Match User gfs-beta
            ChrootDirectory "/srv/globofs"
            ForceCommand internal-sftp
            AllowTcpForwarding no
            X11Forwarding no
            PermitTTY no
        Match all
      ''
    );

  # ---- paths with spaces, `%` and `$` -------------------------------------------------------

  oddConfig = evalWith [
    alpha
    {
      services.globofs.volumes.shared.volume = lib.mkForce "/srv/my vol %h";
      services.globofs.volumes.shared.mountPoint = lib.mkForce "/mnt/Globo FS 100% $x";
    }
  ];
  oddUnit = oddConfig.systemd.services.globofs-shared;
  oddChecks =
    check "odd paths: RequiresMountsFor quoted, % doubled (got ${builtins.toJSON oddUnit.unitConfig.RequiresMountsFor})" (
      oddUnit.unitConfig.RequiresMountsFor == [
        ''"/srv/my vol %%h"''
        ''"/mnt/Globo FS 100%% $x"''
      ]
    )
    ++ check "odd paths: ExecStopPost quoted, % and $ doubled (got ${oddUnit.serviceConfig.ExecStopPost})" (
      lib.hasSuffix '' "/mnt/Globo FS 100%% $$x"'' oddUnit.serviceConfig.ExecStopPost
    )
    ++ check "odd paths: Description has % doubled" (
      oddUnit.description == "GloboFS volume shared (/srv/my vol %%h mounted on /mnt/Globo FS 100%% $x)"
    )
    ++ check "odd paths: tmpfiles line quoted (got ${builtins.toJSON oddConfig.systemd.tmpfiles.rules})" (
      oddConfig.systemd.tmpfiles.rules == [ ''d "/mnt/Globo FS 100%% $x" - - - - -'' ]
    )
    ++ check "odd paths: the spec keeps the paths as they are" (
      oddConfig.services.globofs.volumes.shared.generatedSpec.mount.path == "/mnt/Globo FS 100% $x"
    );

  # ---- defaults a configuration may override ------------------------------------------------

  fuseOff = evalWith [
    alpha
    { programs.fuse.enable = false; }
  ];
  crossConfig = evalWithPkgs (stubPkgs // { stdenv = stubPkgs.stdenv // { buildPlatform.canExecute = _: false; }; }) [ alpha ];
  noRestart = evalWith [
    alpha
    { services.globofs.volumes.shared.restartIfChanged = false; }
  ];
  noReload = evalWith [
    alpha
    { services.globofs.volumes.shared.reloadOnChange = false; }
  ];
  overrideChecks =
    check "programs.fuse.enable = false in a configuration wins (mkDefault)" (!fuseOff.programs.fuse.enable)
    ++ check "cross build: the spec is copied without running globofs validate" (
      !(lib.hasInfix "globofs validate" crossConfig.services.globofs.volumes.shared.specFile.script)
      && lib.hasInfix "not validated" crossConfig.services.globofs.volumes.shared.specFile.script
    )
    ++ check "restartIfChanged = false reaches the unit" (
      !noRestart.systemd.services.globofs-shared.restartIfChanged
    )
    ++ check "reloadOnChange = false: the unit names the spec's store path (a change restarts), no reload" (
      let
        unit = noReload.systemd.services.globofs-shared;
      in
      unit.reloadTriggers == [ ]
      && !(unit.serviceConfig ? ExecReload)
      && unit.serviceConfig.ExecStart
        == "${stubPkgs.globofs}/bin/globofs --spec ${noReload.services.globofs.volumes.shared.specFile} mount"
    );

  # ---- owners: mount.ownership and the volume root's owner, group and mode ----------------------

  ownersConfig = evalWith [
    alpha
    {
      services.globofs.volumes.shared = {
        ownership = "keep";
        root = {
          owner = "alice";
          group = "users";
          mode = "2775";
        };
      };
    }
  ];
  ownersUnit = ownersConfig.systemd.services.globofs-shared;
  ownersChecks =
    check "ownership reaches the spec as mount.ownership (got ${builtins.toJSON ownersConfig.services.globofs.volumes.shared.generatedSpec.mount})" (
      ownersConfig.services.globofs.volumes.shared.generatedSpec.mount == {
        path = "/mnt/globofs";
        ownership = "keep";
      }
    )
    ++ check "root owner/group/mode: set through the mount after start, failures ignored (got ${ownersUnit.serviceConfig.ExecStartPost or "none"})" (
      builtins.match ''-/nix/store/[^ ]*-globofs-shared-root "/mnt/globofs"'' (ownersUnit.serviceConfig.ExecStartPost or "") != null
    )
    ++ check "the root script changes only what differs, and warns instead of failing" (
      let
        text = builtins.readFile (builtins.head (builtins.match "-([^ ]+) .*" ownersUnit.serviceConfig.ExecStartPost));
      in
      lib.hasInfix "set -- alice users 2775" text
      && lib.hasInfix ''chown "$owner" "$mp" || warn'' text
      && lib.hasInfix ''chgrp "$group" "$mp" || warn'' text
      && lib.hasInfix ''chmod "$mode" "$mp" || warn'' text
      && lib.hasInfix ''[ "$(stat -c %a "$mp")" != "$(printf %o "0$mode")" ]'' text
      && lib.hasInfix "exit 0" text
    )
    ++ check "no root option set: no ExecStartPost, no mount.ownership" (
      !(alphaConfig.systemd.services.globofs-shared.serviceConfig ? ExecStartPost)
      && !(alphaConfig.services.globofs.volumes.shared.generatedSpec.mount ? ownership)
    );

  # ---- README.md's NixOS snippet, exactly as printed -------------------------------------------

  readme = builtins.readFile ../README.md;
  nixosSection = builtins.elemAt (builtins.split "\n## Nix and NixOS\n" readme) 2;
  sectionText = builtins.head (builtins.split "\n## " nixosSection);
  nixBlocks = lib.filter builtins.isString (
    lib.tail (builtins.split "```nix\n" sectionText)
  );
  snippetText = builtins.head (builtins.split "```" (
    lib.findFirst (b: lib.hasInfix "services.globofs" b) (throw "README.md: no ```nix block with services.globofs in ## Nix and NixOS") nixBlocks
  ));
  snippet = import (builtins.toFile "readme-snippet.nix" snippetText);
  readmeFor =
    host:
    evalWith [
      snippet
      { networking.hostName = host; }
    ];
  readmeChecks = lib.concatMap (
    host:
    let
      config = readmeFor host;
      vol = config.services.globofs.volumes.shared;
      other = if host == "alpha" then "beta" else "alpha";
    in
    check "README snippet (${host}): assertions hold (failed: ${builtins.toJSON (failedAssertionsOf config)})" (
      failedAssertionsOf config == [ ]
    )
    ++ check "README snippet (${host}): one volume, its node id, the other as its peer" (
      vol.nodeId == ids.${host}
      && map (p: p.id) vol.generatedSpec.peers == [ ids.${other} ]
    )
    ++ check "README snippet (${host}): the other's store is automounted with sshfs" (
      (config.fileSystems."/mnt/globofs-peers/${other}".fsType or null) == "sshfs"
    )
  ) [ "alpha" "beta" ];

  disabledConfig = evalWith [
    alpha
    { services.globofs.enable = lib.mkForce false; }
  ];

  allChecks =
    nodeChecks "alpha" alphaConfig alphaSpec "/mnt/peers"
      ++ nodeChecks "beta" betaConfig betaSpec "/mnt/peers"
      ++ assertionChecks
      ++ peerChecks
      ++ oddChecks
      ++ overrideChecks
      ++ ownersChecks
      ++ readmeChecks
      ++ check "disabled: no services" (disabledConfig.systemd.services == { })
      ++ check "disabled: fuse untouched" (!disabledConfig.programs.fuse.enable);

  positive = {
    failures = map (c: c.what) (lib.filter (c: !c.ok) allChecks);
    checked = builtins.length allChecks;
    specs = {
      alpha = alphaConfig.services.globofs.volumes.shared.generatedSpec;
      beta = betaConfig.services.globofs.volumes.shared.generatedSpec;
      peers = peersConfig.services.globofs.volumes.shared.generatedSpec;
      readme-alpha = (readmeFor "alpha").services.globofs.volumes.shared.generatedSpec;
      readme-beta = (readmeFor "beta").services.globofs.volumes.shared.generatedSpec;
    };
    unit = alphaConfig.systemd.services.globofs-shared;
  };

  # ---- cases that must not evaluate -----------------------------------------------------

  # Force everything the module produces, so an error anywhere surfaces.
  force = config: {
    inherit (config.services.globofs) volumes;
    inherit (config.systemd) services;
    inherit (config) assertions;
  };

  # As NixOS does when it builds the system: failed assertions stop evaluation.
  asNixos =
    config:
    let
      failed = failedAssertionsOf config;
    in
    if failed != [ ] then
      throw "\nFailed assertions:\n${lib.concatMapStrings (m: "- ${m}\n") failed}"
    else
      force config;

  negative = {
    wrong-peer = asNixos (evalWith [
      alpha
      {
        services.globofs.volumes.shared.peers = lib.mkForce [ "gamma" ];
      }
    ]);
    # major must be an integer
    wrong-type = force (evalWith [
      alpha
      { services.globofs.volumes.shared.major = lib.mkForce "high"; }
    ]);
    # a typo'd option name (nodeID instead of nodeId)
    unknown-option = force (evalWith [
      alpha
      { services.globofs.volumes.shared.nodeID = ids.alpha; }
    ]);
    relative-path = force (evalWith [
      alpha
      { services.globofs.volumes.shared.volume = lib.mkForce "srv/globofs"; }
    ]);
    bad-node-id = force (evalWith [
      alpha
      { services.globofs.volumes.shared.nodeId = lib.mkForce "68D25A11-A34A-4BBB-A29E-C9BD06FF8C53"; }
    ]);
    # settings may add keys but not silently override a typed option
    settings-conflict = force (evalWith [
      alpha
      { services.globofs.volumes.shared.settings.volume = "/elsewhere"; }
    ]);
  };
in
if case == "two-nodes" then
  positive
else if negative ? ${case} then
  negative.${case}
else
  throw "eval-module-test.nix: unknown case ${case}"
