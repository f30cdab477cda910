package kubetest

import (
	"context"
	"io"
	"path/filepath"
)

// ContainerdVersion is the containerd release the node runs (its CRI plugin
// serves the kubelet), built from the github.com/containerd/containerd/v2
// module at that version: Debian's containerd is older than Version's
// kubelet accepts. Containers run with the runc on PATH (Debian's runc).
const ContainerdVersion = "v2.4.2"

const containerdModule = "github.com/containerd/containerd/v2"

// Containerd are the programs of ContainerdVersion the node runs.
type Containerd struct {
	Daemon string // containerd
	Shim   string // containerd-shim-runc-v2, which containerd finds on PATH
	CTR    string // ctr, which imports the node's images
}

var containerdPrograms = []string{"containerd", "containerd-shim-runc-v2", "ctr"}

func containerdIn(dir string) Containerd {
	return Containerd{
		Daemon: filepath.Join(dir, "containerd"),
		Shim:   filepath.Join(dir, "containerd-shim-runc-v2"),
		CTR:    filepath.Join(dir, "ctr"),
	}
}

func (c Containerd) exist() bool { return regularFiles(c.Daemon, c.Shim, c.CTR) }

// ContainerdCacheDir is where the programs of ContainerdVersion live:
// containerd-<ContainerdVersion> under the cache root.
func ContainerdCacheDir() (string, error) { return cacheSubdir("containerd-" + ContainerdVersion) }

// CachedContainerd returns the containerd programs when they are built.
func CachedContainerd() (Containerd, bool) {
	dir, err := ContainerdCacheDir()
	if err != nil {
		return Containerd{}, false
	}
	c := containerdIn(dir)
	return c, c.exist()
}

// BuildContainerd returns the cached containerd programs, building them
// first when they are missing, once per machine like Build: `go install`
// of the module's commands at ContainerdVersion, without cgo (which leaves
// out the btrfs and devmapper snapshotters; the node uses overlayfs).
func BuildContainerd(ctx context.Context, log io.Writer) (Containerd, error) {
	dir, err := ContainerdCacheDir()
	if err != nil {
		return Containerd{}, err
	}
	c := containerdIn(dir)
	pkgs := make([]string, len(containerdPrograms))
	for i, p := range containerdPrograms {
		pkgs[i] = containerdModule + "/cmd/" + p
	}
	err = buildOnce(ctx, dir, "containerd "+ContainerdVersion, c.exist, log, func() error {
		ldflags := "-s -w -X " + containerdModule + "/version.Version=" + ContainerdVersion
		return goInstall(ctx, dir, log, ldflags, "no_btrfs no_devmapper no_zfs", ContainerdVersion, pkgs...)
	})
	return c, err
}
