# NixOS VM test: two nodes, each exporting its volume directory over NFS; each
# declares the other once in services.globofs.peers with an NFS transport, and
# the module automounts it. A file put on one is read on the other, with the
# CLI (`globofs put` / `globofs get`) and through the FUSE mounts; a normal
# user writes through the mount (root.group/root.mode; needs the
# POSIX-metadata work, where files keep their owners); alpha starts with no peer and gets beta by switching configuration
# (a rebuild), which reloads the running mount (SIGHUP) instead of
# remounting it; then a node restarts while its peer is away.
#
# Not runnable on the development machines (no binary cache, no KVM): written
# against the module's evaluated options, which nix/eval-flake-test.nix checks.
#
# Used by flake.nix as `pkgs.testers.nixosTest (import ./nix/vm-test.nix { inherit self; })`.
{ self }:

let
  ids = {
    alpha = "68d25a11-a34a-4bbb-a29e-c9bd06ff8c53";
    beta = "ea8192ee-593f-437f-af60-90d213995480";
  };

  # The volume, with the peer declared once and named from the volume.
  globofsWith =
    me: peer: peers:
    {
      services.globofs = {
        enable = true;
        peers.${peer} = {
          id = ids.${peer};
          transport = {
            type = "nfs";
            host = peer;
            path = "/"; # the export root (fsid=0) is the peer's /srv/globofs
            options = [ "nfsvers=4.2" ];
            idleTimeout = "60s";
          };
          # FORMAT.md section 18: the peer's login here owns its inbound spool.
          owner = "gfs-${peer}";
          createOwner = true;
        };
        volumes.shared = {
          volume = "/srv/globofs";
          nodeId = ids.${me};
          mountPoint = "/mnt/globofs";
          inherit peers;
          syncInterval = "2s";
          syncTimeout = "5s";
          # Normal users (group users) write to the volume: the root is
          # group-owned by users, setgid, group-writable; files they create
          # are theirs (mount.ownership's default, keep).
          root = {
            group = "users";
            mode = "2775";
          };
        };
      };
    };

  node =
    me: peer:
    { lib, ... }:
    {
      imports = [ self.nixosModules.default ];

      users.users.alice = {
        isNormalUser = true;
        uid = 1000;
      };

      # NFS server: the volume directory is the export root, so the peer sees
      # this node's store at /mnt/globofs-peers/<me>/<my id>. no_root_squash because
      # globofs runs as root on both sides; a real deployment gives each peer
      # its own login instead (see docs/NIX.md).
      services.nfs.server = {
        enable = true;
        createMountPoints = true;
        exports = ''
          /srv/globofs *(rw,sync,no_subtree_check,no_root_squash,fsid=0)
        '';
      };
      boot.supportedFilesystems = [ "nfs" ];
      networking.firewall.enable = false;

    }
    # beta knows alpha from the start; alpha starts alone and gets beta by a
    # configuration switch (what `nixos-rebuild switch` does).
    // (
      if me == "alpha" then
        lib.recursiveUpdate (globofsWith me peer [ ]) {
          specialisation.withPeer.configuration = {
            services.globofs.volumes.shared.peers = lib.mkForce [ peer ];
          };
        }
      else
        globofsWith me peer [ peer ]
    );
in
{
  name = "globofs-two-nodes";

  nodes = {
    alpha = node "alpha" "beta";
    beta = node "beta" "alpha";
  };

  testScript = ''
    import time
    from typing import Callable

    G = "globofs --spec /etc/globofs/shared.yaml"
    ALPHA = "${ids.alpha}"
    BETA = "${ids.beta}"


    def synced(what: str, check: Callable[[], bool], timeout: int = 120) -> None:
        """Sync both nodes until `check` holds (or fail after `timeout` s)."""
        deadline = time.monotonic() + timeout
        while True:
            alpha.succeed(f"{G} sync")
            beta.succeed(f"{G} sync")
            if check():
                return
            if time.monotonic() > deadline:
                raise Exception(f"timed out waiting for: {what}")
            time.sleep(2)


    start_all()

    with subtest("each node starts and mounts while its peer is still away"):
        for m in (alpha, beta):
            m.wait_for_unit("nfs-server.service")
            m.wait_for_unit("globofs-shared.service")
            # Visible from outside the unit: the hardening keeps the unit in
            # the host's mount namespace.
            m.wait_until_succeeds("mountpoint -q /mnt/globofs")
        alpha.succeed(f"test -L /srv/globofs/self && test -d /srv/globofs/{ALPHA}")
        beta.succeed(f"test -L /srv/globofs/self && test -d /srv/globofs/{BETA}")

    with subtest("a normal user writes through the mount, and the file is theirs"):
        alpha.succeed("echo 'from root' > /mnt/globofs/by-root.txt")
        alpha.succeed("su alice -c 'cat /mnt/globofs/by-root.txt' | grep -qx 'from root'")
        # root.group/root.mode, set through the mount after start (needs the
        # POSIX-metadata work: files keep their owners, mount.ownership).
        alpha.succeed('test "$(stat -c %G:%a /mnt/globofs)" = users:2775')
        alpha.succeed("su alice -c 'echo mine > /mnt/globofs/by-alice.txt'")
        alpha.succeed('test "$(stat -c %U /mnt/globofs/by-alice.txt)" = alice')
        alpha.succeed("su alice -c 'echo more >> /mnt/globofs/by-alice.txt'")
        alpha.fail("su alice -c 'echo not-mine >> /mnt/globofs/by-root.txt'")
        # A restart (the unit's ExecStartPost runs again) changes nothing.
        alpha.succeed("systemctl restart globofs-shared.service")
        alpha.wait_until_succeeds("mountpoint -q /mnt/globofs")
        alpha.succeed('test "$(stat -c %G:%a /mnt/globofs)" = users:2775')
        alpha.fail("journalctl -u globofs-shared.service | grep -q 'could not'")

    with subtest("alpha gets beta as a peer by a configuration switch, without a remount"):
        # A reader keeps a file open across the switch: a restart would have
        # to detach the busy mount; a reload leaves it alone.
        alpha.succeed(
            "setsid sh -c 'exec 3</mnt/globofs/by-root.txt; exec sleep 600' >/dev/null 2>&1 &"
        )
        pid_before = alpha.succeed("systemctl show -p MainPID --value globofs-shared.service").strip()
        mounts = "journalctl -u globofs-shared.service -o cat | grep -c ' mounted ' || true"
        mounts_before = alpha.succeed(mounts).strip()
        alpha.succeed(
            "/run/current-system/specialisation/withPeer/bin/switch-to-configuration test"
        )
        alpha.succeed(f"grep -q {BETA} /etc/globofs/shared.yaml")
        # The spec alone changed (reloadTriggers): systemctl reload, SIGHUP,
        # and the running mount takes the new peer.
        alpha.wait_until_succeeds(
            f"journalctl -u globofs-shared.service | grep -q 'reloaded: peer {BETA} added'"
        )
        pid_after = alpha.succeed("systemctl show -p MainPID --value globofs-shared.service").strip()
        assert pid_before == pid_after, f"the service restarted ({pid_before} -> {pid_after})"
        alpha.succeed("mountpoint -q /mnt/globofs")
        alpha.fail("journalctl -u globofs-shared.service | grep -q 'detaching it lazily'")
        mounts_after = alpha.succeed(mounts).strip()
        assert mounts_before == mounts_after, f"remounted ({mounts_before} -> {mounts_after} 'mounted' lines)"
        # The automount of beta's volume directory is the module's fileSystems entry.
        alpha.succeed(
            'systemctl is-active "$(systemd-escape -p --suffix=automount /mnt/globofs-peers/beta)"'
        )
        alpha.succeed(f"test -d /mnt/globofs-peers/beta/{BETA}")
        beta.succeed(f"test -d /mnt/globofs-peers/alpha/{ALPHA}")

    with subtest("each peer's login owns its inbound spool, and nothing else of the store"):
        for m, me, peer, peer_id in ((alpha, ALPHA, "beta", BETA), (beta, BETA, "alpha", ALPHA)):
            m.succeed(f"test \"$(stat -c %U:%G /srv/globofs/{me}/spool/inbound/{peer_id})\" = gfs-{peer}:globofs-peers")
            m.succeed(f"test \"$(stat -c %U /srv/globofs/{me}/root)\" = root")
            m.succeed(f"getent passwd gfs-{peer} | grep -q nologin")

    with subtest("put on alpha, get on beta"):
        alpha.succeed("echo 'hello from alpha' > /tmp/hello.txt")
        alpha.succeed(f"{G} put /tmp/hello.txt /hello.txt")
        synced(
            "beta gets /hello.txt",
            lambda: beta.execute(
                f"{G} get /hello.txt /tmp/hello.txt && grep -qx 'hello from alpha' /tmp/hello.txt"
            )[0]
            == 0,
        )
        beta.wait_until_succeeds("grep -qx 'hello from alpha' /mnt/globofs/hello.txt")

    with subtest("write through beta's mount, read through alpha's"):
        beta.succeed("echo 'hello from beta' > /mnt/globofs/from-beta.txt")
        synced(
            "alpha reads /from-beta.txt",
            lambda: alpha.execute("grep -qx 'hello from beta' /mnt/globofs/from-beta.txt")[0] == 0,
        )

    with subtest("a node restarts while its peer is away"):
        alpha.succeed(
            "systemctl stop"
            ' "$(systemd-escape -p --suffix=automount /mnt/globofs-peers/beta)"'
            ' "$(systemd-escape -p --suffix=mount /mnt/globofs-peers/beta)"'
        )
        alpha.succeed("systemctl restart globofs-shared.service")
        alpha.wait_for_unit("globofs-shared.service")
        alpha.wait_until_succeeds("mountpoint -q /mnt/globofs")
        alpha.succeed("echo offline > /mnt/globofs/offline.txt")
        alpha.succeed("grep -qx offline /mnt/globofs/offline.txt")
        alpha.succeed(f"{G} status")
  '';
}
