# NixOS VM test: two nodes, each exporting its volume directory over NFS and
# mounting the other's. A file put on one is read on the other, with the CLI
# (`globofs put` / `globofs get`) and through the FUSE mounts; then a node
# restarts while its peer is away.
#
# Used by flake.nix as `pkgs.testers.nixosTest (import ./nix/vm-test.nix { inherit self; })`.
{ self }:

let
  ids = {
    alpha = "68d25a11-a34a-4bbb-a29e-c9bd06ff8c53";
    beta = "ea8192ee-593f-437f-af60-90d213995480";
  };

  node =
    me: peer:
    { ... }:
    {
      imports = [ self.nixosModules.default ];

      # NFS server: the volume directory is the export root, so the peer sees
      # this node's store at /mnt/peers/<me>/<my id>. no_root_squash because
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

      services.globofs = {
        enable = true;
        volumes.shared = {
          volume = "/srv/globofs";
          nodeId = ids.${me};
          mountPoint = "/mnt/globofs";
          peers = [
            {
              id = ids.${peer};
              path = "/mnt/peers/${peer}/${ids.${peer}}";
            }
          ];
          syncInterval = "2s";
          syncTimeout = "5s";
        };
      };
    };
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

    with subtest("the peers come: mount each other's volume over NFS"):
        alpha.succeed("mkdir -p /mnt/peers/beta && mount -t nfs4 beta:/ /mnt/peers/beta")
        beta.succeed("mkdir -p /mnt/peers/alpha && mount -t nfs4 alpha:/ /mnt/peers/alpha")
        alpha.succeed(f"test -d /mnt/peers/beta/{BETA}")
        beta.succeed(f"test -d /mnt/peers/alpha/{ALPHA}")

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
        alpha.succeed("umount -l /mnt/peers/beta")
        alpha.succeed("systemctl restart globofs-shared.service")
        alpha.wait_for_unit("globofs-shared.service")
        alpha.wait_until_succeeds("mountpoint -q /mnt/globofs")
        alpha.succeed("echo offline > /mnt/globofs/offline.txt")
        alpha.succeed("grep -qx offline /mnt/globofs/offline.txt")
        alpha.succeed(f"{G} status")
  '';
}
