package preflight

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
)

// Bounds of what reading an image's file system keeps in memory.
const (
	maxKept  = 256 << 10 // a file kept whole (passwd, shell start-up files)
	headSize = 512       // the start of every executable, for its #! line
)

// node is one file of the image, as its tar header and (some of) its content
// say.
type node struct {
	mode     fs.FileMode // type and permission bits
	uid, gid int
	link     string // a symlink's target
	data     []byte // whole for the files keep selects, the head of executables
}

// tree is an image's file system, read from a docker export stream: every
// path (absolute, clean) with its node.
type tree map[string]*node

// rootNode stands for / when the stream has no entry for it.
var rootNode = &node{mode: fs.ModeDir | 0o755}

// readTree reads a tar stream of a file system. keep selects the regular
// files kept whole (up to maxKept); of other executables, the first
// headSize bytes are kept.
func readTree(r io.Reader, keep func(name string) bool) (tree, error) {
	t := tree{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return t, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the image's file system: %w", err)
		}
		name := path.Clean("/" + h.Name)
		if h.Typeflag == tar.TypeLink {
			// A hard link is the file it links to, which came earlier.
			if n := t[path.Clean("/"+h.Linkname)]; n != nil {
				t[name] = n
			}
			continue
		}
		n := &node{mode: h.FileInfo().Mode(), uid: h.Uid, gid: h.Gid, link: h.Linkname}
		if h.Typeflag == tar.TypeReg {
			size := int64(0)
			switch {
			case keep(name) && h.Size <= maxKept:
				size = h.Size
			case n.mode&0o111 != 0:
				size = min(h.Size, headSize)
			}
			if size > 0 {
				n.data = make([]byte, size)
				if _, err := io.ReadFull(tr, n.data); err != nil {
					return nil, fmt.Errorf("reading %s in the image: %w", name, err)
				}
			}
		}
		t[name] = n
	}
}

// maxLinks bounds the symlinks one lookup follows, as the kernel does.
const maxLinks = 40

// lookup follows p through the image as the kernel would in a container,
// symlinks in any component included, and returns the path reached and
// its node; nil when nothing is there (or the links loop).
func (t tree) lookup(p string) (string, *node) {
	parts := split(p)
	cur, links := "/", 0
	for i := 0; i < len(parts); i++ {
		if parts[i] == ".." { // from where the links led, not lexically
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, parts[i])
		n := t[next]
		if n == nil {
			return next, nil
		}
		if n.mode&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return next, nil
		}
		target := n.link
		if !path.IsAbs(target) {
			target = path.Join(cur, target)
		}
		parts = append(split(target), parts[i+1:]...)
		cur, i = "/", -1
	}
	if n := t[cur]; n != nil {
		return cur, n
	}
	if cur == "/" {
		return cur, rootNode
	}
	return cur, nil
}

// split returns the components of p, without empty ones and ".", keeping
// "..": only the walk knows where it leads.
func split(p string) []string {
	var out []string
	for c := range strings.SplitSeq(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// file returns the regular file p leads to, or nil.
func (t tree) file(p string) (string, *node) {
	real, n := t.lookup(p)
	if n == nil || !n.mode.IsRegular() {
		return real, nil
	}
	return real, n
}

// hasExecutables reports whether the directory p (resolved) holds an
// executable file directly.
func (t tree) hasExecutables(p string) bool {
	real, n := t.lookup(p)
	if n == nil || !n.mode.IsDir() {
		return false
	}
	for name, n := range t {
		if path.Dir(name) == real && n.mode.IsRegular() && n.mode&0o111 != 0 {
			return true
		}
	}
	return false
}

// libDirs are where the dynamic loader and the distribution put libraries.
var libDirs = []string{"/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/", "/usr/local/lib/"}

// libraries returns the paths under the library directories whose base
// name match says, that lead to a file.
func (t tree) libraries(match func(base string) bool) []string {
	var out []string
	for name := range t {
		if !match(path.Base(name)) || !hasAnyPrefix(name, libDirs) {
			continue
		}
		if _, n := t.file(name); n != nil {
			out = append(out, name)
		}
	}
	return out
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
