package kubetest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// Image is an image FROM scratch: the files (path -> content, executable),
// and how it runs.
type Image struct {
	Ref        string // fully qualified, e.g. kubetest.local/pause:1
	Files      map[string][]byte
	Entrypoint []string
	User       string // "uid:gid"; root when empty
	// Writable are directories made empty and owned by User, for an
	// agent's work folder.
	Writable []string
}

// ociArchive writes the image as an OCI image layout in a tar stream, the
// format `ctr images import` reads: one uncompressed layer, its config, a
// manifest, and an index naming the manifest Ref.
func ociArchive(img Image) ([]byte, error) {
	layer, err := layerTar(img)
	if err != nil {
		return nil, err
	}
	layerDesc := descriptor("application/vnd.oci.image.layer.v1.tar", layer)
	cfg, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       map[string]any{"Entrypoint": img.Entrypoint, "User": img.User},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{layerDesc["digest"].(string)}},
	})
	if err != nil {
		return nil, err
	}
	cfgDesc := descriptor("application/vnd.oci.image.config.v1+json", cfg)
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        cfgDesc,
		"layers":        []any{layerDesc},
	})
	if err != nil {
		return nil, err
	}
	manDesc := descriptor("application/vnd.oci.image.manifest.v1+json", manifest)
	manDesc["annotations"] = map[string]string{
		"io.containerd.image.name":          img.Ref,
		"org.opencontainers.image.ref.name": img.Ref[strings.LastIndex(img.Ref, ":")+1:],
	}
	manDesc["platform"] = map[string]string{"architecture": runtime.GOARCH, "os": "linux"}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     []any{manDesc},
	})
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	entries := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{blobPath(layer), layer},
		{blobPath(cfg), cfg},
		{blobPath(manifest), manifest},
	}
	for _, e := range entries {
		if err := writeFile(tw, e.name, 0o644, e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func descriptor(mediaType string, blob []byte) map[string]any {
	sum := sha256.Sum256(blob)
	return map[string]any{"mediaType": mediaType, "digest": "sha256:" + hex.EncodeToString(sum[:]), "size": len(blob)}
}

func blobPath(blob []byte) string {
	sum := sha256.Sum256(blob)
	return "blobs/sha256/" + hex.EncodeToString(sum[:])
}

// layerTar is a layer holding the files, executable, their parent
// directories, and the writable directories.
func layerTar(img Image) ([]byte, error) {
	files := img.Files
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	dirs := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		rel := strings.TrimPrefix(path.Clean("/"+name), "/")
		for d := path.Dir(rel); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for _, d := range slices.Sorted(maps.Keys(dirs)) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}); err != nil {
			return nil, err
		}
	}
	uid, gid, err := owner(img.User)
	if err != nil {
		return nil, err
	}
	for _, d := range img.Writable {
		name := strings.TrimPrefix(path.Clean("/"+d), "/") + "/"
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, Uid: uid, Gid: gid}); err != nil {
			return nil, err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if err := writeFile(tw, strings.TrimPrefix(path.Clean("/"+name), "/"), 0o755, files[name]); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func writeFile(tw *tar.Writer, name string, mode int64, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}); err != nil {
		return fmt.Errorf("image tar %s: %w", name, err)
	}
	_, err := tw.Write(data)
	return err
}

// owner reads "uid:gid" (or "uid"); root when empty.
func owner(user string) (uid, gid int, err error) {
	if user == "" {
		return 0, 0, nil
	}
	u, g, found := strings.Cut(user, ":")
	if uid, err = strconv.Atoi(u); err != nil {
		return 0, 0, fmt.Errorf("image user %q: numeric uid:gid only", user)
	}
	if !found {
		return uid, uid, nil
	}
	if gid, err = strconv.Atoi(g); err != nil {
		return 0, 0, fmt.Errorf("image user %q: numeric uid:gid only", user)
	}
	return uid, gid, nil
}
