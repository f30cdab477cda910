package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/agentscaler/agentscaler/internal/testenv/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// repo is the repository root, relative to this package.
const repo = "../.."

func read(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Variables read by libraries rather than by a literal in our code: the
// Docker client's client.FromEnv (providers/docker uses it when no host is
// configured).
var libraryEnv = []string{"DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_API_VERSION"}

var envNameRE = regexp.MustCompile(`^(AZP|AGENTSCALER|DOCKER|AZURE|AWS|FUNCTIONS|WEBSITE)_[A-Z0-9_]+$`)

// binaryEnv is every environment variable the binary can read: the string
// literals shaped like one in the non-test Go files of the packages that
// read the environment (config, cmd/agentscaler), plus libraryEnv. Derived
// from the source, so a variable renamed there fails the checks here.
func binaryEnv(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for _, n := range libraryEnv {
		names[n] = true
	}
	fset := token.NewFileSet()
	for _, dir := range []string{"config", "cmd/agentscaler"} {
		files, err := filepath.Glob(filepath.Join(repo, dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(fset, f, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil && envNameRE.MatchString(s) {
						names[s] = true
					}
				}
				return true
			})
		}
	}
	for _, must := range []string{"AZP_URL", "AZP_TOKEN", "AGENTSCALER_CONFIG", "AGENTSCALER_WEBHOOK_PASSWORD"} {
		if !names[must] {
			t.Fatalf("the scan of config/ and cmd/agentscaler/ found no %s: the scan itself is broken", must)
		}
	}
	return names
}

// ours reports a variable in agentscaler's own namespaces: one the binary
// must read, or the setting is a mistake.
func ours(name string) bool {
	return strings.HasPrefix(name, "AZP_") || strings.HasPrefix(name, "AGENTSCALER_")
}
