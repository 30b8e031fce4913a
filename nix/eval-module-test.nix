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

  evalWith =
    modules:
    (lib.evalModules {
      modules = [
        nixosStubs
        module
        { _module.args.pkgs = stubPkgs; }
      ]
      ++ modules;
    }).config;

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
      exe = "${stubPkgs.globofs}/bin/globofs --spec ${vol.specFile}";
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
    ++ c "RequiresMountsFor is the volume and the mount point" (
      unit.unitConfig.RequiresMountsFor == [
        "/srv/globofs"
        "/mnt/globofs"
      ]
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
    ++ c "spec linked to /etc/globofs/shared.yaml" (
      config.environment.etc."globofs/shared.yaml".source == vol.specFile
    )
    ++ c "globofs is installed" (builtins.elem stubPkgs.globofs config.environment.systemPackages)
    ++ c "mount point created by tmpfiles" (
      config.systemd.tmpfiles.rules == [ "d '/mnt/globofs' 0755 root root - -" ]
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

  disabledConfig = evalWith [
    alpha
    { services.globofs.enable = lib.mkForce false; }
  ];

  allChecks =
    nodeChecks "alpha" alphaConfig alphaSpec "/mnt/peers"
      ++ nodeChecks "beta" betaConfig betaSpec "/mnt/peers"
      ++ assertionChecks
      ++ check "disabled: no services" (disabledConfig.systemd.services == { })
      ++ check "disabled: fuse untouched" (!disabledConfig.programs.fuse.enable);

  positive = {
    failures = map (c: c.what) (lib.filter (c: !c.ok) allChecks);
    checked = builtins.length allChecks;
    specs = {
      alpha = alphaConfig.services.globofs.volumes.shared.generatedSpec;
      beta = betaConfig.services.globofs.volumes.shared.generatedSpec;
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

  negative = {
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
