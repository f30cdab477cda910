// Command zipdir writes the files under a directory into a zip archive, with
// their Unix permissions, for `make package`. Lambda runs `bootstrap` from
// the archive only if its executable bit survives, and neither `python3 -m
// zipfile` nor a missing `zip` can be relied on for that.
//
// Usage:
//
//	go run ./tools/zipdir -o out.zip DIR
//
// Entries are named relative to DIR with forward slashes, in lexical order;
// directories are implied by the paths; symbolic links are refused.
package main

import (
	"archive/zip"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

func main() {
	out := flag.String("o", "", "the zip file to write (replaced if it exists)")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: zipdir -o out.zip DIR")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *out == "" || flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := writeFile(*out, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "zipdir:", err)
		os.Exit(1)
	}
}

// writeFile writes the archive of dir to path, through a temporary file so
// a failure never leaves a truncated archive behind.
func writeFile(path, dir string) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".zipdir-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := archive(tmp, os.DirFS(dir)); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// archive writes every regular file of fsys to w as a zip, keeping each
// file's permission bits and modification time.
func archive(w io.Writer, fsys fs.FS) error {
	zw := zip.NewWriter(w)
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("%s: not a regular file (%s)", name, info.Mode().Type())
		}
		hdr, err := zip.FileInfoHeader(info)
		if err != nil {
			return err
		}
		hdr.Name = name // WalkDir names are slash-separated and relative
		hdr.Method = zip.Deflate
		dst, err := zw.CreateHeader(hdr)
		if err != nil {
			return err
		}
		src, err := fsys.Open(name)
		if err != nil {
			return err
		}
		_, err = io.Copy(dst, src)
		return errors.Join(err, src.Close())
	})
	return errors.Join(err, zw.Close())
}
