package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// decodeYAML reads every document of a YAML stream as nodes, which accept
// CloudFormation's custom tags (!Ref, !Sub, !If...).
func decodeYAML(data []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, err
		}
		docs = append(docs, &n)
	}
}

func TestEveryYAMLAndJSONUnderInfraParses(t *testing.T) {
	root := filepath.Join(repo, "infra")
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// A Helm chart's templates are Go templates of YAML: TestHelmChartLintsStrictly and the renderings check them.
			if _, err := os.Stat(filepath.Join(filepath.Dir(path), "Chart.yaml")); err == nil && d.Name() == "templates" {
				return filepath.SkipDir
			}
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repo, path)
		switch strings.ToLower(filepath.Ext(path)) {
		case ".json":
			checked++
			var v any
			if err := json.Unmarshal(data, &v); err != nil {
				t.Errorf("%s: %v", rel, err)
			}
		case ".yaml", ".yml":
			checked++
			docs, err := decodeYAML(data)
			if err != nil {
				t.Errorf("%s: %v", rel, err)
			} else if len(docs) == 0 {
				t.Errorf("%s: holds no YAML document", rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The files this package owns, at least, must have been seen.
	if checked < 9 {
		t.Fatalf("checked %d YAML/JSON files under infra/, want at least the 9 deployment files", checked)
	}
}

func TestDecodeYAMLRejectsBrokenFiles(t *testing.T) {
	for _, bad := range []string{"a: [1, 2\n", "a: b\n c: d\n", "key: 'unclosed\n"} {
		if _, err := decodeYAML([]byte(bad)); err == nil {
			t.Errorf("decodeYAML(%q) = nil error, want a parse error", bad)
		}
	}
	if docs, err := decodeYAML([]byte("a: !Ref B\n---\nc: !Sub '${D}'\n")); err != nil || len(docs) != 2 {
		t.Errorf("custom tags over two documents: %d documents, %v; want 2, nil", len(docs), err)
	}
}
