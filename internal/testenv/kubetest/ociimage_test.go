package kubetest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// TestOCIArchive checks the archive ctr images import reads: an index that
// names the image, blobs stored under their digests, and a layer with the
// files and the writable directory owned by the image's user.
func TestOCIArchive(t *testing.T) {
	img := Image{
		Ref:        "kubetest.local/test:1",
		Files:      map[string][]byte{"/bin/agent": []byte("#!binary")},
		Entrypoint: []string{"/bin/agent"},
		User:       "65534:65533",
		Writable:   []string{"/work"},
	}
	raw, err := ociArchive(img)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
		if name, ok := strings.CutPrefix(h.Name, "blobs/sha256/"); ok {
			if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != name {
				t.Errorf("blob %s has digest %x", name, sum)
			}
		}
	}
	var index struct {
		Manifests []struct {
			Digest      string
			Annotations map[string]string
		}
	}
	if err := json.Unmarshal(files["index.json"], &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("index.json %s: %v", files["index.json"], err)
	}
	if got := index.Manifests[0].Annotations["io.containerd.image.name"]; got != img.Ref {
		t.Errorf("image name %q, want %q", got, img.Ref)
	}
	var manifest struct{ Layers []struct{ Digest string } }
	if err := json.Unmarshal(files["blobs/sha256/"+strings.TrimPrefix(index.Manifests[0].Digest, "sha256:")], &manifest); err != nil || len(manifest.Layers) != 1 {
		t.Fatalf("manifest: %v %+v", err, manifest)
	}
	layer := tar.NewReader(bytes.NewReader(files["blobs/sha256/"+strings.TrimPrefix(manifest.Layers[0].Digest, "sha256:")]))
	seen := map[string]*tar.Header{}
	for {
		h, err := layer.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[h.Name] = h
	}
	if h := seen["bin/agent"]; h == nil || h.Mode&0o111 == 0 {
		t.Errorf("layer: bin/agent missing or not executable: %+v", h)
	}
	if h := seen["work/"]; h == nil || h.Uid != 65534 || h.Gid != 65533 {
		t.Errorf("layer: work/ missing or not owned by 65534:65533: %+v", h)
	}
	if _, err := ociArchive(Image{Ref: "x/y:1", User: "nobody"}); err == nil {
		t.Error("a user name (not uid:gid) was accepted")
	}
}
