package preflight

import (
	"io/fs"
	"testing"
)

// TestLookup follows symlinks as the kernel does: in any component,
// relative to the link's directory, absolute from the image's root, and
// not forever.
func TestLookup(t *testing.T) {
	dir := func() *node { return &node{mode: fs.ModeDir | 0o755} }
	link := func(to string) *node { return &node{mode: fs.ModeSymlink | 0o777, link: to} }
	libc := &node{mode: 0o755}
	tr := tree{
		"/usr": dir(), "/usr/lib": dir(), "/usr/lib/x86_64-linux-gnu": dir(),
		"/usr/lib/x86_64-linux-gnu/libc.so.6": libc,
		"/lib":                                link("usr/lib"),
		"/lib64":                              link("/usr/lib/x86_64-linux-gnu"),
		"/usr/lib/x86_64-linux-gnu/libc.so":   link("../x86_64-linux-gnu/libc.so.6"),
		"/loop":                               link("/loop"),
	}
	for _, c := range []struct {
		path, real string
		found      bool
	}{
		{"/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", true},
		{"/lib64/libc.so", "/usr/lib/x86_64-linux-gnu/libc.so.6", true},
		{"/lib/../lib64/./libc.so.6", "/usr/lib64", false}, // .. after a link climbs from its target
		{"/loop/x", "/loop", false},
		{"/", "/", true},
		{"/missing/file", "/missing", false},
	} {
		real, n := tr.lookup(c.path)
		if real != c.real || (n != nil) != c.found {
			t.Errorf("lookup(%s) = %s, found %v; want %s, found %v", c.path, real, n != nil, c.real, c.found)
		}
	}
	if got := tr.libraries(func(b string) bool { return b == "libc.so.6" }); len(got) != 1 || got[0] != "/usr/lib/x86_64-linux-gnu/libc.so.6" {
		t.Errorf("libraries(libc.so.6) = %v, want the one file", got)
	}
}
