package main

import (
	"archive/zip"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestArchiveKeepsModes(t *testing.T) {
	dir := t.TempDir()
	files := map[string]struct {
		mode os.FileMode
		body string
	}{
		"bootstrap":               {0o755, "\x7fELF..."},
		"host.json":               {0o644, `{"version": "2.0"}`},
		"webhook/function.json":   {0o644, `{"bindings": []}`},
		"reconcile/function.json": {0o600, `{"bindings": []}`},
	}
	for name, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.body), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "out.zip")
	if err := writeFile(out, dir); err != nil {
		t.Fatal(err)
	}

	zr, err := zip.OpenReader(out)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
		want := files[f.Name]
		// What unzip and Lambda read: a Unix creator and the mode in the
		// high half of the external attributes.
		if f.CreatorVersion>>8 != 3 || os.FileMode(f.ExternalAttrs>>16)&0o777 != want.mode {
			t.Errorf("%s: creator %d, external mode %o, want Unix and %o", f.Name, f.CreatorVersion>>8, f.ExternalAttrs>>16, want.mode)
		}
		if f.Mode().Perm() != want.mode || !f.Mode().IsRegular() {
			t.Errorf("%s: mode %v, want %v", f.Name, f.Mode(), want.mode)
		}
		if f.Method != zip.Deflate {
			t.Errorf("%s: stored, want deflate", f.Name)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(b) != want.body {
			t.Errorf("%s: content %q (%v), want %q", f.Name, b, err, want.body)
		}
	}
	want := []string{"bootstrap", "host.json", "reconcile/function.json", "webhook/function.json"}
	if !slices.Equal(names, want) {
		t.Errorf("entries %v, want %v", names, want)
	}
}

func TestArchiveRefusesLinksAndLeavesNoPartialFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	outDir := t.TempDir()
	if err := writeFile(filepath.Join(outDir, "out.zip"), dir); err == nil {
		t.Fatal("a symbolic link was archived")
	}
	if err := writeFile(filepath.Join(outDir, "out.zip"), filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing directory was archived")
	}
	if left, _ := os.ReadDir(outDir); len(left) != 0 {
		t.Errorf("files left behind: %v", left)
	}
}
