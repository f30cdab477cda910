package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

// Bounds of a configuration file. A real one is a few kilobytes with a
// handful of entries per list or mapping; the bounds keep a hostile or
// mistaken file (a device, a log, generated garbage) cheap to refuse.
const (
	MaxFileBytes = 1 << 20 // 1 MiB
	MaxEntries   = 1000    // per list or mapping: pools, capabilities, env, mounts, labels...
	// maxDecodeProblems bounds the problems taken from the YAML decoder,
	// each of which is located by a scan of the document.
	maxDecodeProblems = 100
)

// Load is LoadContext without a deadline.
func Load(path string, getenv func(string) string) (*Config, error) {
	return LoadContext(context.Background(), path, getenv)
}

// LoadContext reads the YAML file at path strictly (an unknown key is a
// problem), applies the defaults and validates the result. getenv resolves
// the variables that *_env keys name; nil means os.Getenv. A file that
// parses but is wrong yields a *ValidationError listing every problem.
// Reading stops when ctx ends, and at MaxFileBytes.
func LoadContext(ctx context.Context, path string, getenv func(string) string) (*Config, error) {
	data, err := readFile(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return parse(data, orEnv(getenv))
}

// Resolve is ResolveContext without a deadline.
func Resolve(path string, getenv func(string) string) (*Config, error) {
	return ResolveContext(context.Background(), path, getenv)
}

// ResolveContext picks the configuration source: the file at path, else
// the file AGENTSCALER_CONFIG names, else the environment alone (FromEnv).
func ResolveContext(ctx context.Context, path string, getenv func(string) string) (*Config, error) {
	getenv = orEnv(getenv)
	if path == "" {
		path = getenv(EnvConfig)
	}
	if path == "" {
		return FromEnv(getenv)
	}
	return LoadContext(ctx, path, getenv)
}

// readFile reads at most MaxFileBytes of path, giving up when ctx ends.
// The file is opened non-blocking: opening a FIFO then does not wait for a
// writer, and a FIFO or terminal is read through the runtime's poller,
// whose read deadline a cancelled ctx sets. A regular file or a device
// such as /dev/zero cannot be interrupted, but the size bound ends it.
func readFile(ctx context.Context, path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var r io.Reader = f
	if info.Mode()&os.ModeNamedPipe != 0 {
		// A FIFO read with no writer is at its end at once. Holding a
		// write end of our own makes the read wait for the real writer,
		// as a blocking open would; it is let go at the first data, so
		// the real writer's close still ends the file.
		hold, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, err
		}
		fr := &fifoReader{f: f, hold: hold}
		defer fr.release()
		r = fr
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	data, err := io.ReadAll(io.LimitReader(r, MaxFileBytes+1))
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileBytes {
		size := "more"
		if info.Mode().IsRegular() {
			size = strconv.FormatInt(info.Size(), 10) + " bytes"
		}
		return nil, fmt.Errorf("%s holds %s; a configuration file is at most %d bytes (1 MiB), and a real one a few kilobytes: check the path", path, size, MaxFileBytes)
	}
	return data, nil
}

// fifoReader reads a FIFO, closing its own write end at the first data.
type fifoReader struct {
	f, hold *os.File
}

func (r *fifoReader) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	if n > 0 {
		r.release()
	}
	return n, err
}

func (r *fifoReader) release() {
	if r.hold != nil {
		r.hold.Close()
		r.hold = nil
	}
}

func orEnv(getenv func(string) string) func(string) string {
	if getenv == nil {
		return os.Getenv
	}
	return getenv
}

func parse(data []byte, getenv func(string) string) (*Config, error) {
	// The node tree locates problems (key paths, lines) and tells which keys
	// were written, so a default never hides an explicit zero.
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	idx := newNodeIndex(&root)
	if len(idx.refused) > 0 {
		// Decoding the struct would expand the aliases, or check every
		// pair of keys of a huge mapping, or find the duplicate again and
		// leave its section undecoded, so checking the rest would only
		// report its fields as missing.
		return nil, &ValidationError{Problems: idx.refused}
	}

	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	decoded := idx.problems
	err := dec.Decode(&cfg)
	var terr *yaml.TypeError
	switch {
	case err == nil, errors.Is(err, io.EOF):
	case errors.As(err, &terr):
		for i, msg := range terr.Errors {
			if i == maxDecodeProblems {
				decoded = append(decoded, Problem{Key: "(file)",
					Message: fmt.Sprintf("%d more problems like those above are not listed; fix those first", len(terr.Errors)-i)})
				break
			}
			decoded = append(decoded, idx.decodeProblem(msg))
		}
	default:
		return nil, fmt.Errorf("decode config: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		decoded = append(decoded, Problem{Key: "(file)", Line: extra.Line,
			Message: "holds more than one YAML document; keep a single document"})
	}

	decoded = append(decoded, pushFromEnv(&cfg, getenv)...)
	applyDefaults(&cfg, idx.present)
	problems := merge(decoded, cfg.validate(getenv))
	for i := range problems {
		if problems[i].Line == 0 {
			problems[i].Line = idx.lineOf(problems[i].Key)
		}
	}
	if len(problems) > 0 {
		return nil, &ValidationError{Problems: problems}
	}
	return &cfg, nil
}

// merge appends later problems to first, leaving out those about a key that
// first already reports: a value that failed to decode is also out of range,
// and saying so twice only adds noise.
func merge(first, later []Problem) []Problem {
	seen := make(map[string]bool, len(first))
	for _, p := range first {
		seen[p.Key] = true
	}
	out := first
	for _, p := range later {
		if !seen[p.Key] {
			out = append(out, p)
		}
	}
	return out
}

// nodeIndex maps the YAML document to the keys a user writes, and finds
// what the struct decoder would not report, or not cheaply.
type nodeIndex struct {
	keys     []indexedNode   // every mapping key, with its full path
	values   []indexedNode   // every scalar value, with its full path
	lines    map[string]int  // first line of each path
	set      map[string]bool // paths with a non-null value
	refused  []Problem       // problems that stop the file being decoded at all
	problems []Problem       // problems the decoder lets pass
}

type indexedNode struct {
	line  int
	name  string // the key itself, or the scalar's text
	path  string
	value *yaml.Node
}

func newNodeIndex(root *yaml.Node) *nodeIndex {
	idx := &nodeIndex{lines: map[string]int{}, set: map[string]bool{}}
	idx.walk(root, "", reflect.TypeFor[Config]())
	return idx
}

// noReferences explains why anchors, aliases and merge keys are refused: a
// configuration is short and has no need for them, and each alias can
// multiply the document (nine levels of nine aliases, a few hundred bytes,
// expand to 387 million values).
const noReferences = "a configuration has no need for YAML anchors, aliases or merge keys (<<); write the values out in full"

// walk records n at path. t is the Go type the value decodes into, nil
// under an unknown key. Aliases are never followed, so the walk is linear
// in the size of the file.
func (x *nodeIndex) walk(n *yaml.Node, path string, t reflect.Type) {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	at := path
	if at == "" {
		at = "(file)"
	}
	if n.Anchor != "" {
		x.refused = append(x.refused, Problem{Key: at, Line: n.Line, Message: "defines the anchor &" + n.Anchor + "; " + noReferences})
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			x.walk(c, path, t)
		}
	case yaml.AliasNode:
		x.refused = append(x.refused, Problem{Key: at, Line: n.Line, Message: "is the alias *" + n.Value + "; " + noReferences})
	case yaml.MappingNode:
		if !x.bounded(n, at) {
			return
		}
		seen := make(map[string]int, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
				x.refused = append(x.refused, Problem{Key: at, Line: k.Line, Message: "has a merge key (<<); " + noReferences})
				x.walk(v, path, nil)
				continue
			}
			if k.Kind != yaml.ScalarNode {
				x.walk(k, at, nil) // reported by the decoder; only references matter here
				continue
			}
			p := joinKey(path, k.Value)
			if line, dup := seen[k.Value]; dup {
				x.refused = append(x.refused, Problem{Key: p, Line: k.Line,
					Message: fmt.Sprintf("is written twice in the same section (first at line %d); keep one", line)})
				continue
			}
			seen[k.Value] = k.Line
			x.keys = append(x.keys, indexedNode{line: k.Line, name: k.Value, path: p, value: v})
			if _, ok := x.lines[p]; !ok {
				x.lines[p] = k.Line
			}
			if !(v.Kind == yaml.ScalarNode && v.Tag == "!!null") {
				x.set[p] = true
			}
			x.walk(v, p, fieldType(t, k.Value))
		}
	case yaml.SequenceNode:
		if !x.bounded(n, at) {
			return
		}
		var elem reflect.Type
		if t != nil && t.Kind() == reflect.Slice {
			elem = t.Elem()
		}
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if _, ok := x.lines[p]; !ok {
				x.lines[p] = c.Line
			}
			x.set[p] = true
			x.walk(c, p, elem)
		}
	case yaml.ScalarNode:
		x.values = append(x.values, indexedNode{line: n.Line, name: n.Value, path: path, value: n})
		// yaml.v3 truncates a fraction written for a whole number: 10.9
		// would become 10 without a word.
		if t != nil && n.Tag == "!!float" && t != reflect.TypeFor[time.Duration]() && t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64 {
			x.problems = append(x.problems, Problem{Key: at, Line: n.Line, Message: fmt.Sprintf("must be a whole number (got %s)", n.Value)})
		}
	}
}

// bounded reports whether the list or mapping n holds at most MaxEntries
// entries, refusing it otherwise.
func (x *nodeIndex) bounded(n *yaml.Node, at string) bool {
	count := len(n.Content)
	if n.Kind == yaml.MappingNode {
		count /= 2
	}
	if count <= MaxEntries {
		return true
	}
	x.refused = append(x.refused, Problem{Key: at, Line: n.Line,
		Message: fmt.Sprintf("holds %d entries; at most %d are accepted in any list or mapping of a configuration", count, MaxEntries)})
	return false
}

// fieldType is the Go type of key in a value of type t: a struct field by
// its yaml name, or a map's values; nil when unknown.
func fieldType(t reflect.Type, key string) reflect.Type {
	switch {
	case t == nil:
		return nil
	case t.Kind() == reflect.Map:
		return t.Elem()
	case t.Kind() == reflect.Struct:
		return fieldTypes[t][key]
	}
	return nil
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (x *nodeIndex) present(key string) bool { return x.set[key] }

// lineOf returns the line of key, or of its nearest written parent (a
// missing key is best shown where its section is), or 0.
func (x *nodeIndex) lineOf(key string) int {
	for key != "" {
		if l, ok := x.lines[key]; ok {
			return l
		}
		cut := max(strings.LastIndexByte(key, '.'), strings.LastIndexByte(key, '['))
		if cut < 0 {
			return 0
		}
		key = key[:cut]
	}
	return 0
}

var (
	unknownFieldRE = regexp.MustCompile(`^line (\d+): field (.+) not found in type (\S+)$`)
	typeErrRE      = regexp.MustCompile("^line (\\d+): cannot unmarshal (!!\\w+)(?: `([^`]*)`)? into (\\S+)$")
)

// decodeProblem turns one yaml.v3 decode error into a Problem naming the key.
func (x *nodeIndex) decodeProblem(msg string) Problem {
	if m := unknownFieldRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		name := m[2]
		p := Problem{Key: x.keyAt(line, name), Line: line, Message: "unknown key"}
		known := fieldsOf[m[3]]
		if s := suggest(name, known); s != "" {
			p.Message += fmt.Sprintf("; did you mean %q?", s)
		} else if len(known) > 0 {
			p.Message += "; the keys here are " + strings.Join(known, ", ")
		}
		return p
	}
	if m := typeErrRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{Key: x.valueAt(line, m[2], m[3]), Line: line, Message: typeMessage(m[2], m[4])}
	}
	// An error shape this code does not know: pass it on as yaml.v3 wrote it.
	return Problem{Key: "(file)", Message: msg}
}

// keyAt finds the path of the mapping key name written on line.
func (x *nodeIndex) keyAt(line int, name string) string {
	for _, k := range x.keys {
		if k.line == line && k.name == name {
			return k.path
		}
	}
	return name
}

// valueAt finds the path of the value of kind tag on line. Several values
// share a line in flow style, so the text yaml.v3 quotes (its first 7
// characters and "..." when longer than 10) tells them apart.
func (x *nodeIndex) valueAt(line int, tag, quoted string) string {
	matches := func(v *yaml.Node) bool {
		if v.Kind != yaml.ScalarNode {
			return true // maps and lists are quoted by kind alone
		}
		if p, ok := strings.CutSuffix(quoted, "..."); ok && len(v.Value) > 10 {
			return strings.HasPrefix(v.Value, p)
		}
		return v.Value == quoted
	}
	for _, k := range x.keys {
		if k.value.Line == line && k.value.ShortTag() == tag && matches(k.value) {
			return k.path
		}
	}
	for _, v := range x.values {
		if v.line == line {
			return v.path
		}
	}
	return fmt.Sprintf("(line %d)", line)
}

// typeMessage says what a key of Go type want accepts.
func typeMessage(got, want string) string {
	switch want {
	case "int":
		return "must be a whole number"
	case "float64":
		return "must be a number"
	case "bool":
		return "must be true or false"
	case "time.Duration":
		return "must be a duration with a unit, such as 90s, 5m or 6h"
	case "string":
		return "must be a single value, not a list or mapping"
	}
	switch {
	case strings.HasPrefix(want, "[]"):
		return "must be a list"
	case strings.HasPrefix(want, "map["), strings.HasPrefix(want, "config."), strings.HasPrefix(want, "*config."):
		return "must be a mapping of keys to values"
	}
	return fmt.Sprintf("has the wrong type (%s, want %s)", got, want)
}

// fieldsOf lists the YAML keys of every struct in the configuration, by the
// Go type name yaml.v3 uses in its errors, so an unknown key can be matched
// against its neighbours; fieldTypes gives each key's Go type.
var fieldsOf, fieldTypes = func() (map[string][]string, map[reflect.Type]map[string]reflect.Type) {
	names := map[string][]string{}
	types := map[reflect.Type]map[string]reflect.Type{}
	var visit func(t reflect.Type)
	visit = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t.PkgPath() != reflect.TypeFor[Config]().PkgPath() {
			return
		}
		if _, done := types[t]; done {
			return
		}
		types[t] = map[string]reflect.Type{}
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			names[t.String()] = append(names[t.String()], name)
			types[t][name] = f.Type
			visit(f.Type)
		}
	}
	visit(reflect.TypeFor[Config]())
	return names, types
}()
